"""The leaderboard and report.html of a sweep whose primary objective is not the monitored metric, and trials that
ran the same configuration twice (NSGA-II may propose it again), on sweep folders built here (no training)."""
import csv
import io
import json
import re

import yaml


def _trial(sweep_dir, name, overrides, acc, params, latency=0.01):
    trial = sweep_dir / name
    (trial / ".hydra").mkdir(parents=True)
    (trial / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = {"status": "ok", "monitor": "val/acc", "mode": "max", "monitored": acc,
               "val": {"acc": acc, "loss": 1 - acc}, "test": {}, "params": {"total": params}, "latency_ms": latency,
               "epochs": 3, "seconds": 0.5}
    (trial / "metrics.json").write_text(json.dumps(metrics))


def _sweep(tmp_path, trials, objectives=None):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    sweeper = {"objectives": objectives} if objectives else {}
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"sweeper": sweeper}}))
    for name, overrides, acc, params, *latency in trials:
        _trial(sweep_dir, name, overrides, acc, params, *latency)
    return sweep_dir


def _rows(sweep_dir):
    return list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))


def _printed(board):
    from rich.console import Console

    from netkiln.sweep.leaderboard import print_leaderboard

    console = Console(file=io.StringIO(), width=100)
    print_leaderboard(board, console)
    return console.file.getvalue()


TRIALS = [("0", ["model.vars.width=64"], 0.9, 5000), ("1", ["model.vars.width=32"], 0.85, 1300),
          ("2", ["model.vars.width=8"], 0.7, 139)]


def test_the_value_column_and_the_best_so_far_chart_show_the_primary_objective(tmp_path):
    from netkiln.sweep.leaderboard import write_leaderboard

    sweep_dir = _sweep(tmp_path, TRIALS, ["params:min", "val/acc:max"])
    board = write_leaderboard(sweep_dir)
    rows = _rows(sweep_dir)
    params = {name: p for name, _, _, p in TRIALS}
    assert [r["trial"] for r in rows] == sorted(params, key=params.get)         # ranked by params, fewest first
    assert all(r["objective"] == "params:min" and r["value"] == str(params[r["trial"]]) for r in rows)
    assert all(r["monitor"] == "val/acc" for r in rows)                         # still the trials' monitor
    printed = _printed(board)
    header = [cell.strip() for cell in next(line for line in printed.splitlines() if "rank" in line).split("┃")[1:-1]]
    assert header[4] == "params" and header.count("params") == 1 and "val/acc" in header
    [best_line] = [line for line in printed.splitlines() if line.startswith("best")]
    assert "trial 2" in best_line and "params = 139, val/acc = 0.7000" in best_line
    page = (sweep_dir / "report.html").read_text()
    assert "<h2>Best params so far (the primary objective)</h2>" in page
    chart = re.search(r'aria-label="best so far">(.*?)</svg>', page, re.S).group(1)
    assert re.findall(r"<title>trial (\d+): ([^<]+)</title>", chart) == [(n, str(p)) for n, p in params.items()]
    assert ">params (min)</text>" in chart


def test_without_objectives_the_value_is_the_monitored_metric(tmp_path):
    from netkiln.sweep.leaderboard import write_leaderboard

    sweep_dir = _sweep(tmp_path, TRIALS)
    board = write_leaderboard(sweep_dir)
    rows = _rows(sweep_dir)
    assert [r["trial"] for r in rows] == ["0", "1", "2"] and "objective" not in rows[0]
    assert [float(r["value"]) for r in rows] == [0.9, 0.85, 0.7]
    assert "<h2>Best val/acc so far</h2>" in (sweep_dir / "report.html").read_text()
    assert "val/acc = 0.9000; bundle at" in _printed(board)


# Trial 2 ran trial 0's configuration again and scored a little higher (training is not bit-for-bit repeatable,
# latency never is); 3 and 10 repeat trial 1. Trial 10 ran after 3 (folder names sort as numbers).
REPEATS = [("0", ["model.vars.width=64", "optimizer.lr=0.01"], 0.9, 5000),
           ("1", ["model.vars.width=8", "optimizer.lr=0.01"], 0.7, 139),
           ("2", ["optimizer.lr=0.01", "model.vars.width=64"], 0.92, 5000),
           ("3", ["model.vars.width=8", "optimizer.lr=0.01"], 0.7, 139),
           ("4", ["model.vars.width=32", "optimizer.lr=0.01"], 0.85, 1300),
           ("10", ["model.vars.width=8", "optimizer.lr=0.01"], 0.69, 139)]


def _brute_front_of_first_runs(trials):
    """The (acc max, params min) front over each configuration's first trial in run order."""
    first = {}
    for name, overrides, acc, params in sorted(trials, key=lambda t: int(t[0])):
        first.setdefault(frozenset(overrides), (name, acc, params))
    points = list(first.values())
    return {name for name, acc, params in points
            if not any(a >= acc and p <= params and (a > acc or p < params) for _, a, p in points)}


def test_a_configuration_that_ran_twice_is_marked_and_counts_once_on_the_front(tmp_path):
    from netkiln.sweep.leaderboard import write_leaderboard

    sweep_dir = _sweep(tmp_path, REPEATS, ["val/acc:max", "params:min"])
    board = write_leaderboard(sweep_dir)
    rows = {r["trial"]: r for r in _rows(sweep_dir)}
    assert {name: r["duplicate_of"] for name, r in rows.items()} == {"0": "", "1": "", "2": "0", "3": "1", "4": "",
                                                                     "10": "1"}
    front = _brute_front_of_first_runs(REPEATS)
    assert front == {"0", "1", "4"}                 # all three distinct configurations; 2 would dominate 0
    assert {name for name, r in rows.items() if r["pareto"] == "yes"} == front
    assert all(rows[name]["rank"] for name in rows)                  # duplicates are still ranked
    assert board.best.name == "0" and json.loads((sweep_dir / "best.json").read_text())["trial"] == "0"
    assert "duplicate_of" in _printed(board)
    page = (sweep_dir / "report.html").read_text()
    assert "Pareto front (3 of 6 finished trials)" in page


def test_without_repeats_there_is_no_duplicate_column(tmp_path):
    from netkiln.sweep.leaderboard import write_leaderboard

    sweep_dir = _sweep(tmp_path, TRIALS, ["val/acc:max", "params:min"])
    write_leaderboard(sweep_dir)
    assert "duplicate_of" not in _rows(sweep_dir)[0]
    assert {r["pareto"] for r in _rows(sweep_dir)} == {"yes"}
