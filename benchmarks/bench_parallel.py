"""Wall time of one 4-trial sweep run one trial after another vs. two at a time (the joblib launcher).

    python benchmarks/bench_parallel.py                  # 2 rounds of: sequential, parallel (order alternating)
    python benchmarks/bench_parallel.py --rounds 3 --epochs 5 --n-jobs 2

Each measurement is a whole `netkiln train -m ...` in a subprocess (start-up, four trials, the leaderboard and the
report), timed from outside: what a user waits for. The sweep is an MLP on 20,000 synthetic rows with four learning
rates, a fixed number of epochs, no early stopping. The two variants alternate (sequential first in odd rounds,
parallel first in even ones), so a change in the machine's load touches both. Printed: each run's seconds, the
median per variant and the ratio sequential / parallel (above 1: the parallel sweep finished sooner).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = ["data=synthetic", "data.n_samples=20000", "data.n_features=64", "model=mlp", "batch_size=64",
         "callbacks=none", "trainer.enable_progress_bar=false", "optimizer.lr=0.001,0.003,0.01,0.03",
         "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def run_sweep(out: Path, epochs: int, parallel_jobs: int | None) -> float:
    launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={parallel_jobs}"] if parallel_jobs else []
    cmd = [sys.executable, "-m", "netkiln.cli", "train", "-m", *SWEEP, f"trainer.max_epochs={epochs}",
           *launcher, f"hydra.sweep.dir={out}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"sweep failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if not (out / "report.html").is_file() or len(list(out.glob("*/metrics.json"))) != 4:
        sys.exit(f"sweep in {out} did not leave 4 trials and a report")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()

    times: dict[str, list[float]] = {"sequential": [], "parallel": []}
    with tempfile.TemporaryDirectory(prefix="bench_parallel_") as tmp:
        for r in range(args.rounds):
            order = ["sequential", "parallel"] if r % 2 == 0 else ["parallel", "sequential"]
            for variant in order:
                out = Path(tmp) / f"{variant}-{r}"
                seconds = run_sweep(out, args.epochs, args.n_jobs if variant == "parallel" else None)
                times[variant].append(seconds)
                print(f"round {r + 1} {variant:10s} {seconds:6.1f} s", flush=True)
    seq, par = statistics.median(times["sequential"]), statistics.median(times["parallel"])
    print(f"median: sequential {seq:.1f} s, parallel (joblib, n_jobs={args.n_jobs}) {par:.1f} s; "
          f"ratio sequential/parallel = {seq / par:.2f}")


if __name__ == "__main__":
    main()
