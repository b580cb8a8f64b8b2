"""Training time by `threads` setting, on a quiet machine and beside a busy process.

    python benchmarks/bench_threads.py                         # default run's model + cnn2d on digits, 2 repeats
    python benchmarks/bench_threads.py --models default --epochs 5 --repeats 3 --busy torch

Each measurement is a real `netkiln train` (in this process, through netkiln.cli.main) for a fixed number of epochs
without early stopping; its time is metrics.json's `seconds` (the fit, not start-up or data loading). Variants
(`threads=auto`, netkiln's default; `threads=1`; `threads=2`) run back to back in a rotating order, first with the
machine as it is ("quiet"), then beside one busy process ("busy": `yes > /dev/null`, or with --busy torch a
single-threaded torch matmul loop); a repeat does both. Printed: the median seconds of each variant and its ratio to
threads=1 under the same condition, so every ratio compares runs made minutes apart, in this one process.

torch's thread count is reset to its start-up value before each run, as a fresh `netkiln` process would have it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As the `netkiln` command does before torch starts (netkiln/cli.py): OpenMP threads spin only briefly.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import torch  # noqa: E402

QUIET = ["trainer.enable_progress_bar=false", "callbacks=none", "hydra/job_logging=disabled",
         "hydra/hydra_logging=disabled"]
MODELS = {
    # name: (overrides, description)
    "default": ([], "netkiln train's default: CNN (3 x conv1d 25) on MNIST-1D, batch 100"),
    "cnn2d": (["data=digits", "model=cnn2d"], "cnn2d (conv2d 32, conv2d 64, dense 128) on the 8x8 digits, batch 100"),
    "big_mlp": (["data=synthetic", "data.n_samples=12000", "data.n_features=784", "data.n_classes=10",
                 "model=mlp", "model.vars.width=512"], "MLP 784-512-512-10 on 12,000 synthetic rows, batch 100"),
    "wide_mlp": (["data=synthetic", "data.n_samples=5000", "data.n_features=784", "data.n_classes=10",
                  "model=mlp", "model.vars.width=2048"], "MLP 784-2048-2048-10 on 5,000 synthetic rows, batch 100"),
}
BUSY = {
    "yes": ["yes"],
    "torch": [sys.executable, "-c", "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
                                    "while True:\n    a = torch.tanh(a @ a)"],
}


def train_seconds(overrides: list[str], threads: str, epochs: int, folder: Path, start_threads: int) -> float:
    from netkiln.cli import main

    torch.set_num_threads(start_threads)           # a fresh process's count, whatever the last run chose
    run = Path(tempfile.mkdtemp(dir=folder))
    code = main(["train", *overrides, *QUIET, f"threads={threads}", f"trainer.max_epochs={epochs}",
                 f"hydra.run.dir={run}"])
    if code != 0:
        raise SystemExit(f"netkiln train failed ({code}) with {overrides} threads={threads}")
    return json.loads((run / "metrics.json").read_text())["seconds"]


def summarize(times: dict, variants: list[str]) -> None:
    for model, conditions in times.items():
        print(f"\n{model}: {MODELS[model][1]}")
        print(f"  {'':6} " + "  ".join(f"{'threads=' + v:>24}" for v in variants))
        for condition, by_variant in conditions.items():
            base = statistics.median(by_variant["1"]) if by_variant.get("1") else None
            cells = []
            for v in variants:
                seconds = statistics.median(by_variant[v])
                ratio = f" ({seconds / base:.2f}x)" if base else ""
                cells.append(f"{seconds:8.2f} s{ratio:>9} n={len(by_variant[v])}")
            print(f"  {condition:6} " + "  ".join(f"{c:>24}" for c in cells))
        quiet, busy = conditions.get("quiet"), conditions.get("busy")
        if quiet and busy:
            print("  busy / quiet: " + ", ".join(
                f"threads={v} {statistics.median(busy[v]) / statistics.median(quiet[v]):.2f}x" for v in variants))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="default,cnn2d", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--variants", default="auto,1,2", help="threads settings to compare (default auto,1,2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of every run (default 2)")
    parser.add_argument("--busy", choices=sorted(BUSY), default="yes", help="the busy process (default yes)")
    parser.add_argument("--conditions", default="quiet,busy", help="quiet, busy or both (default)")
    args = parser.parse_args(argv)
    models, variants = args.models.split(","), args.variants.split(",")
    conditions = args.conditions.split(",")
    start_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch's default threads {start_threads}, "
          f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}, load average {os.getloadavg()[0]:.2f} at start",
          flush=True)
    os.environ.setdefault("NETKILN_CACHE_DIR", str(Path(tempfile.gettempdir()) / "netkiln-cache"))
    times = {m: {c: {v: [] for v in variants} for c in conditions} for m in models}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:               # warm-up: data generated and cached, imports done
            train_seconds(MODELS[model][0], "1", 1, Path(tmp), start_threads)
        for repeat in range(args.repeats):
            for condition in conditions:
                busy = subprocess.Popen(BUSY[args.busy], stdout=subprocess.DEVNULL) if condition == "busy" else None
                try:
                    if busy is not None:
                        time.sleep(1.0)     # the busy process up to speed (torch imported)
                    for model in models:
                        shift = repeat % len(variants)
                        for v in variants[shift:] + variants[:shift]:
                            seconds = train_seconds(MODELS[model][0], v, args.epochs, Path(tmp), start_threads)
                            times[model][condition][v].append(seconds)
                            print(f"  repeat {repeat + 1} {condition:5} {model:8} threads={v:4} {seconds:7.2f} s",
                                  flush=True)
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
    summarize(times, variants)
    print(f"\n{args.epochs} epochs a run, {args.repeats} repeats, busy process: {args.busy}; "
          f"{time.perf_counter() - started:.0f} s in all; load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
