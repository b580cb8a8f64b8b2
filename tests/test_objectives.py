"""Several objectives (issue #16): a multi-objective Optuna study, the Pareto front on the leaderboard, constraints on
`best`, prediction latency, bad settings, and the trials only the study knows."""
import csv
import json
import random
import shutil
import time

import pytest

from netkiln.cli import main
from conftest import tiny_run

TWO = ["hydra/sweeper=optuna", "hydra.sweeper.seed=0", "hydra.sweeper.objectives=[val/acc:max, params:min]",
       "model=choice(mlp,perceptron)", "optimizer.lr=tag(log,interval(1e-3,1e-1))"]


def _sweep(sweep_dir, *overrides):
    return main(["train", "-m", *tiny_run(240, epochs=1, model=None), f"hydra.sweep.dir={sweep_dir}", *overrides])


def _rows(sweep_dir):
    return list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))


def _study(sweep_dir):
    import optuna

    return optuna.load_study(study_name="netkiln", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def _brute_front(points: dict) -> set:
    """Names of the (acc, params) points no other point beats: acc higher-or-equal and params lower-or-equal,
    one of them strictly."""
    front = set()
    for name, (acc, params) in points.items():
        beaten = False
        for other, (acc2, params2) in points.items():
            if other != name and acc2 >= acc and params2 <= params and (acc2 > acc or params2 < params):
                beaten = True
        if not beaten:
            front.add(name)
    return front


@pytest.fixture(scope="module")
def two_objective_sweep(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("objectives") / "sweep"
    assert _sweep(sweep_dir, *TWO, "hydra.sweeper.n_trials=3", "hydra.sweeper.max_params=1000") == 0
    return sweep_dir


def test_a_two_objective_sweep_marks_the_pareto_front(two_objective_sweep):
    sweep_dir = two_objective_sweep
    study = _study(sweep_dir)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    rows = _rows(sweep_dir)
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    # The study was told what each trial's metrics.json holds.
    for trial in study.trials:
        metrics = json.loads((sweep_dir / str(trial.number) / "metrics.json").read_text())
        assert trial.values == [metrics["val"]["acc"], metrics["params"]["total"]]
        assert trial.constraints == pytest.approx({"params": (metrics["params"]["total"] - 1000) / 1000})
        assert metrics["latency_ms"] > 0
    points = {r["trial"]: (float(r["val/acc"]), int(r["params"])) for r in rows}
    front = _brute_front(points)
    assert {r["trial"] for r in rows if r["pareto"] == "yes"} == front
    assert {str(t.number) for t in study.best_trials} == front
    # Ranked by the primary objective.
    accs = [float(r["val/acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert all(float(r["latency_ms"]) > 0 for r in rows)


def test_best_is_the_top_of_the_front_that_meets_the_constraints(two_objective_sweep):
    rows = _rows(two_objective_sweep)
    feasible = {r["trial"]: (float(r["val/acc"]), int(r["params"])) for r in rows if int(r["params"]) <= 1000}
    assert {r["trial"] for r in rows if r["constraints"] == "ok"} == set(feasible)
    best = json.loads((two_objective_sweep / "best.json").read_text())
    if feasible:
        front = _brute_front(feasible)
        top = max(front, key=lambda name: feasible[name][0])
        assert feasible[best["trial"]][0] == feasible[top][0] and best["trial"] in front
        assert best["objectives"] == ["val/acc:max", "params:min"] and "params <= 1000" in best["rule"]
    else:
        assert best is None
    assert "best: the top of val/acc:max among the Pareto front" in (two_objective_sweep / "leaderboard.md").read_text()


def test_a_multi_objective_study_resumes(two_objective_sweep, tmp_path):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(two_objective_sweep, sweep_dir, symlinks=True)
    (sweep_dir / ".sweep.lock").unlink(missing_ok=True)
    assert _sweep(sweep_dir, *TWO, "hydra.sweeper.n_trials=4", "hydra.sweeper.max_params=1000",
                  "hydra.sweeper.resume=true") == 0
    assert [t.state.name for t in _study(sweep_dir).trials] == ["COMPLETE"] * 4
    assert len(_rows(sweep_dir)) == 4
    # Other objectives on the same study are refused.
    rc = _sweep(sweep_dir, *TWO[:2], "hydra.sweeper.objectives=[val/acc:max, latency_ms:min]", *TWO[3:],
                "hydra.sweeper.n_trials=5", "hydra.sweeper.resume=true")
    assert rc == 2


@pytest.mark.parametrize("setting, message", [
    ("hydra.sweeper.objectives=[val/acc:max, parms:min]", "unknown objective metric 'parms'"),
    ("hydra.sweeper.objectives=[val/acc:up]", "the direction must be max or min"),
    ("hydra.sweeper.objectives=[val/r2:max]", "a multiclass run records no 'val/r2'"),
    ("hydra.sweeper.max_latency_ms=-1", "max_latency_ms must be a positive number"),
    ("hydra.sweeper.direction=minimize", "leave hydra.sweeper.direction at auto"),
])
def test_bad_objective_settings_exit_2(tmp_path, capsys, setting, message):
    rc = _sweep(tmp_path / "sweep", "hydra/sweeper=optuna", "model=mlp", "optimizer.lr=interval(1e-3,1e-1)",
                "hydra.sweeper.objectives=[val/acc:max, params:min]", setting)
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err[-2000:]
    assert "hydra.sweeper." in err and "Traceback" not in err
    assert not (tmp_path / "sweep").exists()             # not even an empty sweep folder


def test_objectives_parse_and_default_directions():
    from netkiln.errors import NetkilnError
    from netkiln.sweep.objectives import parse_objectives, sampler_name

    assert [str(o) for o in parse_objectives(["val/loss", "params", "test/acc:maximize"])] == \
        ["val/loss:min", "params:min", "test/acc:max"]
    assert parse_objectives(None) == [] and parse_objectives([]) == []
    with pytest.raises(NetkilnError, match="named twice"):
        parse_objectives(["params:min", "params:max"])
    # sampler auto: NSGA-II for several objectives, TPE otherwise; a named sampler is kept.
    assert sampler_name({"objectives": ["val/acc:max", "params:min"]}) == "nsga2"
    assert sampler_name({"objectives": ["val/acc:max"]}) == sampler_name({}) == "tpe"
    assert sampler_name({"sampler": "tpe", "objectives": ["val/acc:max", "params:min"]}) == "tpe"


class _T:
    def __init__(self, name, acc, params, latency, status="ok"):
        self.name, self.status = name, status
        self.overrides = [f"model.vars.width={name}"]          # each its own configuration
        self.metrics = {"val": {"acc": acc}, "params": {"total": params}, "latency_ms": latency}


def test_pareto_front_against_a_brute_force_check():
    from netkiln.sweep.objectives import parse_objectives
    from netkiln.sweep.pareto import pareto_front

    objectives = parse_objectives(["val/acc:max", "params:min"])
    rng = random.Random(0)
    for _ in range(50):
        # Few distinct values: ties and duplicates are common.
        trials = [_T(str(i), rng.choice([0.5, 0.6, 0.7, 0.8]), rng.choice([10, 20, 30]), 1.0) for i in range(8)]
        trials.append(_T("failed", 1.0, 1, 1.0, status="failed"))        # finished trials only
        expected = _brute_front({t.name: (t.metrics["val"]["acc"], t.metrics["params"]["total"])
                                 for t in trials if t.status == "ok"})
        assert pareto_front(trials, objectives) == expected


def test_the_constraints_pick_best_among_the_trials_that_meet_them():
    from netkiln.sweep.objectives import Constraints, parse_objectives
    from netkiln.sweep.pareto import pick_best

    objectives = parse_objectives(["val/acc:max", "params:min"])
    fast_big = _T("0", 0.9, 500, 5.0)       # the front, too slow
    slow_small = _T("1", 0.8, 300, 5.0)     # the front, too slow
    feasible = _T("2", 0.85, 600, 1.0)      # dominated by 0, but the best that meets the latency limit
    ranked = [fast_big, feasible, slow_small]
    assert pick_best(ranked, objectives, Constraints())[0] is fast_big
    best, rule = pick_best(ranked, objectives, Constraints(max_latency_ms=2.0))
    assert best is feasible and "latency_ms <= 2" in rule
    best, rule = pick_best(ranked, objectives, Constraints(max_params=100))
    assert best is None and "no finished trial meets params <= 100" in rule


def test_latency_is_measured_per_row_and_leaves_the_threads_alone():
    import torch

    from netkiln.training.latency import latency_ms_per_row

    threads = torch.get_num_threads()
    network = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3)).train()
    ms = latency_ms_per_row(network, torch.randn(256, 8))
    assert 0 < ms < 10 and network.training and torch.get_num_threads() == threads


def test_the_leaderboard_lists_trials_only_the_study_knows(two_objective_sweep, tmp_path):
    import optuna

    from netkiln.sweep.optuna_workers import HEARTBEAT, RETRY_OF, SKIPPED, WORKER

    sweep_dir = tmp_path / "sweep"
    shutil.copytree(two_objective_sweep, sweep_dir, symlinks=True)
    study = _study(sweep_dir)
    lr = optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)
    model = optuna.distributions.CategoricalDistribution(["mlp", "perceptron"])
    space = {"model": model, "optimizer.lr": lr}

    def add(state, **attrs):
        study.add_trial(optuna.trial.create_trial(state=state, params={"model": "mlp", "optimizer.lr": 0.01},
                                                  distributions=space, user_attrs={WORKER: "h:1", **attrs},
                                                  values=None))
        return str(len(study.trials) - 1)

    killed = add(optuna.trial.TrialState.FAIL)                                      # retried below
    add(optuna.trial.TrialState.WAITING, **{RETRY_OF: int(killed)})                  # a retry not started: not listed
    stale = add(optuna.trial.TrialState.RUNNING, **{HEARTBEAT: time.time() - 3600})
    running = add(optuna.trial.TrialState.RUNNING, **{HEARTBEAT: time.time() + 3600})
    add(optuna.trial.TrialState.FAIL, **{SKIPPED: True})                            # never ran: not listed
    assert main(["leaderboard", str(sweep_dir)]) == 0
    rows = _rows(sweep_dir)
    by_trial = {r["trial"]: r for r in rows}
    assert len(rows) == len(by_trial) == 6                  # the 3 trial folders, then 3 that only the study knows
    assert by_trial[killed]["status"] == "retried" and by_trial[stale]["status"] == "failed"
    assert by_trial[running]["status"] == "running" and "no heartbeat" in by_trial[stale]["error"]
    assert "model=mlp" in by_trial[killed]["overrides"] and "optimizer.lr=0.01" in by_trial[killed]["overrides"]


def test_the_report_plots_the_pareto_front(two_objective_sweep):
    import re

    page = (two_objective_sweep / "report.html").read_text()
    plot = re.search(r'aria-label="pareto front">(.*?)</svg>', page, re.S).group(1)
    rows = _rows(two_objective_sweep)
    assert plot.count("<circle") == len(rows)                                   # every finished trial
    assert plot.count('class="pt front"') == sum(r["pareto"] == "yes" for r in rows)
    assert "val/acc:max" in plot and "params:min" in plot
    assert "Pareto front: val/acc:max against params:min" in page


def test_with_three_objectives_the_plot_shows_the_first_two():
    from netkiln.sweep.objectives import parse_objectives
    from netkiln.sweep.pareto_plot import pareto_svg

    objectives = parse_objectives(["val/acc:max", "params:min", "latency_ms:min"])
    # 1 is dominated in (acc, params) but the fastest: on the front of all three.
    trials = [_T("0", 0.9, 100, 2.0), _T("1", 0.8, 200, 0.5), _T("2", 0.7, 300, 3.0), _T("3", 0.95, 50, 1, "failed")]
    svg = pareto_svg(trials, objectives, best_name="0")
    assert svg.count("<circle") == 3 and svg.count('class="pt front"') == 2
    assert "the plot shows the first two" in svg and "<path" not in svg          # no front line in a projection
    assert 'stroke="#d62728"' in svg                                             # the best trial's ring
    assert pareto_svg([_T("0", 0.9, 100, 1.0, "failed")], objectives, None).startswith('<p class="note">')


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
def test_the_pareto_report_in_a_headless_browser(two_objective_sweep, tmp_path):
    import subprocess

    shot = tmp_path / "report.png"
    run = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                          f"--screenshot={shot}", "--window-size=1400,2400",
                          (two_objective_sweep / "report.html").resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]
    assert "Uncaught" not in run.stderr and "ERROR:CONSOLE" not in run.stderr, run.stderr[-2000:]


def test_constraints_without_objectives_steer_the_sampler_and_pick_best(tmp_path):
    sweep_dir = tmp_path / "sweep"
    assert _sweep(sweep_dir, "hydra/sweeper=optuna", "hydra.sweeper.seed=0", "hydra.sweeper.n_trials=2",
                  "model=choice(mlp,perceptron)", "hydra.sweeper.max_params=1000") == 0
    study = _study(sweep_dir)
    assert len(study.directions) == 1 and "objectives" not in study.user_attrs
    rows = _rows(sweep_dir)
    # The sampler was given each trial's constraint value (params over the limit, relative to it).
    for trial in study.trials:
        params = json.loads((sweep_dir / str(trial.number) / "metrics.json").read_text())["params"]["total"]
        assert trial.constraints == pytest.approx({"params": (params - 1000) / 1000})
    best = json.loads((sweep_dir / "best.json").read_text())
    feasible = [r for r in rows if int(r["params"]) <= 1000]
    if feasible:
        top = max(float(r["val/acc"]) for r in feasible)
        assert best["rule"].startswith("best: the top of val/acc:max among the trials that meet params <= 1000")
        assert float(next(r for r in rows if r["trial"] == best["trial"])["val/acc"]) == top
    else:
        assert best is None


def test_without_a_trial_that_meets_the_constraints_there_is_no_best(two_objective_sweep, tmp_path, capsys):
    import yaml

    sweep_dir = tmp_path / "sweep"
    shutil.copytree(two_objective_sweep, sweep_dir, symlinks=True)
    assert (sweep_dir / "best").is_symlink()
    multirun = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())
    multirun["hydra"]["sweeper"]["max_params"] = 1             # no model is that small
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    assert main(["leaderboard", str(sweep_dir)]) == 0
    assert "no finished trial meets params <= 1" in capsys.readouterr().out
    assert json.loads((sweep_dir / "best.json").read_text()) is None and not (sweep_dir / "best").exists()
    assert all(r["constraints"].startswith("params ") for r in _rows(sweep_dir))
    assert "none (no finished trial meets params <= 1)" in (sweep_dir / "leaderboard.md").read_text()
    assert "No finished trial meets params &lt;= 1" in (sweep_dir / "report.html").read_text()
