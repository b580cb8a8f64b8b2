"""`netkiln evaluate data=text` on other labelled texts, read as training reads them: a folder of class sub-folders
or a table whose data.text / data.target columns may differ from the model's; and predict on a .txt file that ends
in blank lines."""
import csv
import json
import random

import pytest

from netkiln.cli import main

WORDS = {"pos": "good great excellent lovely superb".split(), "neg": "bad awful poor terrible dull".split()}
FILLER = "the movie was plot acting and it a really".split()
TRAIN = ["train", "data=text", "model=textcnn", "model.vars.width=8", "model.vars.embed_dim=8", "trainer=debug",
         "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "batch_size=32"]


def reviews(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(WORDS))
        words = rng.sample(FILLER, 4) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_folder(root, rows):
    for i, (text, label) in enumerate(rows):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i}.txt").write_text(text + "\n")
    return root


def write_csv(path, rows, header=("review", "label")):
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny models: one trained on a folder of .txt files, one on a CSV (columns review, label)."""
    root = tmp_path_factory.mktemp("textev")
    rows = reviews(60, seed=0)
    write_folder(root / "docs", rows)
    write_csv(root / "reviews.csv", rows)
    assert main([*TRAIN, f"data.path={root / 'docs'}", f"hydra.run.dir={root / 'folder_run'}"]) == 0
    assert main([*TRAIN, f"data.path={root / 'reviews.csv'}", "data.text=review", "data.target=label",
                 f"hydra.run.dir={root / 'csv_run'}"]) == 0
    return {"folder": root / "folder_run", "csv": root / "csv_run"}


def evaluate(run, out, *args):
    code = main(["evaluate", f"run={run}", "data=text", *args, f"out={out}"])
    report = json.loads((out / "evaluation.json").read_text()) if code == 0 else None
    return code, report


@pytest.mark.parametrize("trained_on", ["folder", "csv"])
def test_evaluate_on_a_folder_of_txt_files(runs, tmp_path, trained_on):
    rows = reviews(20, seed=1)
    code, report = evaluate(runs[trained_on], tmp_path / "ev", f"data.path={write_folder(tmp_path / 'new', rows)}")
    assert code == 0
    assert report["rows"] == 20 and report["data"] == "new" and report["labels"] == ["neg", "pos"]
    assert sum(r["support"] for r in report["per_class"]) == 20
    assert sum(r["support"] for r in report["per_class"] if r["class"] == "pos") == \
        sum(label == "pos" for _, label in rows)


def test_a_folder_with_one_of_the_classes_is_evaluated(runs, tmp_path):
    rows = [r for r in reviews(20, seed=2) if r[1] == "neg"]
    code, report = evaluate(runs["csv"], tmp_path / "ev", f"data.path={write_folder(tmp_path / 'new', rows)}")
    assert code == 0 and report["rows"] == len(rows)


@pytest.mark.parametrize("trained_on", ["folder", "csv"])
def test_data_text_and_target_name_the_columns_of_another_table(runs, tmp_path, trained_on):
    path = write_csv(tmp_path / "texts.csv", reviews(15, seed=3), header=("body", "topic"))
    code, report = evaluate(runs[trained_on], tmp_path / "ev", f"data.path={path}", "data.text=body",
                            "data.target=topic")
    assert code == 0 and report["rows"] == 15 and (tmp_path / "ev" / "mistakes.csv").is_file()


def test_without_data_text_the_saved_column_is_used(runs, tmp_path, capsys):
    path = write_csv(tmp_path / "texts.csv", reviews(15, seed=4), header=("review", "label"))
    assert evaluate(runs["csv"], tmp_path / "ev", f"data.path={path}")[1]["rows"] == 15
    other = write_csv(tmp_path / "other.csv", reviews(5, seed=4), header=("body", "label"))
    capsys.readouterr()
    assert evaluate(runs["csv"], tmp_path / "ev2", f"data.path={other}")[0] == 2
    err = capsys.readouterr().err
    assert "data.text" in err and "'review'" in err and "Traceback" not in err
    assert not (tmp_path / "ev2").exists()


def test_a_class_the_model_does_not_know_is_refused(runs, tmp_path, capsys):
    folder = write_folder(tmp_path / "new", reviews(6, seed=5))
    (folder / "meh").mkdir()
    (folder / "meh" / "a.txt").write_text("so-so\n")
    capsys.readouterr()
    assert evaluate(runs["folder"], tmp_path / "ev", f"data.path={folder}")[0] == 2
    err = capsys.readouterr().err
    assert "the class 'meh'" in err and "neg, pos" in err and "Traceback" not in err, err
    assert not (tmp_path / "ev").exists()
    path = write_csv(tmp_path / "texts.csv", [("fine", "pos"), ("so-so", "meh")])
    assert evaluate(runs["csv"], tmp_path / "ev", f"data.path={path}")[0] == 2
    err = capsys.readouterr().err
    assert "never saw: meh" in err and "Traceback" not in err, err
    assert not (tmp_path / "ev").exists()


def test_predict_ignores_blank_lines_at_the_end_of_a_txt_file(runs, tmp_path, capsys):
    (tmp_path / "new.txt").write_text("a great movie\nawful plot\n\n  \n")
    assert main(["predict", f"run={runs['folder']}", f"input={tmp_path / 'new.txt'}",
                 f"output={tmp_path / 'a.csv'}"]) == 0
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 3         # header + two predictions
    (tmp_path / "middle.txt").write_text("a great movie\n\nawful plot\n\n")
    (tmp_path / "blank.txt").write_text("\n\n")
    for name, expected in [("middle.txt", "line 2"), ("blank.txt", "only empty lines")]:
        capsys.readouterr()
        assert main(["predict", f"run={runs['folder']}", f"input={tmp_path / name}",
                     f"output={tmp_path / 'b.csv'}"]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
        assert not (tmp_path / "b.csv").exists()


def test_data_filter_keeps_the_rows_it_names_as_training_does(runs, tmp_path, capsys):
    """evaluate data.path=other.csv data.filter=...: the filter's rows only, scored exactly as a file holding just
    those rows; a folder refuses the filter; a bad filter names data.filter."""
    rows = reviews(30, seed=6)
    sources = ["web" if i % 3 else "mail" for i in range(len(rows))]
    path = write_csv(tmp_path / "all.csv", [(t, y, s) for (t, y), s in zip(rows, sources)],
                     header=("review", "label", "source"))
    kept = [r for r, s in zip(rows, sources) if s == "mail"]
    only = write_csv(tmp_path / "mail.csv", kept)
    code, filtered = evaluate(runs["csv"], tmp_path / "ev", f"data.path={path}", "data.filter=\"source == 'mail'\"")
    assert code == 0 and filtered["rows"] == len(kept) == 10
    assert sum(r["support"] for r in filtered["per_class"] if r["class"] == "pos") == \
        sum(label == "pos" for _, label in kept)
    reference = evaluate(runs["csv"], tmp_path / "ev2", f"data.path={only}")[1]
    assert filtered["metrics"] == reference["metrics"] and filtered["per_class"] == reference["per_class"]
    if (tmp_path / "ev" / "mistakes.csv").exists():                    # only the filter's texts are reported
        with open(tmp_path / "ev" / "mistakes.csv", newline="") as fh:
            assert {r["text"] for r in csv.DictReader(fh)} <= {t for t, _ in kept}

    folder = write_folder(tmp_path / "new", reviews(6, seed=7))
    for run, args, expected in [
        (runs["folder"], [f"data.path={folder}", "data.filter=\"label == 'pos'\""],
         ["data.filter applies to a table file", "is a folder"]),
        (runs["csv"], [f"data.path={path}", "data.filter=\"sourse == 'mail'\""], ["data.filter", "'source'"]),
        (runs["csv"], [f"data.path={path}", "data.filter=\"source == 'fax'\""], ["data.filter", "keeps none"]),
    ]:
        capsys.readouterr()
        assert evaluate(run, tmp_path / "bad", *args)[0] == 2
        err = capsys.readouterr().err
        assert all(e in err for e in expected) and "Traceback" not in err, err
        assert not (tmp_path / "bad").exists()
