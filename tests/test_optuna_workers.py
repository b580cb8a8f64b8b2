"""Many workers on one Optuna study: three processes share a journal file, one is killed mid-trial."""
import csv
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import tiny_run

N_TRIALS = 12


def _worker(sweep_dir, journal, *extra):
    args = [*tiny_run(240, epochs=1), "hydra/sweeper=optuna", f"hydra.sweeper.n_trials={N_TRIALS}",
            "optimizer.lr=tag(log,interval(1e-4,1e-1))", f"hydra.sweep.dir={sweep_dir}",
            f"hydra.sweeper.storage=journal://{journal}", "hydra.sweeper.study_name=shared",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=6", *extra]
    return subprocess.Popen([sys.executable, "-m", "netkiln.cli", "train", "-m", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _trials(journal):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if not journal.exists():
        return []
    storage = JournalStorage(JournalFileBackend(str(journal)))
    if "shared" not in optuna.study.get_all_study_names(storage):
        return []
    return optuna.load_study(study_name="shared", storage=storage).get_trials(deepcopy=False)


@pytest.mark.slow
def test_three_workers_share_one_study_and_a_killed_workers_trial_is_retried(tmp_path):
    from netkiln.cli import main
    from netkiln.sweep.optuna_workers import counted_trials

    sweep_dir, journal = tmp_path / "sweep", tmp_path / "study.log"
    # The victim's own trials run 1000 epochs (no early stopping): it is surely killed mid-trial. Its trial's
    # parameters are retried by another worker, with that worker's settings (1 epoch).
    victim = _worker(sweep_dir, journal, "callbacks=none", "trainer.max_epochs=1000")
    others = [_worker(sweep_dir, journal) for _ in range(2)]
    victim_id = f"{socket.gethostname()}:{victim.pid}"
    deadline, killed = time.time() + 120, None
    while killed is None and time.time() < deadline and victim.poll() is None:
        # Killed as soon as its trial runs: often before Hydra has written the trial's .hydra/ (then only the study
        # knows the trial, and the leaderboard lists it from there).
        running = [t for t in _trials(journal) if t.state.name == "RUNNING" and t.user_attrs.get("worker") == victim_id]
        if running:
            os.kill(victim.pid, signal.SIGKILL)
            killed = running[0].number
        time.sleep(0.2)
    assert killed is not None, victim.communicate()[0][-3000:]
    victim.wait()
    for worker in others:
        out = worker.communicate(timeout=300)[0]
        assert worker.returncode == 0, out[-3000:]

    trials = _trials(journal)
    counted = counted_trials(trials)
    assert len(counted) == N_TRIALS
    assert all(t.state.is_finished() for t in trials)
    assert sum(t.state.name in ("COMPLETE", "FAIL", "PRUNED") for t in counted) == N_TRIALS
    # The killed trial failed, was retried once with the same parameters, and only the retry counts.
    original = trials[killed]
    assert original.state.name == "FAIL" and original not in counted
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1 and retries[0] in counted and retries[0].params == original.params
    assert retries[0].user_attrs["worker"] != victim_id and retries[0].state.name == "COMPLETE"
    workers = {t.user_attrs.get("worker") for t in counted}
    assert victim_id in {t.user_attrs.get("worker") for t in trials}
    assert len(workers - {victim_id}) == 2                      # both surviving workers ran trials

    # One leaderboard from the shared folder: every trial that ran, once; the killed one as retried (listed from the
    # study when the worker died before Hydra wrote the trial's .hydra/).
    assert main(["leaderboard", str(sweep_dir)]) == 0
    rows = list(csv.DictReader(open(sweep_dir / "leaderboard.csv")))
    ran = sorted(str(t.number) for t in trials if not t.user_attrs.get("skipped"))
    assert sorted(r["trial"] for r in rows) == ran
    by_trial = {r["trial"]: r["status"] for r in rows}
    assert by_trial[str(killed)] == "retried"
    assert sum(by_trial[str(t.number)] == "ok" for t in counted) == N_TRIALS


def test_the_count_admits_n_trials_and_a_stale_trial_is_retried_once(tmp_path):
    import optuna

    from netkiln.sweep import optuna_workers as workers

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study()
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    # Four workers passed the count check for three places, and all asked: the first three numbers run.
    trials = [study.ask(space) for _ in range(4)]
    assert [workers.admitted(study, t.number, 3) for t in trials] == [True, True, True, False]
    workers.skip(study, trials[3])
    for trial in trials[:3]:
        workers.claim(trial)
    study.tell(trials[0], 0.5)
    assert [t.number for t in workers.counted_trials(study.get_trials())] == [0, 1, 2]

    # Trial 1's worker stopped beating; trial 2's beats. Two workers notice: one FAIL, one retry.
    trials[1].set_user_attr(workers.HEARTBEAT, 0.0)
    (tmp_path / "1" / ".hydra").mkdir(parents=True)
    workers.settle_stale(study, tmp_path, grace_period=60)
    workers.settle_stale(study, tmp_path, grace_period=60)
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "FAIL", "RUNNING", "FAIL", "WAITING"]
    retry = study.get_trials()[4]
    assert retry.user_attrs[workers.RETRY_OF] == 1 and retry.params == trials[1].params
    assert [t.number for t in workers.counted_trials(study.get_trials())] == [0, 2, 4]
    assert '"status": "retried"' in (tmp_path / "1" / "metrics.json").read_text()
    # The next ask of any worker takes the retry, which has the place of the trial it replaces.
    taken = study.ask(space)
    assert taken.number == 4 and workers.admitted(study, 4, 3)
    # A retry whose worker stops as well fails for good: no second retry.
    workers.claim(taken)
    taken.set_user_attr(workers.HEARTBEAT, 0.0)
    workers.settle_stale(study, tmp_path, grace_period=60)
    assert [t.state.name for t in study.get_trials()][4:] == ["FAIL"]
    assert [t.number for t in workers.counted_trials(study.get_trials())] == [0, 2, 4]


def test_a_sweep_folder_takes_the_workers_of_one_study_only(tmp_path):
    import json

    from netkiln.errors import NetkilnError
    from netkiln.sweep.optuna_workers import claim_sweep_dir

    claim_sweep_dir(tmp_path, "journal:///a.log", "one")
    claim_sweep_dir(tmp_path, "journal:///a.log", "one")           # a second worker of the study joins
    with pytest.raises(NetkilnError, match="another study"):
        claim_sweep_dir(tmp_path, "journal:///a.log", "two")
    other = tmp_path / "other"
    other.mkdir()
    (other / ".sweep.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(NetkilnError, match="one-process sweep"):
        claim_sweep_dir(other, "journal:///a.log", "one")


def test_a_one_process_sweep_is_refused_in_a_shared_studys_folder(tmp_path):
    from netkiln.cli import main

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / ".sweep.study").write_text('{"storage": "journal:///x.log", "study_name": "netkiln"}')
    assert main(["train", "-m", *tiny_run(), "model=mlp,perceptron", f"hydra.sweep.dir={sweep_dir}"]) == 2
    assert not (sweep_dir / "0").exists()
