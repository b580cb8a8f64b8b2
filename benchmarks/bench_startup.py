"""Start-up time of the CLI and per-trial overhead of a sweep with Hydra's basic launcher.

    python benchmarks/bench_startup.py                 # --help, summary, sweep overhead
    python benchmarks/bench_startup.py --runs 15 --trials 2,12

Start-up: wall time of `netkiln --help` and `netkiln summary` as subprocesses (the installed console script next
to this interpreter), median [min-max] of --runs, interleaved.

Sweep overhead: `netkiln train -m seed=0,...,N-1` on tiny data (the trials are equal but for the seed), for two
sweep sizes N1 < N2, interleaved --sweep-runs times. For each sweep, beyond = wall time - sum of the trials'
training `seconds` (metrics.json). Per-trial overhead = (beyond(N2) - beyond(N1)) / (N2 - N1): what each extra
trial costs beyond its training (composing its config, data, model, Trainer, final evaluation, run directory,
leaderboard), with the one-off process start-up cancelled out. beyond / N, start-up included, is printed as well.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NETKILN = [str(Path(sys.executable).with_name("netkiln"))]
TINY = ["data=synthetic", "data.n_samples=300", "data.n_features=8", "model=mlp", "trainer=cpu",
        "trainer.max_epochs=2", "batch_size=32"]


def timed(cmd: list[str], cwd: str | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall


def mmm(values: list[float], fmt: str = "{:.3f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def sweep(n: int, tmp: Path) -> tuple[float, float]:
    """Run a basic-launcher sweep of n tiny trials; return (wall seconds, sum of trial training seconds)."""
    sweep_dir = Path(tempfile.mkdtemp(prefix=f"sweep{n}-", dir=tmp))
    seeds = ",".join(str(i) for i in range(n))
    wall = timed([*NETKILN, "train", "-m", *TINY, f"seed={seeds}", f"hydra.sweep.dir={sweep_dir}"], cwd=str(tmp))
    files = sorted(sweep_dir.glob("*/metrics.json"))
    if len(files) != n:
        raise SystemExit(f"expected {n} metrics.json files under {sweep_dir}, found {len(files)}")
    trained = [json.loads(f.read_text()) for f in files]
    failed = [m for m in trained if m.get("status") != "ok"]
    if failed:
        raise SystemExit(f"a trial failed: {failed[0]}")
    return wall, sum(m["seconds"] for m in trained)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="start-up runs per command (default 9)")
    parser.add_argument("--trials", default="2,10", help="two sweep sizes N1,N2 (default 2,10)")
    parser.add_argument("--sweep-runs", type=int, default=3, help="runs of each sweep size (default 3)")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--netkiln", default=None,
                        help="command that runs netkiln (default: the console script beside this interpreter)")
    args = parser.parse_args(argv)
    n1, n2 = (int(v) for v in args.trials.split(","))
    global NETKILN
    if args.netkiln:
        NETKILN = shlex.split(args.netkiln)
    elif not os.path.exists(NETKILN[0]):
        raise SystemExit(f"no netkiln console script at {NETKILN[0]}; pip install -e . first")

    with tempfile.TemporaryDirectory(prefix="netkiln-startup-") as tmp_name:
        tmp = Path(tmp_name)     # an empty working directory: no user conf/, outputs land here
        commands = {"netkiln --help": [*NETKILN, "--help"],
                    "netkiln summary": [*NETKILN, "summary"],
                    "python -c pass": [sys.executable, "-c", "pass"]}
        times: dict[str, list[float]] = {name: [] for name in commands}
        timed(commands["netkiln summary"], cwd=tmp_name)     # warm the file cache and the MNIST-1D cache
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(timed(cmd, cwd=tmp_name))
        print(f"start-up, seconds, median [min-max] of {args.runs} (targets: --help <= 0.5, summary <= 2.5)")
        for name, values in times.items():
            print(f"  {name:18} {mmm(values)}")

        if args.skip_sweep:
            return 0
        results: dict[int, list[tuple[float, float]]] = {n1: [], n2: []}
        for r in range(args.sweep_runs):
            for n in ((n1, n2) if r % 2 == 0 else (n2, n1)):
                results[n].append(sweep(n, tmp))
                wall, trained = results[n][-1]
                print(f"  sweep of {n}: wall {wall:.2f} s, training {trained:.2f} s", file=sys.stderr, flush=True)
    beyond = {n: [w - t for w, t in runs] for n, runs in results.items()}
    per_trial = [(b2 - b1) / (n2 - n1) for b1, b2 in zip(beyond[n1], beyond[n2])]
    print(f"sweep, basic launcher, tiny trials ({' '.join(TINY)}), seconds, median [min-max] of "
          f"{args.sweep_runs}")
    for n in (n1, n2):
        walls = [w for w, _ in results[n]]
        print(f"  {n} trials: wall {mmm(walls, '{:.2f}')}, beyond training {mmm(beyond[n], '{:.2f}')}, "
              f"beyond training / trial (start-up included) {mmm([b / n for b in beyond[n]], '{:.2f}')}")
    print(f"  per-trial overhead beyond training (target <= 0.3): {mmm(per_trial)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
