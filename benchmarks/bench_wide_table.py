"""Loading, preparing, training on and predicting from a wide table (50,000 columns by default), phase by phase.

    python benchmarks/bench_wide_table.py                       # 200 rows x 50,000 columns
    python benchmarks/bench_wide_table.py --columns 5000        # a quick run
    python benchmarks/bench_wide_table.py --profile fit         # cProfile of one phase (read, plan, fit, ...)
    PYTHONPATH=/tmp/old/src python benchmarks/bench_wide_table.py   # an older checkout's code (git archive), to compare

Writes a CSV in a temporary folder: float features (1% of their values missing), a few categorical columns (one with
missing values), a binary target `y`. Then, in this one process, times each phase and prints its seconds:

- read: `tables.read_table_source` (pandas.read_csv and the header checks);
- plan: the config checked against the columns, the rows cleaned, each column's kind detected, the target encoded
  (what `load_table` does before the split);
- fit: `TablePreparation.fit` on the training rows (the imputation values, categories and scaling statistics);
- apply: `tabular.apply_columns` on the train/val/test rows;
- train: `netkiln train data=csv data.path=wide.csv data.target=y trainer.max_epochs=1` through netkiln.cli.main;
- predict: `netkiln predict` on the same file (its columns in another order, to include the reordering).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path


def write_wide_csv(path: Path, rows: int, columns: int, seed: int = 0) -> None:
    """rows x columns: float features with 1% missing, 5 categorical columns, a 0/1 target."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    numeric = columns - 5
    x = rng.normal(size=(rows, numeric)).round(4)
    x[rng.random(size=x.shape) < 0.01] = np.nan
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(numeric)])
    for j in range(5):
        values = rng.choice(["red", "green", "blue", "grey"], size=rows).astype(object)
        if j == 0:
            values[rng.random(size=rows) < 0.05] = None
        frame[f"c{j}"] = values
    frame["y"] = (np.nan_to_num(x[:, :10]).sum(axis=1) > 0).astype(int)
    frame.to_csv(path, index=False)


def _timed(times: dict, name: str, profile: str | None, fn):
    prof = cProfile.Profile() if profile == name else None
    start = time.perf_counter()
    if prof:
        prof.enable()
    result = fn()
    if prof:
        prof.disable()
    times[name] = time.perf_counter() - start
    print(f"{name:>8}: {times[name]:7.2f} s", flush=True)
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    return result


def run(rows: int, columns: int, folder: Path, profile: str | None) -> dict:
    import numpy as np

    from netkiln.cli import main
    from netkiln.data import tabular
    from netkiln.data.table_preparation import TablePreparation
    from netkiln.data.tables import read_table_source

    csv = folder / "wide.csv"
    start = time.perf_counter()
    write_wide_csv(csv, rows, columns)
    print(f"wrote {csv.name}: {rows} rows x {columns + 1} columns, {csv.stat().st_size / 2**20:.1f} MiB "
          f"({time.perf_counter() - start:.1f} s)", flush=True)

    times: dict = {}
    frame, tf = _timed(times, "read", profile, lambda: read_table_source(csv))
    node = {"path": str(csv), "target": "y"}

    def plan():
        p = tabular._plan(node, "data", [str(c) for c in frame.columns], tf)
        cleaned = tabular._clean(frame, p, tf, "data", {})
        if hasattr(tabular, "_detect_kinds"):
            tabular._detect_kinds(cleaned, p, tf, "data")
        else:                   # the code before the blocks (PYTHONPATH=<an older src>), for a before/after run
            for col in p.features:
                p.kinds[col] = tabular._detect_kind(cleaned[col], col, p, tf, "data")
        y, task, target_info = tabular._encode_target(cleaned, p, tf, "data")
        return p, cleaned, task, target_info

    p, cleaned, task, target_info = _timed(times, "plan", profile, plan)
    train_idx = np.arange(int(len(cleaned) * 0.8))
    fitted = _timed(times, "fit", profile,
                    lambda: TablePreparation.fit(cleaned.iloc[train_idx], p, target_info, task, tf, "data"))
    _timed(times, "apply", profile, lambda: tabular.apply_columns(cleaned, fitted.columns, tf, None, []))

    run_dir = folder / "run"
    common = [f"hydra.run.dir={run_dir}", "hydra.job.chdir=false"]
    rc = _timed(times, "train", profile, lambda: main(
        ["train", "data=csv", f"data.path={csv}", "data.target=y", "trainer.max_epochs=1", *common]))
    assert rc == 0, f"netkiln train exited {rc}"

    shuffled = folder / "shuffled.csv"            # predict input: the same rows, the columns in reverse order
    import pandas as pd
    raw = pd.read_csv(csv)
    raw[list(reversed(raw.columns))].to_csv(shuffled, index=False)
    out = folder / "predictions.csv"
    rc = _timed(times, "predict", profile, lambda: main(
        ["predict", f"run={run_dir}", f"input={shuffled}", f"output={out}",
]))
    assert rc == 0, f"netkiln predict exited {rc}"
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--columns", type=int, default=50_000)
    ap.add_argument("--profile", choices=["read", "plan", "fit", "apply", "train", "predict"])
    args = ap.parse_args()
    os.environ.setdefault("NETKILN_CACHE_DIR", tempfile.mkdtemp(prefix="netkiln-bench-cache-"))
    with tempfile.TemporaryDirectory(prefix="netkiln-wide-") as tmp:
        times = run(args.rows, args.columns, Path(tmp), args.profile)
    print("phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))


if __name__ == "__main__":
    sys.exit(main())
