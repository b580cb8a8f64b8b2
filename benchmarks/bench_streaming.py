"""Training on a table larger than the memory budget: peak memory and epoch time, streamed vs in memory.

    python benchmarks/bench_streaming.py                    # 2,000,000 rows x 20 columns, data.memory_budget=256MB
    python benchmarks/bench_streaming.py --rows 200000      # a quick run

Writes a Parquet file (19 float features and a binary target, row groups of 100,000 rows) in a temporary folder,
then trains the same small MLP on it three ways, each in its own process (so each peak RSS is its own):

- overhead: the same command on the file's first 2,000 rows: what the process holds whatever the data (Python,
  torch, Lightning, pandas, pyarrow, the model) -- the "fixed overhead" the budget does not cover;
- in memory: data.streaming=false (the table read whole, prepared, split and held as tensors);
- streamed: data.memory_budget=256MB (data.streaming=auto, which streams since the table does not fit).

Each prints its peak RSS (ru_maxrss) and its epoch times (on_train_epoch_start to on_train_epoch_end, validation
included; the first epoch is dropped as warm-up). The ratio is the median streamed epoch over the median in-memory
epoch, measured in this run. Goals (issue #17): streamed peak RSS < budget + overhead, ratio <= 1.5.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEATURES = 19
ROW_GROUP = 100_000


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """rows x (19 float features + a 0/1 target), written a row group at a time (never whole in memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    weights = rng.normal(size=FEATURES)
    writer = None
    try:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            x = rng.normal(size=(n, FEATURES))
            y = ((x @ weights + 0.5 * rng.normal(size=n)) > 0).astype(np.int64)
            table = pa.table({**{f"f{i}": x[:, i] for i in range(FEATURES)}, "y": y})
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def child(overrides: list[str]) -> None:
    """One training run in this process; prints a JSON line with its epoch times and peak RSS."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from netkiln.commands.hydra_app import CONF_DIR
    from netkiln.training.run import train

    started = time.perf_counter()
    times: dict = {"epochs": []}

    class Clock(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            times["setup_s"] = time.perf_counter() - started

        def on_train_epoch_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            times["epochs"].append(time.perf_counter() - self.t0)

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = train(cfg, Path(run_dir), extra_callbacks=[Clock()])
    times["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times["test_acc"] = metrics["test"].get("acc")
    print("RESULT " + json.dumps(times), flush=True)


def run_child(overrides: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *overrides], capture_output=True, text=True,
                         env={**os.environ, "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "10000")})
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.exit(f"the child run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--budget", default="256MB")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from netkiln.memory import parse_budget

    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.parquet", Path(tmp) / "small.parquet"
        t0 = time.perf_counter()
        write_table(big, args.rows)
        write_table(small, 2000)
        print(f"table: {args.rows:,} rows x {FEATURES + 1} columns, {big.stat().st_size / 2**20:.0f} MiB Parquet "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        common = ["data=csv", "data.target=y", "model=mlp", "model.layers=[{dense:{units:64,activation:relu}},"
                  "{dense:{units:64,activation:relu}}]", f"batch_size={args.batch_size}", "trainer=cpu",
                  "trainer.enable_progress_bar=false", f"trainer.max_epochs={args.epochs}", "callbacks=none",
                  f"threads={args.threads}"]
        results = {
            "overhead": run_child(common + [f"data.path={small}", "data.streaming=false"]),
            "in memory": run_child(common + [f"data.path={big}", "data.streaming=false"]),
            "streamed": run_child(common + [f"data.path={big}", f"data.memory_budget={args.budget}"]),
        }
    budget_mb = parse_budget(args.budget) / 2**20
    for name, r in results.items():
        timed = r["epochs"][1:] or r["epochs"]
        r["epoch_s"] = statistics.median(timed)
        print(f"{name:>10}: peak RSS {r['peak_rss_mb']:7.0f} MiB | epoch {r['epoch_s']:6.2f} s (median of "
              f"{len(timed)}; all: {', '.join(f'{t:.2f}' for t in r['epochs'])}) | set-up {r['setup_s']:6.1f} s | "
              f"test acc {r['test_acc']:.3f}")
    overhead, streamed, memory = results["overhead"], results["streamed"], results["in memory"]
    ratio = streamed["epoch_s"] / memory["epoch_s"]
    over = streamed["peak_rss_mb"] - overhead["peak_rss_mb"]
    print(f"streamed peak RSS - fixed overhead = {over:.0f} MiB (budget {budget_mb:.0f} MiB): "
          f"{'within' if over <= budget_mb else 'OVER'} the budget")
    print(f"epoch time streamed / in memory = {ratio:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        sys.exit(main())
