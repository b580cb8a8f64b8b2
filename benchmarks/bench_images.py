"""Images at scale: memory and epoch time of uint8 pixels (scaled per batch on the device) vs float32 in memory.

    python benchmarks/bench_images.py                    # 20,000 64x64 PNG images in 10 classes
    python benchmarks/bench_images.py --images 5000 --repeats 2 --epochs 3
    python benchmarks/bench_images.py --only streaming --images 2000    # streamed vs in-memory epoch only

Makes a folder of `--images` 64x64 RGB PNG files (one sub-folder per class, in a temporary folder) and compares,
in one run:

- memory: `load_dataset` of the folder as netkiln holds it now (uint8 pixels) and as it did before issue #17
  (every image decoded to float32 in [0, 1], listed, then stacked: `_float32_load_folder` below, the old loader),
  each in a fresh subprocess: the bytes of the dataset's x tensors and the process's peak RSS (ru_maxrss), minus
  the peak RSS of a subprocess that only imports netkiln (the baseline both pay);
- epoch time: `netkiln train` (netkiln.training.run.train, the shipped callbacks) of a small CNN on the folder,
  uint8 + scaling per batch vs float32 held in memory vs uint8 + data.augment (all five transforms), interleaved
  run by run so that machine load hits all three alike; the first epoch of each run is dropped (warm-up), and the
  ratios are of the medians. On CUDA the batches are scaled and augmented on the GPU;
- streaming (issue #17's goal: streamed epoch <= 1.3 x in-memory epoch): the same training with
  data.streaming=false (uint8 pixels in memory) and data.streaming=true (the files decoded per batch by
  data.workers DataLoader processes, auto: min(4, CPUs - 1)), each run in its own subprocess, interleaved; with
  each run's peak RSS (the training process; a worker's apart: forked, it counts the pages it shares) and the
  load average before and after,
  since other jobs on the machine slow the streamed run's workers more than the in-memory run.
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

if "OMP_WAIT_POLICY" not in os.environ:          # as the `netkiln` command sets it (netkiln/cli.py)
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

CLASSES = 10
SIZE = 64
MODEL = ("model.layers=[{conv2d:{filters:8,kernel_size:3,activation:relu}},{maxpool2d:4},"
         "{conv2d:{filters:16,kernel_size:3,activation:relu}},{maxpool2d:4},flatten,"
         "{dense:{units:32,activation:relu}}]")
AUGMENT = ("data.augment=[random_flip,{random_rotation:{factor:0.05}},{random_zoom:{height_factor:0.1}},"
           "{random_translation:{height_factor:0.1,width_factor:0.1}},{random_contrast:{factor:0.2}}]")


def make_folder(root: Path, n: int) -> None:
    """n PNG images, SIZE x SIZE RGB: a class-coloured square at a random place on noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    colours = rng.integers(0, 256, (CLASSES, 3))
    for i in range(n):
        c = i % CLASSES
        pixels = rng.integers(0, 96, (SIZE, SIZE, 3), dtype=np.uint8)
        top, left = rng.integers(0, SIZE // 2, 2)
        pixels[top:top + SIZE // 2, left:left + SIZE // 2] = colours[c]
        Image.fromarray(pixels).save(root / f"class{c}" / f"{i:06d}.png")


def _float32_load_folder(root, size, color, key, classes=None):
    """The image loader before issue #17: float32 images in a list, then stacked (and cast) into one array."""
    import numpy as np

    from netkiln.data.images import class_folders, load_image

    folders = class_folders(root, key)
    classes = classes or list(folders)
    xs, ys, files = [], [], []
    for name, paths in folders.items():
        for f in paths:
            xs.append(load_image(f, size, color, key))
            ys.append(classes.index(name))
            files.append(str(f.relative_to(root)))
    return np.stack(xs).astype(np.float32), np.asarray(ys, dtype=np.int64), classes, files


def use_float32_loader() -> None:
    import netkiln.data.images as images
    images._load_folder = _float32_load_folder


def measure_load(folder: str, mode: str) -> None:
    """Subprocess body: load the folder (mode uint8 | float32 | none) and print bytes and peak RSS as JSON."""
    import resource

    import netkiln.data  # noqa: F401 - the import every mode pays
    out = {"tensor_bytes": 0}
    if mode != "none":
        if mode == "float32":
            use_float32_loader()
        from netkiln.data import load_dataset
        started = time.perf_counter()
        ds = load_dataset({"name": "images", "path": folder, "image_size": [SIZE, SIZE], "color": "rgb"})
        out["seconds"] = time.perf_counter() - started
        out["tensor_bytes"] = sum(t.nbytes for t in (ds.x_train, ds.x_val, ds.x_test))
        out["dtype"] = str(ds.x_train.dtype)
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024       # Linux: KiB
    print(json.dumps(out))


def load_in_subprocess(folder: str, mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--measure-load", mode, "--folder", folder],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from netkiln.commands.hydra_app import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def epoch_times(folder: str, epochs: int, augment: bool, extra: list[str] = ()) -> list[float]:
    """One `netkiln train` run; the wall time of each epoch after the first."""
    import pytorch_lightning as pl

    from netkiln.training.run import train

    class Clock(pl.Callback):
        def __init__(self):
            self.starts: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.starts.append(time.perf_counter())

        def on_train_end(self, trainer, pl_module):
            self.starts.append(time.perf_counter())

    overrides = ["data=images", f"data.path={folder}", f"data.image_size=[{SIZE},{SIZE}]", "model=cnn2d", MODEL,
                 "batch_size=64", f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false",
                 "callbacks.early_stopping=null"] + ([AUGMENT] if augment else []) + list(extra)
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="netkiln-bench-") as tmp:
        train(compose(overrides), Path(tmp), extra_callbacks=[clock])
    return [b - a for a, b in zip(clock.starts, clock.starts[1:])][1:]


def epoch_run(folder: str, epochs: int, streaming: str) -> None:
    """Subprocess body: one run with data.streaming=`streaming`; prints its epoch times and peak RSS as JSON."""
    import logging
    import resource
    import warnings
    warnings.filterwarnings("ignore")
    for name in ("netkiln", "pytorch_lightning", "lightning.pytorch", "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    times = epoch_times(folder, epochs, augment=False, extra=[f"data.streaming={streaming}"])
    usage = {who: resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)}
    print(json.dumps({"epochs": times, "peak_rss": usage[resource.RUSAGE_SELF].ru_maxrss * 1024,   # Linux: KiB
                      "worker_peak_rss": usage[resource.RUSAGE_CHILDREN].ru_maxrss * 1024}))


def streaming_ratio(folder: str, epochs: int, repeats: int) -> None:
    times: dict[str, list[float]] = {"false": [], "true": []}
    rss: dict[str, list[int]] = {"false": [], "true": []}
    workers_rss: list[int] = []
    load_before = os.getloadavg()
    for _ in range(repeats):
        for mode in times:
            proc = subprocess.run([sys.executable, __file__, "--epoch-run", mode, "--folder", folder,
                                   "--epochs", str(epochs)], capture_output=True, text=True, check=True)
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            times[mode] += run["epochs"]
            rss[mode].append(run["peak_rss"])
            if mode == "true":
                workers_rss.append(run["worker_peak_rss"])
    load_after = os.getloadavg()
    from netkiln.data.image_stream import workers_of
    med = {mode: statistics.median(t) for mode, t in times.items()}
    print(f"\nstreamed vs in memory, small CNN, batch 64, {repeats} runs of {epochs} epochs each, one process a run "
          f"(data.workers=auto: {workers_of({}, 'data')} worker(s) on {os.cpu_count()} CPUs; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after):")
    for mode, label in (("false", "in memory"), ("true", "streamed")):
        t = times[mode]
        print(f"  {label:10s} {med[mode]:7.2f} s/epoch  [{min(t):.2f}-{max(t):.2f}]   peak RSS {mb(max(rss[mode]))}"
              + (f"; a worker's {mb(max(workers_rss))}, pages shared with it counted" if mode == "true" else ""))
    print(f"  streamed / in memory: {med['true'] / med['false']:.2f} (target <= 1.3)")


def mb(n: float) -> str:
    return f"{n / 2 ** 20:,.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is dropped)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each mode, interleaved")
    parser.add_argument("--only", choices=("streaming",), help="run one comparison only")
    parser.add_argument("--measure-load", help=argparse.SUPPRESS)
    parser.add_argument("--epoch-run", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_load:
        measure_load(args.folder, args.measure_load)
        return
    if args.epoch_run:
        epoch_run(args.folder, args.epochs, args.epoch_run)
        return

    import logging
    import warnings
    warnings.filterwarnings("ignore")
    for name in ("netkiln", "pytorch_lightning", "lightning.pytorch", "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="netkiln-images-") as tmp:
        folder = str(Path(tmp) / "images")
        started = time.perf_counter()
        make_folder(Path(folder), args.images)
        print(f"{args.images:,} PNG images {SIZE}x{SIZE} RGB, {CLASSES} classes, made in "
              f"{time.perf_counter() - started:.1f} s")
        if args.only == "streaming":
            streaming_ratio(folder, args.epochs, args.repeats)
            return

        base = load_in_subprocess(folder, "none")
        load = {mode: load_in_subprocess(folder, mode) for mode in ("float32", "uint8")}
        print(f"\nload_dataset, each in a fresh process (peak RSS above the {mb(base['peak_rss'])} of importing "
              "netkiln):")
        for mode, r in load.items():
            print(f"  {mode:8s} x tensors {mb(r['tensor_bytes']):>12s}   peak RSS "
                  f"+{mb(r['peak_rss'] - base['peak_rss'])}   load {r['seconds']:.1f} s")
        ratio = load["uint8"]["tensor_bytes"] / load["float32"]["tensor_bytes"]
        rss = (load["uint8"]["peak_rss"] - base["peak_rss"]) / (load["float32"]["peak_rss"] - base["peak_rss"])
        print(f"  uint8 / float32: x bytes {ratio:.3f} (target <= 0.30), peak RSS {rss:.3f}")

        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"\nepoch time, small CNN, batch 64, {args.repeats} interleaved runs of {args.epochs} epochs per mode "
              f"({device}, {torch.get_num_threads()} threads):")
        times: dict[str, list[float]] = {"float32": [], "uint8": [], "uint8 + augment": []}
        import netkiln.data.images as images
        uint8_loader = images._load_folder
        for _ in range(args.repeats):
            for mode in times:
                images._load_folder = _float32_load_folder if mode == "float32" else uint8_loader
                times[mode] += epoch_times(folder, args.epochs, augment=mode.endswith("augment"))
        images._load_folder = uint8_loader
        med = {mode: statistics.median(t) for mode, t in times.items()}
        for mode, t in times.items():
            print(f"  {mode:16s} {med[mode]:7.2f} s/epoch  [{min(t):.2f}-{max(t):.2f}]")
        print(f"  uint8 / float32: {med['uint8'] / med['float32']:.2f}   "
              f"uint8 + augment / uint8: {med['uint8 + augment'] / med['uint8']:.2f}")
        streaming_ratio(folder, args.epochs, args.repeats)


if __name__ == "__main__":
    main()
