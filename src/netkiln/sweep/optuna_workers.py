"""Several sweep processes (workers) on one Optuna study in shared storage: heartbeats, stale trials, the count.

Every worker runs the same loop (optuna_search.run_search): settle stale trials, ask, launch, tell. What they share
lives in the storage only:
- a heartbeat: while a worker's trials run, a thread writes the time into each trial (user attr `heartbeat`) every
  `heartbeat_interval` seconds. A RUNNING trial whose heartbeat is older than `grace_period` lost its worker: the
  first worker to notice fails it (the storage applies one FAIL; the others' are refused) and, unless the trial is
  itself a retry, queues a retry with the same parameters (a WAITING trial that the next `ask` of any worker takes).
  Heartbeat times are the workers' clocks: machines sharing a study need clocks that agree within the grace period.
- the count: `n_trials` is the study's total. A trial counts unless it was skipped or retried (its retry counts in
  its place), whatever its state, running ones included, so nothing is counted twice.
- the admission: a worker first checks the count, then asks; two workers can both pass the check for the last
  place. So an asked trial runs only if fewer than `n_trials` counted trials have a lower number: the storage numbers
  trials in one order, so of the racing workers exactly those whose trials come first run. The others mark their
  trial `skipped` and tell it FAIL without running it (it counts nowhere and has no folder).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger("netkiln")

HEARTBEAT = "heartbeat"                 # user attr: time.time() of the worker's last beat
RETRY_OF = "retry_of"                   # user attr of a retry: the number of the trial it replaces
WORKER = "worker"                       # user attr: host:pid of the worker that ran the trial
SKIPPED = "skipped"                     # user attr: asked in a race for the last place, not run


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _skipped(trial) -> bool:
    return bool(trial.user_attrs.get(SKIPPED))


def counted_trials(trials) -> list:
    """The trials that count toward n_trials: not skipped, and not replaced by a (not skipped) retry."""
    retried = {t.user_attrs.get(RETRY_OF) for t in trials if not _skipped(t)}
    return [t for t in trials if not _skipped(t) and t.number not in retried]


def admitted(study, number: int, n_trials: int) -> bool:
    """Whether trial `number` has a place: fewer than n_trials counted trials come before it."""
    trials = study.get_trials(deepcopy=False)
    return sum(1 for t in counted_trials(trials) if t.number < number) < n_trials


def claim(trial) -> None:
    """Mark a freshly asked trial as this worker's, with a first heartbeat."""
    trial.set_user_attr(WORKER, worker_id())
    trial.set_user_attr(HEARTBEAT, time.time())


def skip(study, trial) -> None:
    """A trial that lost the race for the last place: told FAIL without running, and marked so it counts nowhere."""
    from optuna.trial import TrialState

    trial.set_user_attr(SKIPPED, True)
    study.tell(trial, state=TrialState.FAIL)


class Heartbeat:
    """`with Heartbeat(trials, interval):` beats for the trials while the block runs."""

    def __init__(self, trials, interval: float):
        self.trials, self.interval = trials, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netkiln-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for trial in self.trials:
                try:
                    trial.set_user_attr(HEARTBEAT, time.time())
                except RuntimeError:        # finished meanwhile (told, or failed as stale): nothing to keep alive
                    pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _last_beat(trial) -> float:
    beat = trial.user_attrs.get(HEARTBEAT)
    if isinstance(beat, (int, float)):
        return float(beat)
    return trial.datetime_start.timestamp() if trial.datetime_start else time.time()


def settle_stale(study, sweep_dir: Path, grace_period: float) -> None:
    """Fail the RUNNING trials whose worker stopped beating, and queue one retry of each."""
    import optuna
    from optuna.trial import TrialState

    from netkiln.io.files import write_json_atomic
    from netkiln.sweep.objectives import of_study, record_constraints
    from netkiln.sweep.optuna_search import recorded_outcome

    now = time.time()
    objectives = of_study(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if now - _last_beat(trial) < grace_period:
            continue
        trial_dir = sweep_dir / str(trial.number)
        recorded = recorded_outcome(trial_dir, objectives)
        if recorded is not None:        # it finished and wrote its result; its worker died before telling it
            state, value = recorded
            record_constraints(study, trial.number, trial_dir)
            study.tell(trial.number, value, state=None if value is not None else state, skip_if_finished=True)
            continue
        try:
            # Of several workers failing this trial, the storage applies the first FAIL and refuses the others.
            study.tell(trial.number, state=TrialState.FAIL)
        except RuntimeError:
            continue
        retry = RETRY_OF not in trial.user_attrs
        if retry:
            study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
                user_attrs={RETRY_OF: trial.number}))
        worker = trial.user_attrs.get(WORKER, "?")
        why = f"its worker ({worker}) stopped: no heartbeat for {grace_period:g} s"
        if trial_dir.is_dir():
            write_json_atomic(trial_dir / "metrics.json",
                              {"status": "retried" if retry else "failed",
                               "error": why + ("; its parameters run again as a new trial" if retry else "")})
        log.warning("trial %d failed: %s%s", trial.number, why, "; retrying it once" if retry else "")


def claim_sweep_dir(sweep_dir: str | os.PathLike, storage: str, study_name: str) -> None:
    """The workers of one study share its sweep directory; a different study is refused there. The first worker
    records the study in <sweep dir>/.sweep.study (created atomically); the others compare. A one-process sweep's
    lock (io/lock.py) refuses workers while its process lives."""
    import json

    from netkiln.errors import NetkilnError
    from netkiln.io.lock import KINDS, process_alive

    lock = Path(sweep_dir) / KINDS["sweep"][0]
    if lock.exists():
        try:
            holder = json.loads(lock.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        pid, host = holder.get("pid"), holder.get("host")
        if not (pid and host == socket.gethostname() and not process_alive(int(pid))):
            raise NetkilnError(f"a one-process sweep (pid {pid} on {host}) is running in this folder; the workers of "
                               f"a shared study need a folder of their own. If that process is gone, delete {lock}.",
                               key="hydra.sweep.dir", file=str(sweep_dir))
    marker = Path(sweep_dir) / ".sweep.study"
    study = {"storage": storage, "study_name": study_name}
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            recorded = json.loads(marker.read_text() or "{}")
        except (OSError, ValueError):
            recorded = {}
        if recorded != study:
            raise NetkilnError(f"this folder belongs to another study ({recorded.get('study_name')} in "
                               f"{recorded.get('storage')}); the workers of one study share a hydra.sweep.dir, "
                               "another study needs its own.", key="hydra.sweep.dir", file=str(sweep_dir)) from None
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(study))
