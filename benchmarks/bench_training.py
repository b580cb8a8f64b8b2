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

Each repeat trains a fresh copy on both sides, alternating which side goes first; the first epoch of each side is
dropped (warm-up) and the median of the rest is that repeat's epoch time. Ratios are netkiln / raw per repeat;
printed as median [min-max] over repeats. On CUDA the data sits on the GPU and the clocks synchronize.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

MNIST1D = ["data=mnist1d", "batch_size=100", "optimizer=adam", "optimizer.lr=0.01"]
MODELS = {
    # name: (overrides, description)
    "mlp": (MNIST1D + ["model=mlp", "model.layers=[flatten,{dense:{units:100,activation:relu}},"
                                    "{dense:{units:100,activation:relu}}]"], "MLP 40-100-100-10, MNIST-1D"),
    "cnn": (MNIST1D + ["model=cnn"], "CNN 3x conv1d(25), MNIST-1D"),
    "gru": (MNIST1D + ["model=gru", "model.layers=[{gru:{units:6,bidirectional:true,return_sequences:true}},"
                                    "flatten]"], "GRU 6 bidirectional, all steps, MNIST-1D"),
    # 70,000 rows: 60,000 train + 10,000 validation.
    "big_mlp": (["data=synthetic", "data.n_samples=70000", "data.n_features=784", "data.n_classes=10",
                 "data.split.val=0.14285714", "data.split.test=0", "batch_size=100", "optimizer=adam",
                 "optimizer.lr=0.001", "model=mlp", "model.layers=[{dense:{units:512,activation:relu}},"
                 "{dense:{units:512,activation:relu}}]"], "MLP 784-512-512-10, 60,000 synthetic rows"),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from netkiln.commands.hydra_app import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


# --- the hand-written loop ------------------------------------------------------------------------
def raw_run(network, data, cfg, epochs: int, device: torch.device) -> list[float]:
    """Train `epochs` epochs the way one writes it by hand; return each epoch's seconds."""
    x, y, xv, yv = data
    network = copy.deepcopy(network).to(device).train()
    opt = torch.optim.Adam(network.parameters(), lr=float(cfg.optimizer.lr))
    loss_fn = torch.nn.CrossEntropyLoss()
    batch_size, n = int(cfg.batch_size), len(x)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    times = []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        network.train()
        perm = torch.randperm(n, generator=gen).to(device)
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
        times.append(time.perf_counter() - start)
    return times


# --- netkiln ----------------------------------------------------------------------------------------
def netkiln_run(cfg, epochs: int, device: torch.device) -> tuple[list[float], float]:
    """Train through netkiln.training.run.train; return each epoch's seconds and the run's wall time."""
    import pytorch_lightning as pl
    from omegaconf import open_dict

    from netkiln.training.run import train

    class EpochClock(pl.Callback):
        def __init__(self):
            self.marks: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            sync(device)
            self.marks.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            sync(device)
            self.marks.append(time.perf_counter())

    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.trainer.max_epochs = epochs
    clock = EpochClock()
    with tempfile.TemporaryDirectory(prefix="netkiln-bench-") as tmp:
        start = time.perf_counter()
        train(cfg, Path(tmp), extra_callbacks=[clock])
        wall = time.perf_counter() - start
    marks = clock.marks
    return [b - a for a, b in zip(marks, marks[1:])], wall


# --- driver -----------------------------------------------------------------------------------------
def mmm(values: list[float], scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    v = [x * scale for x in values]
    return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}-{fmt.format(max(v))}]"


def bench_model(name: str, repeats: int, epochs: int, device: torch.device) -> dict:
    from netkiln.pipeline import build_data_and_model

    overrides, description = MODELS[name]
    cfg = compose(overrides)
    torch.manual_seed(int(cfg.seed))
    dataset, network = build_data_and_model(cfg)
    data = tuple(t.to(device) for t in (dataset.x_train, dataset.y_train, dataset.x_val, dataset.y_val))
    raw_med, nk_med, ratios, overheads = [], [], [], []
    for r in range(repeats):
        sides = ["raw", "netkiln"] if r % 2 == 0 else ["netkiln", "raw"]
        for side in sides:
            if side == "raw":
                times = raw_run(network, data, cfg, epochs, device)
                raw_med.append(statistics.median(times[1:]))
            else:
                times, wall = netkiln_run(cfg, epochs, device)
                nk_med.append(statistics.median(times[1:]))
                overheads.append(wall - sum(times))
        ratios.append(nk_med[-1] / raw_med[-1])
        print(f"  {name} repeat {r + 1}/{repeats}: raw {raw_med[-1] * 1e3:.1f} ms, netkiln {nk_med[-1] * 1e3:.1f} ms,"
              f" ratio {ratios[-1]:.3f}", file=sys.stderr, flush=True)
    return {"name": name, "description": description, "rows": len(data[0]), "val_rows": len(data[2]),
            "raw": raw_med, "netkiln": nk_med, "ratio": ratios, "overhead": overheads}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn,gru,big_mlp", help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=7, help="paired repeats per model (default 7)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run; the first is dropped (default 6)")
    parser.add_argument("--big-repeats", type=int, default=3, help="repeats for big_mlp (default 3)")
    parser.add_argument("--big-epochs", type=int, default=3, help="epochs per run for big_mlp (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if min(args.epochs, args.big_epochs) < 2:
        parser.error("--epochs and --big-epochs must be at least 2 (the first epoch is dropped)")

    import pytorch_lightning as pl
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, lightning {pl.__version__}, threads {torch.get_num_threads()}")
    print("epoch = training + a validation pass over the validation split, on both sides; netkiln's also includes "
          "its per-epoch callbacks (history.csv, checkpoints, early stopping, progress bar)")
    results = []
    for name in names:
        big = name == "big_mlp"
        results.append(bench_model(name, args.big_repeats if big else args.repeats,
                                   args.big_epochs if big else args.epochs, device))

    print(f"\n{'model':8} {'train/val rows':>15} {'raw ms/epoch':>22} {'netkiln ms/epoch':>22} "
          f"{'netkiln/raw':>22} {'run overhead s':>18}")
    print("  (median [min-max] over repeats)")
    for res in results:
        print(f"{res['name']:8} {res['rows']:>8}/{res['val_rows']:<6} {mmm(res['raw'], 1e3):>22} "
              f"{mmm(res['netkiln'], 1e3):>22} {mmm(res['ratio'], fmt='{:.3f}'):>22} "
              f"{mmm(res['overhead'], fmt='{:.2f}'):>18}")
    for res in results:
        print(f"  {res['name']}: {res['description']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
