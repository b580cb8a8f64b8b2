"""report.html: the sweep report a person opens (sweep/report.py), its structure, escaping, and a headless browser."""
import csv
import json
import re
import shutil
import subprocess

import pytest

from netkiln.cli import main
from netkiln.sweep.report import optuna_importance
from conftest import tiny_run

# Run by the injected error if the page ever executed text from a trial's files.
INJECTED = "<script>document.body.setAttribute('data-pwned','1')</script>"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """Three 2-epoch trials on synthetic rows, one failing (a learning rate that makes the loss NaN); then a file
    holding markup in the failed trial's error and in an override, and the report rebuilt by `netkiln leaderboard`."""
    out = tmp_path_factory.mktemp("report") / "sweep"
    rc = main(["train", "-m", *tiny_run(240, epochs=2), "optimizer=sgd", "optimizer.lr=0.01,0.1,1e30",
               f"hydra.sweep.dir={out}"])
    assert rc == 3                                  # the sweep finished, one trial failed
    assert (out / "report.html").is_file()
    failed = next(d for d in out.iterdir() if (d / "metrics.json").is_file()
                  and json.loads((d / "metrics.json").read_text())["status"] == "failed")
    metrics = json.loads((failed / "metrics.json").read_text())
    metrics["error"] += " " + INJECTED
    (failed / "metrics.json").write_text(json.dumps(metrics))
    overrides = failed / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text() + "- +tag=<b>bold</b>\n")
    assert main(["leaderboard", str(out)]) == 0
    return out


def test_report_has_the_table_the_charts_and_the_best_card(sweep_dir):
    page = (sweep_dir / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page and "https://" not in page
    table = re.search(r'<table id="leaderboard">.*?</table>', page, re.S).group(0)
    assert table.count("<tr class=\"st-") == 3
    assert table.count('class="st-ok"') == 2 and table.count('class="st-failed"') == 1
    assert "learning rate" in table                  # the failed trial's error is shown
    assert page.count("<svg") == 4                   # best so far, curves, parallel coordinates, importance
    curves = re.search(r'aria-label="validation curves">(.*?)</svg>', page, re.S).group(1)
    assert curves.count("<path") == 2                # the two finished trials (the NaN one has no validation)
    assert "optimizer.lr" in re.search(r'aria-label="parallel coordinates">(.*?)</svg>', page, re.S).group(1)
    assert "no optuna.db" in page                    # a grid sweep: the spread of the objective instead
    assert "Trial " in page and "<h4>Metrics</h4>" in page


def test_text_from_files_is_escaped(sweep_dir):
    page = (sweep_dir / "report.html").read_text()
    assert page.count("<script>") == 1               # the report's own sorting script, nothing injected
    assert "&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;,&#x27;1&#x27;)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "+tag=&lt;b&gt;bold&lt;/b&gt;" in page


def test_optuna_importance_from_the_study(tmp_path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert optuna_importance(tmp_path)[0] is None
    study = optuna.create_study(study_name="netkiln", storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 0, 1) * 10 + t.suggest_float("dropout", 0, 1), n_trials=12)
    importance, how = optuna_importance(tmp_path)
    assert set(importance) == {"lr", "dropout"} and importance["lr"] > importance["dropout"], how


def _chromium(*args, tmp_path):
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
def test_report_in_a_headless_browser(sweep_dir, tmp_path):
    url = (sweep_dir / "report.html").resolve().as_uri()
    dom = _chromium("--dump-dom", url, tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert re.search(r'<table id="leaderboard" class="sortable">', dom.stdout)     # the sort script ran
    assert 'title="click to sort"' in dom.stdout
    assert 'data-pwned="1"' not in dom.stdout                                    # the injected script did not
    assert "Uncaught" not in dom.stderr and "ERROR:CONSOLE" not in dom.stderr, dom.stderr[-2000:]
    # Click the value header twice (as a person would) and write the column's order after each click into the page.
    clicks = """<script>
      var ths = document.querySelectorAll('#leaderboard th'), names = [].map.call(ths, function (t) {
        return t.textContent; });
      function order() { return [].map.call(document.querySelectorAll('#leaderboard tbody tr'), function (r) {
        return r.cells[names.indexOf('value')].textContent; }).join(','); }
      ths[names.indexOf('value')].click(); document.body.setAttribute('data-up', order());
      ths[names.indexOf('value')].click(); document.body.setAttribute('data-down', order());
    </script></body>"""
    page = tmp_path / "clicked.html"
    page.write_text((sweep_dir / "report.html").read_text().replace("</body>", clicks))
    dom = _chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path)
    rows = list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))
    values = sorted(float(r["value"]) for r in rows if r["value"])
    up = [f"{v:.4f}" for v in values] + [""]                        # the failed trial (no value) last both ways
    down = up[-2::-1] + [""]
    assert f'data-up="{",".join(up)}"' in dom.stdout, dom.stdout[-3000:]
    assert f'data-down="{",".join(down)}"' in dom.stdout, dom.stdout[-3000:]
    shot = tmp_path / "report.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1400,2400", url, tmp_path=tmp_path)
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]
    assert "Uncaught" not in run.stderr and "ERROR:CONSOLE" not in run.stderr, run.stderr[-2000:]


def test_parallel_coordinates_end_on_an_objective_axis_so_one_parameter_still_draws_lines():
    from netkiln.sweep.report import parallel_svg
    rows = [("0", {"model.vars.width": "8"}, 0.42), ("1", {"model.vars.width": "32"}, 0.93),
            ("2", {"model.vars.width": "128"}, None)]
    svg = parallel_svg(["model.vars.width"], rows, "max", "val/acc")
    assert ">val/acc</text>" in svg                  # the objective's axis, after the parameter's
    points = re.findall(r'<polyline points="([^"]*)"', svg)
    assert [len(p.split()) for p in points] == [2, 2, 1]     # a trial without a value stops at the parameter
    first_axis_x = float(re.search(r'<line x1="([\d.]+)"', svg).group(1))
    assert first_axis_x - 3.5 * len("model.vars.width") >= 0  # its centred name starts inside the picture


def test_a_cv_sweeps_report_shows_the_spread_and_the_folds_curves(tmp_path):
    out = tmp_path / "sweep"
    assert main(["train", "-m", *tiny_run(240, epochs=2), "optimizer.lr=0.01,0.1", "cv.folds=2",
                 f"hydra.sweep.dir={out}"]) == 0
    page = (out / "report.html").read_text()
    best = json.loads((out / "best.json").read_text())
    metrics = json.loads((out / best["trial"] / "metrics.json").read_text())
    std = metrics["cv"]["std"]["val"]
    # The best card: the monitored mean with the folds' spread, and every val metric as mean ± std
    assert f"Trial {best['trial']}: val/acc = {metrics['monitored']:.4f} ± {std['acc']:.4f} (mean of 2 folds)" in page
    card = re.search(r"<h4>Metrics</h4>(.*?)</table>", page, re.S).group(1)
    for name, mean in metrics["val"].items():
        assert f"<th>{name}</th><td>{mean:.4f} ± {std[name]:.4f}</td>" in card
    # The validation curves: each fold thin, and the folds' mean per epoch, computed here from fold-k/history.csv
    curves = re.search(r'aria-label="validation curves">(.*?)</svg>', page, re.S).group(1)
    for trial in ("0", "1"):
        per_fold = [{int(r["epoch"]): float(r["val/acc"]) for r in csv.DictReader(open(out / trial / f"fold-{k}" /
                                                                                       "history.csv"))}
                    for k in (0, 1)]
        assert sorted(per_fold[0]) == sorted(per_fold[1]) == [0, 1]
        means = ", ".join(f"epoch {e} {(per_fold[0][e] + per_fold[1][e]) / 2:.4f}" for e in (0, 1))
        mean_path = re.search(rf'<path d="M[^"]*"[^>]*><title>trial {trial}, mean of 2 folds: {means}</title>',
                              curves)
        assert mean_path is not None and mean_path.group(0).count(" L") == 1        # two epochs: two points
        for k in (0, 1):
            assert f"<title>trial {trial}, fold {k}</title>" in curves
    assert "the folds&#x27; mean per epoch" in page or "the folds' mean per epoch" in page
