"""`netkiln analyze` on text: lengths, vocabulary and coverage, out-of-vocabulary rates, tokens per class, texts
shared between splits."""
from __future__ import annotations

import csv
import json

from netkiln.cli import main
from netkiln.data.analyze import analyze_data


def _write(path, rows, header=("review", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def _rows(n):
    good = ["great", "lovely", "superb"]
    bad = ["awful", "dull", "broken"]
    return [(f"the {'phone' if i % 3 else 'camera'} is {(good if i % 2 else bad)[i % 3]} and the case is fine "
             f"number {i}", "pos" if i % 2 else "neg") for i in range(n)]


def test_text_section_of_the_report(tmp_path):
    train = _rows(60)
    test = [("a zyzzyva quokka phone", "pos"), ("awful awful camera", "neg"), (train[0][0], "neg"),
            (train[1][0], "pos")] * 3
    node = {"name": "text", "path": _write(tmp_path / "r.csv", train), "text": "review", "target": "label",
            "test_path": _write(tmp_path / "t.csv", test), "max_length": 6}
    report, context = analyze_data(node, seed=0)
    tok = context["raw"].table["tokenizer"]
    t = report["text"]
    assert report["layout"] == "tokens" and "columns" not in report and "features" not in report
    assert t["vocabulary"]["size"] == tok.vocab_size and t["vocabulary"]["tokenizer"] == "word"
    assert t["vocabulary"]["coverage"] == 1.0                   # no max_tokens cut: every training token has an id
    oov = t["out_of_vocabulary"]
    assert oov["train"]["rate"] == 0.0
    # 'zyzzyva' and 'quokka' are in the test file only: 2 of its 4 tokens in 3 of 12 rows (numbers aside)
    assert oov["test"]["out_of_vocabulary"] >= 6 and oov["test"]["rate"] > 0
    ln = t["lengths"]
    assert sum(ln["histogram"]["counts"]) == report["rows"]
    assert ln["max_length"] == 6 and ln["truncated"] > 0 and ln["max"] == 11
    classes = {c["class"]: c for c in t["top_tokens"]}
    assert set(classes) == {"neg", "pos"}
    assert {"awful", "dull", "broken"} & {x["token"] for x in classes["neg"]["distinctive"][:4]}
    assert classes["pos"]["frequent"][0]["token"] in ("the", "is")
    shared = t["shared_texts"]["test_in_train"]
    assert shared["count"] == 6 and train[0][0] in shared["examples"]
    assert report["duplicates"]["shared_between_splits"]["test_in_train"] == 6
    assert any("also appear in train" in w for w in report["warnings"])
    json.dumps(report)


def test_the_distinctive_tokens_plot_draws_the_score_it_ranks_by(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from netkiln.data.analyze import _grid, _plot_target
    from netkiln.data.analyze_text import plot_text

    node = {"name": "text", "path": _write(tmp_path / "r.csv", _rows(60)), "text": "review", "target": "label"}
    report, context = analyze_data(node, seed=0)
    fig = plot_text(plt, report, context["dataset"], _plot_target, _grid)
    ax = fig.axes[2]                                   # the first class's tokens
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == sorted(widths)                    # longest bar on top: the bars follow the ranking
    first = report["text"]["top_tokens"][0]["distinctive"][0]
    assert widths[-1] == first["z"] and f"{first['token']} ({first['count']})" == ax.get_yticklabels()[-1].get_text()
    assert "z-score" in ax.get_xlabel()
    plt.close(fig)


def test_regression_text_target_has_no_tokens_per_class(tmp_path):
    rows = [(text, i * 0.5) for i, (text, _) in enumerate(_rows(40))]
    node = {"name": "text", "path": _write(tmp_path / "r.csv", rows, ("review", "score")), "text": "review",
            "target": "score", "task": "regression"}
    report, _ = analyze_data(node, seed=0)
    assert report["task"]["kind"] == "regression" and report["text"]["top_tokens"] is None
    assert report["target"]["targets"][0]["name"] == "score"


def test_high_oov_rate_is_a_warning(tmp_path):
    train = [(f"word{i % 7} common text", "a" if i % 2 else "b") for i in range(40)]
    test = [(f"novel{i} unseen{i} text", "a" if i % 2 else "b") for i in range(10)]
    node = {"name": "text", "path": _write(tmp_path / "r.csv", train), "text": "review", "target": "label",
            "test_path": _write(tmp_path / "t.csv", test)}
    report, _ = analyze_data(node, seed=0)
    assert report["text"]["out_of_vocabulary"]["test"]["rate"] > 0.6
    assert any("of the test tokens are not in the training vocabulary" in w for w in report["warnings"])


def test_cli_analyze_reviews_writes_the_report_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["analyze", "data=reviews", "data.generator.num_samples=200", f"hydra.run.dir={tmp_path / 'out'}"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "tokens per class" in out and "out of vocabulary" in out
    report = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert report["text"]["vocabulary"]["size"] > 100
    assert [c["class"] for c in report["text"]["top_tokens"]] == ["negative", "neutral", "positive"]
    assert report["duplicates"]["shared_between_splits"] == {"val_in_train": 0, "test_in_train": 0, "test_in_val": 0}
    assert (tmp_path / "out" / "analysis.png").stat().st_size > 1000
