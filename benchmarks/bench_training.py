"""Epoch time of netkiln's training vs a hand-written PyTorch loop, in one process, interleaved.

    python benchmarks/bench_training.py                      # MLP, CNN, GRU on MNIST-1D + 784-512-512-10 MLP
    python benchmarks/bench_training.py --models mlp,cnn --repeats 9

Both sides train the same network (`netkiln.compiler.compile_model` on the same config and seed), on the same
data (`netkiln.data.load_dataset`, held on the training device), with the same batch size and Adam settings, and
both run a validation pass over the validation split every epoch (loss + accuracy on the raw side; netkiln's
torchmetrics as `netkiln train` logs them).

"netkiln's epoch" is what a user gets from `netkiln train`: `netkiln.training.run.train` with the shipped
trainer/callbacks configs (progress bar, history.csv, best + last checkpoints, early stopping), timed from one
`on_train_epoch_start` to the next (the last epoch ends at `on_train_end`), so every per-epoch cost counts:
training steps, validation, metrics, history, checkpoints, the progress bar. The one-off cost of a run (data
loading, Trainer construction, final test evaluation) is printed separately as "run overhead"; start-up and sweep
overheads are in bench_startup.py.

Interleaving: a callback runs one epoch of the hand-written loop (its own copy of the network, its own Adam) just
before each of netkiln's epochs, outside netkiln's clock, so each raw epoch and netkiln epoch are neighbours in
time and a change in machine load hits both. A repeat is a fresh `netkiln train` run (and a fresh raw copy); its
first epoch pair is dropped (warm-up). Ratio = median over a repeat's epoch pairs of netkiln / raw; printed as
median [min-max] over repeats; epoch times as median [min-max] over all timed epochs. On CUDA the data sits on the
GPU and the clocks synchronize. On a busy machine, --threads 1 gives steadier ratios (two threads contend badly,
and a loaded 2-core machine can make both sides 10-20x slower), and --clock cpu (process CPU time) steadier still,
but it does not see time spent waiting (file writes).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# What the `netkiln` command sets before torch starts (netkiln/cli.py): OpenMP threads spin only briefly.
# Both sides of the comparison run in this process, under the same setting; set GOMP_SPINCOUNT or
# OMP_WAIT_POLICY to override.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import torch  # noqa: E402

MNIST1D = ["data=mnist1d", "batch_size=100", "optimizer=adam", "optimizer.lr=0.01"]
MODELS = {
    # name: (overrides, description)
    "mlp": (MNIST1D + ["model=mlp", "model.layers=[flatten,{dense:{units:100,activation:relu}},"
                                    "{dense:{units:100,activation:relu}}]"], "MLP 40-100-100-10, MNIST-1D"),
    "cnn": (MNIST1D + ["model=cnn"], "CNN 3x conv1d(25), MNIST-1D"),
    "gru": (MNIST1D + ["model=gru", "model.layers=[{gru:{units:6,bidirectional:true,return_sequences:true}},"
                                    "flatten]"], "GRU 6 bidirectional, all steps, MNIST-1D"),
    # 75,000 rows: 60,000 train, 7,500 validation, 7,500 test (unused here).
    "big_mlp": (["data=synthetic", "data.n_samples=75000", "data.n_features=784", "data.n_classes=10",
                 "data.split.val=0.1", "data.split.test=0.1", "batch_size=100", "optimizer=adam",
                 "optimizer.lr=0.001", "model=mlp", "model.layers=[{dense:{units:512,activation:relu}},"
                 "{dense:{units:512,activation:relu}}]"], "MLP 784-512-512-10, 60,000 synthetic rows"),
}


# The clock every duration is read from: wall time by default; --clock cpu reads the process's CPU time (all
# threads), much less sensitive to other processes on a busy machine (pair it with --threads 1).
CLOCK = time.perf_counter


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from netkiln.commands.hydra_app import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


# --- the hand-written loop ------------------------------------------------------------------------
class RawLoop:
    """The loop one writes by hand, one epoch per call, on its own copy of the network."""

    def __init__(self, network, data, cfg, device: torch.device):
        self.x, self.y, self.xv, self.yv = data
        self.network = copy.deepcopy(network).to(device).train()
        self.opt = torch.optim.Adam(self.network.parameters(), lr=float(cfg.optimizer.lr))
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.batch_size = int(cfg.batch_size)
        self.gen = torch.Generator().manual_seed(int(cfg.seed))
        self.device = device

    def epoch(self) -> float:
        """Train one epoch and validate; return its seconds."""
        network, opt, loss_fn, x, y, device = self.network, self.opt, self.loss_fn, self.x, self.y, self.device
        n, batch_size = len(x), self.batch_size
        sync(device)
        start = CLOCK()
        network.train()
        perm = torch.randperm(n, generator=self.gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            out = network(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(xb)
            correct += (out.detach().argmax(-1) == yb).sum()
        network.eval()
        xv, yv = self.xv, self.yv
        val_loss = torch.zeros((), device=device)
        val_correct = torch.zeros((), device=device, dtype=torch.long)
        with torch.no_grad():
            for i in range(0, len(xv), 1024):
                out = network(xv[i:i + 1024])
                val_loss += loss_fn(out, yv[i:i + 1024]) * len(out)
                val_correct += (out.argmax(-1) == yv[i:i + 1024]).sum()
        # What a hand-written loop prints per epoch (one host sync).
        _ = (float(loss_sum) / n, int(correct) / n, float(val_loss) / len(xv), int(val_correct) / len(xv))
        sync(device)
        return CLOCK() - start


# --- netkiln, with the raw loop's epochs interleaved --------------------------------------------------
def paired_run(cfg, network, data, epochs: int, device: torch.device) -> tuple[list[float], list[float], float]:
    """One `netkiln train` run of `epochs` epochs; before each of its epochs, one raw-loop epoch runs.

    Returns (raw epoch seconds, netkiln epoch seconds, netkiln run wall seconds minus its epochs)."""
    import pytorch_lightning as pl
    from omegaconf import open_dict

    from netkiln.training.run import train

    class PairedClock(pl.Callback):
        def __init__(self):
            self.raw: list[float] = []
            self.netkiln: list[float] = []
            self.mark = None
            self.loop = None

        def _close_epoch(self):
            sync(device)
            if self.mark is not None:
                self.netkiln.append(CLOCK() - self.mark)

        def on_train_start(self, trainer, pl_module):
            self.loop = RawLoop(network, data, cfg, device)

        def on_train_epoch_start(self, trainer, pl_module):
            self._close_epoch()
            self.raw.append(self.loop.epoch())
            sync(device)
            self.mark = CLOCK()

        def on_train_end(self, trainer, pl_module):
            self._close_epoch()

    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.trainer.max_epochs = epochs
    clock = PairedClock()
    with tempfile.TemporaryDirectory(prefix="netkiln-bench-") as tmp:
        start = CLOCK()
        train(cfg, Path(tmp), extra_callbacks=[clock])
        wall = CLOCK() - start
    return clock.raw, clock.netkiln, wall - sum(clock.raw) - sum(clock.netkiln)


# --- driver -----------------------------------------------------------------------------------------
def mmm(values: list[float], scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    v = [x * scale for x in values]
    return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}-{fmt.format(max(v))}]"


def bench_model(name: str, repeats: int, epochs: int, device: torch.device, extra: list[str] = ()) -> dict:
    from netkiln.data_and_model import build_data_and_model

    overrides, description = MODELS[name]
    cfg = compose(overrides + list(extra))
    torch.manual_seed(int(cfg.seed))
    dataset, network = build_data_and_model(cfg)
    data = tuple(t.to(device) for t in (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val))
    raw_all, nk_all, ratios, overheads = [], [], [], []
    for r in range(repeats):
        raw, nk, overhead = paired_run(cfg, network, data, epochs, device)
        if len(raw) != epochs or len(nk) != epochs:
            raise SystemExit(f"{name}: expected {epochs} epochs, timed {len(raw)} raw and {len(nk)} netkiln")
        raw, nk = raw[1:], nk[1:]          # the first epoch of a run warms up
        raw_all += raw
        nk_all += nk
        ratios.append(statistics.median(b / a for a, b in zip(raw, nk)))
        overheads.append(overhead)
        print(f"  {name} repeat {r + 1}/{repeats}: raw {statistics.median(raw) * 1e3:.1f} ms, "
              f"netkiln {statistics.median(nk) * 1e3:.1f} ms, ratio {ratios[-1]:.3f}", file=sys.stderr, flush=True)
    return {"name": name, "description": description, "rows": len(data[0]), "val_rows": len(data[2]),
            "raw": raw_all, "netkiln": nk_all, "ratio": ratios, "overhead": overheads}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn,gru,big_mlp", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=7, help="paired repeats per model (default 7)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run; the first is dropped (default 6)")
    parser.add_argument("--big-repeats", type=int, default=3, help="repeats for big_mlp (default 3)")
    parser.add_argument("--big-epochs", type=int, default=3, help="epochs per run for big_mlp (default 3)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default) or the process's CPU time (steadier on a busy machine, CPU only)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="netkiln with cuda_graphs=true (the raw loop stays eager); CUDA only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.clock == "cpu":
        if device.type == "cuda":
            parser.error("--clock cpu measures host CPU time only; use the wall clock on CUDA")
        global CLOCK
        CLOCK = time.process_time
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if args.cuda_graphs and device.type != "cuda":
        parser.error("--cuda-graphs needs a CUDA device")
    extra = ["cuda_graphs=true"] if args.cuda_graphs else []
    if min(args.epochs, args.big_epochs) < 2:
        parser.error("--epochs and --big-epochs must be at least 2 (the first epoch is dropped)")

    import pytorch_lightning as pl
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, lightning {pl.__version__}, threads {torch.get_num_threads()}, "
          f"clock {args.clock}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"cuda_graphs {args.cuda_graphs}")
    print("epoch = training + a validation pass over the validation split, on both sides; netkiln's also includes "
          "its per-epoch callbacks (history.csv, checkpoints, early stopping, progress bar)")
    results = []
    for name in names:
        big = name == "big_mlp"
        results.append(bench_model(name, args.big_repeats if big else args.repeats,
                                   args.big_epochs if big else args.epochs, device, extra))

    print(f"\n{'model':8} {'train/val rows':>15} {'raw ms/epoch':>22} {'netkiln ms/epoch':>22} "
          f"{'netkiln/raw':>22} {'run overhead s':>18}")
    print("  (epoch times: median [min-max] over all timed epochs; ratio: median [min-max] over repeats)")
    for res in results:
        print(f"{res['name']:8} {res['rows']:>8}/{res['val_rows']:<6} {mmm(res['raw'], 1e3):>22} "
              f"{mmm(res['netkiln'], 1e3):>22} {mmm(res['ratio'], fmt='{:.3f}'):>22} "
              f"{mmm(res['overhead'], fmt='{:.2f}'):>18}")
    for res in results:
        print(f"  {res['name']}: {res['description']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
