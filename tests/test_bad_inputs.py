"""The catalogue of bad inputs: every case runs the CLI in-process and must end the same way.

Exit code 2; stderr is one line, `netkiln <command>: error: <paragraph>`, naming the config key or the file (and its
line/column where there is one); no Python traceback; and nothing half-written: the only new files are the ones a
run writes before it starts (.hydra/, train.log, summary.txt) and its record of the failure (metrics.json saying
`"status": "failed"` with the error), never checkpoints, a model bundle, an output file or a temporary file.

Placeholders in a case: {data} bad data files, {conf} a user config folder with bad model files, {run} a trained
run (tiny, shared), {bad} copies of it with a damaged bundle, {tmp} this test's folder. `train` cases get TINY
(synthetic data, 8 features, 3 classes) unless they pick their own data.
"""
import builtins
import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from netkiln.cli import main
from conftest import TINY

SEQ = ["data.layout=sequence", "data.shape=[4,2]"]           # synthetic sequences (T=4, F=2)
CSV = ["data=csv", "data.target=label", "model=mlp", "trainer=debug", "trainer.enable_progress_bar=false"]
PRED = ["{run}/in.csv", "output={tmp}/out/pred.csv"]
USER_CONF = "hydra.searchpath=[file://{conf}]"

# (id, argv, substrings the error line must hold)
CASES = [
    # -- composition: group options, misspelled keys at every level, override syntax -----------------------
    ("group-option", ["train", "model=gruu"], ["model", "no option 'gruu'", "Did you mean 'gru'?"]),
    ("group-option-optimizer", ["train", "optimizer=adamm"], ["optimizer", "Did you mean 'adam'?"]),
    ("key-top", ["train", "seeed=3"], ["seeed", "Did you mean 'seed'?"]),
    ("key-level-2", ["train", "optimizer.lrr=0.1"], ["optimizer.lrr", "Did you mean 'optimizer.lr'?"]),
    ("key-level-3", ["train", "data.split.vall=0.1"], ["data.split.vall", "Did you mean 'data.split.val'?"]),
    ("key-trainer", ["train", "+trainer.acelerator=cpu"], ["trainer.acelerator", "Did you mean 'accelerator'?"]),
    ("key-callback", ["train", "+callbacks.early_stopping.patiense=3"],
     ["callbacks.early_stopping.patiense", "Did you mean 'patience'?"]),
    ("key-layer-arg", ["train", USER_CONF, "model=argtypo"],
     ["model.layers[0].activaton", "Did you mean 'activation'?"]),
    ("key-model", ["train", "+model.layerz=[]"], ["model.layerz", "Did you mean 'layers'?"]),
    ("key-in-experiment", ["train", USER_CONF, "experiment=badkey"], ["optimizer.lrr", "Did you mean 'lr'?"]),
    # `+` bypasses the struct config: a top-level key netkiln never reads is still refused (free namespace: vars).
    ("key-plus-top", ["train", "+batchsize=32"], ["batchsize: unknown config key", "Did you mean 'batch_size'?"]),
    ("key-plus-new", ["train", "++nosuchkey.deep=1"], ["nosuchkey: unknown config key", "+vars.nosuchkey"]),
    ("key-plus-evaluate", ["evaluate", "run={run}", "+seed=1"], ["seed: unknown config key"]),
    ("override-syntax", ["train", "model=[a"], ['cannot parse the override "model=[a"']),
    ("override-no-value", ["train", "optimizer.lr"], ['cannot parse the override "optimizer.lr"']),
    ("override-paren", ["train", "optimizer.lr=1e-3)"], ['"optimizer.lr=1e-3)"']),
    ("yaml-syntax", ["train", USER_CONF, "model=broken"], ["broken.yaml, line 4, column 5", "not valid YAML",
                                                           "line 2"]),
    ("missing-value", ["evaluate"], ["run: a value is required"]),
    # -- wrong types and values ------------------------------------------------------------------------------
    ("units-abc", ["train", USER_CONF, "model=units"], ["model.layers[0].units", "'abc'"]),
    ("dropout-1.5", ["train", "model.vars.dropout=1.5"], ["model.layers[2].rate", "1.5"]),
    ("kernel-size-0", ["train", *SEQ, USER_CONF, "model=k0"], ["model.layers[0].kernel_size", "got 0"]),
    ("epochs-negative", ["train", "trainer.max_epochs=-3"], ["trainer.max_epochs", "-3"]),
    ("batch-size-abc", ["train", "batch_size=abc"], ["batch_size", "'abc'"]),
    ("seed-abc", ["train", "seed=abc"], ["seed", "must be an integer"]),
    ("clip-abc", ["train", "gradient_clip_val=abc"], ["gradient_clip_val", "'abc'"]),
    ("lr-abc", ["train", "optimizer.lr=abc"], ["optimizer.lr", "must be a number"]),
    ("patience-0", ["train", "callbacks.early_stopping.patience=0"], ["callbacks.early_stopping.patience"]),
    ("task-typo", ["train", "data.task=regresion"], ["data.task", "Did you mean 'regression'?"]),
    ("split-1.5", ["train", "data.split.val=1.5"], ["data.split.val", "1.5"]),
    # -- layers that do not fit the data ---------------------------------------------------------------------
    ("kernel-too-big", ["train", *SEQ, USER_CONF, "model=kbig"],
     ["model.layers[0] (conv1d)", "kernel_size 9 is larger than the input length 4"]),
    ("conv2d-on-sequence", ["train", *SEQ, "model=cnn2d"], ["model.layers[0] (conv2d)", "needs images"]),
    ("rnn-on-flat", ["train", "model=gru"], ["model.layers[0] (gru)", "needs a sequence", "reshape"]),
    ("reshape-size", ["train", USER_CONF, "model=reshape"], ["model.layers[0].target_shape", "15 values", "8"]),
    ("unknown-layer", ["train", *SEQ, USER_CONF, "model=typo"], ["model.layers[0]", "Did you mean 'conv1d'?"]),
    ("empty-layers", ["train", "model.layers=[]"], ["model.layers", "empty"]),
    ("head-mismatch", ["train", "model.head=none"], ["model.head", "head mismatch", "(None, 3)"]),
    ("head-value", ["train", "model.head=autoo"], ["model.head", "Did you mean 'auto'?"]),
    # -- loss, metrics, optimizer, scheduler, trainer -----------------------------------------------------------
    ("loss-task", ["train", "loss=mse"], ["loss", "'mse' does not fit a multiclass task"]),
    ("loss-bce-multiclass", ["train", "loss=bce"], ["loss", "'bce'"]),
    ("metric-unknown", ["train", "monitor=val/accuracy"], ["monitor", "Did you mean 'val/acc'?"]),
    ("metric-not-logged", ["train", "monitor=val/r2"], ["monitor", "'val/r2' is not a metric", "val/f1"]),
    ("mode-value", ["train", "mode=maximum"], ["mode", "'maximum'"]),
    ("optimizer-unknown", ["train", "optimizer._target_=torch.optim.Adamm"],
     ["optimizer._target_", "Did you mean 'torch.optim.Adam'?"]),
    ("optimizer-arg", ["train", "+optimizer.momentun=0.9"], ["optimizer.momentun", "Adam has no argument"]),
    ("optimizer-value", ["train", "optimizer.lr=-1"], ["optimizer", "Invalid learning rate"]),
    ("optimizer-not-torch", ["train", "optimizer._target_=os.system"],
     ["optimizer._target_", "'os.system' is not a torch.optim", "allow_targets=true"]),
    ("scheduler-needs-arg", ["train", "scheduler=step", "scheduler.step_size=null"],
     ["scheduler.step_size", "StepLR needs a value"]),
    ("scheduler-missing-arg", ["train", "+scheduler._target_=torch.optim.lr_scheduler.MultiStepLR"],
     ["scheduler.milestones", "MultiStepLR needs a value"]),
    ("scheduler-not-scheduler", ["train", "scheduler=step", "scheduler._target_=torch.optim.SGD"],
     ["scheduler._target_", "is not a scheduler"]),
    ("scheduler-interval", ["train", "scheduler=cosine", "scheduler.interval=batch"], ["scheduler.interval"]),
    ("trainer-value", ["train", "trainer.accelerator=tpux"], ["trainer", "tpux"]),
    ("val-split-missing", ["train", "monitor=val/loss", "data.split.val=0"], ["data.split.val"]),
    ("resume-nothing", ["train", "resume=true"], ["resume", "no checkpoint"]),
    ("model-target-outside-torch", ["train", "model.layers=[{{_target_: collections.OrderedDict}}]"],
     ["model.layers[0]", "collections.OrderedDict", "allow_targets=true"]),
    # -- data files ----------------------------------------------------------------------------------------------
    ("data-missing", ["train", *CSV, "data.path={data}/nope.csv"], ["data.path", "nope.csv", "not found"]),
    ("data-directory", ["train", *CSV, "data.path={data}/folder.csv"], ["data.path", "folder.csv", "folder"]),
    ("data-unreadable", ["train", *CSV, "data.path={data}/locked.csv"],
     ["data.path", "locked.csv", "Permission denied"]),
    ("data-empty", ["train", *CSV, "data.path={data}/empty.csv"], ["data.path", "empty.csv", "empty"]),
    ("data-header-only", ["train", *CSV, "data.path={data}/header.csv"], ["header.csv", "no data rows"]),
    ("data-extension", ["train", *CSV, "data.path={data}/sheet.xlsx"], ["data.format", "sheet.xlsx", "'.xlsx'"]),
    ("data-not-parquet", ["train", *CSV, "data.path={data}/fake.parquet"], ["fake.parquet", "not a readable Parquet"]),
    ("data-encoding", ["train", *CSV, "data.path={data}/latin.csv"],
     ["latin.csv", "not utf-8", "data.text_encoding"]),
    ("data-ragged", ["train", *CSV, "data.path={data}/ragged.csv"], ["ragged.csv, line 4", "expected 3 fields"]),
    ("data-non-numeric", ["train", *CSV, "data.path={data}/nonnumeric.csv"],
     ["nonnumeric.csv, line 22, column 'a'", "'n/k'"]),
    ("data-target-typo", ["train", *CSV, "data.path={data}/good.csv", "data.target=lable"],
     ["data.target", "Did you mean 'label'?"]),
    ("data-one-class", ["train", *CSV, "data.path={data}/oneclass.csv"], ["data.target", "single class"]),
    ("npz-not-zip", ["train", "data=npz", "data.path={data}/notzip.npz", "model=mlp"],
     ["data.path", "notzip.npz", "not a readable .npz"]),
    ("npz-no-x", ["train", "data=npz", "data.path={data}/nox.npz", "model=mlp"], ["nox.npz", "no array named 'x'"]),
    ("npz-object", ["train", "data=npz", "data.path={data}/object.npz", "model=mlp"], ["object.npz", "objects"]),
    ("npz-lengths", ["train", "data=npz", "data.path={data}/lengths.npz", "model=mlp"], ["lengths.npz", "10 rows"]),
    # -- runs, bundles, predict, evaluate, export -------------------------------------------------------------
    ("evaluate-not-a-run", ["evaluate", "run={data}"], ["run", "not a netkiln run directory"]),
    ("evaluate-missing-run", ["evaluate", "run={tmp}/nowhere"], ["run", "nowhere", "no such directory"]),
    ("evaluate-file-as-run", ["evaluate", "run={data}/good.csv"], ["run", "good.csv", "this is a file"]),
    ("evaluate-split", ["evaluate", "run={run}", "split=tset"], ["split", "Did you mean 'test'?"]),
    ("predict-not-a-run", ["predict", "run={data}", "input=" + PRED[0], PRED[1]], ["run", "not a netkiln run"]),
    ("predict-missing-column", ["predict", "run={run}", "input={run}/in_missing.csv", PRED[1]],
     ["input", "in_missing.csv", "'x3'"]),
    ("predict-extra-column", ["predict", "run={run}", "input={run}/in_extra.csv", PRED[1]], ["allow_extra=true"]),
    ("predict-output-format", ["predict", "run={run}", "input=" + PRED[0], "output={tmp}/out/pred.xlsx"],
     ["output", "'.xlsx'"]),
    ("predict-over-input", ["predict", "run={run}", "input=" + PRED[0], "output=" + PRED[0]],
     ["output", "overwrite the input"]),
    ("predict-into-bundle", ["predict", "run={run}", "input=" + PRED[0], "output={run}/model/pred.csv"],
     ["output", "model bundle"]),
    ("bundle-truncated", ["evaluate", "run={bad}/truncated"], ["weights.safetensors", "checksum"]),
    ("bundle-tampered", ["predict", "run={bad}/tampered", "input=" + PRED[0], PRED[1]],
     ["weights.safetensors", "checksum"]),
    ("bundle-bad-header", ["export", "run={bad}/header"], ["weights.safetensors", "cannot read the weights"]),
    ("bundle-newer", ["evaluate", "run={bad}/newer"], ["meta.json", "newer netkiln (99.0.0)"]),
    ("bundle-format", ["export", "run={bad}/format"], ["meta.json", "bundle format 7"]),
    ("bundle-meta-json", ["evaluate", "run={bad}/badmeta"], ["meta.json", "cannot read the bundle file"]),
    ("bundle-incomplete", ["evaluate", "run={bad}/incomplete"], ["model", "incomplete", "resume=true"]),
    ("bundle-target", ["evaluate", "run={bad}/target"], ["config.yaml", "os.system", "allow_targets=true"]),
    ("init-from-truncated", ["train", "init_from={bad}/truncated"], ["init_from", "weights.safetensors"]),
    ("export-format", ["export", "run={run}", "format=onnnx"], ["format", "Did you mean 'onnx'?"]),
    ("export-opset", ["export", "run={run}", "opset=abc"], ["opset", "'abc'"]),
    ("export-into-bundle", ["export", "run={run}", "output={run}/model/model.onnx"], ["output", "model bundle"]),
    ("evaluate-into-bundle", ["evaluate", "run={run}", "out={run}/model"], ["out", "model bundle"]),
    # -- hostile or damaged input: refused before anything is built or allocated -----------------------------
    ("bundle-stats-type", ["predict", "run={bad}/stats_type", "input=" + PRED[0], PRED[1]],
     ["preprocessing.json", "preparation.standardize.mean", '"abc"']),
    ("bundle-stats-length", ["predict", "run={bad}/stats_length", "input=" + PRED[0], PRED[1]],
     ["preprocessing.json", "preparation.standardize.std", "8 numbers"]),
    ("bundle-feature-axis", ["evaluate", "run={bad}/feature_axis"], ["preprocessing.json", "feature_axis", "got 2"]),
    ("bundle-input-shape-text", ["export", "run={bad}/shape_text"], ["preprocessing.json", "input_shape", '"8"']),
    ("bundle-num-outputs-huge", ["evaluate", "run={bad}/num_outputs"], ["config.yaml", "task.num_outputs"]),
    ("bundle-units-huge", ["evaluate", "run={bad}/units"],
     ["weights.safetensors", "do not fit", "(1000000000000, 8)"]),
    ("bundle-format-bool", ["evaluate", "run={bad}/format_bool"], ["meta.json", "bundle_format", "got true"]),
    ("bundle-version-list", ["evaluate", "run={bad}/version_list"], ["meta.json", "netkiln", "[1, 2]"]),
    ("bundle-nan-weights", ["evaluate", "run={bad}/nan_weights"], ["weights.safetensors", "NaN or infinite"]),
    ("bundle-yaml-aliases", ["evaluate", "run={bad}/aliases"], ["config.yaml", "aliases"]),
    ("model-memory", ["train", "model.vars.width=1000000000"], ["model.layers[3] (dense_1)", "of memory, more than"]),
    ("model-uncountable", ["train", "model.vars.width=1000000000000"],
     ["model.layers[3] (dense)", "too large to allocate"]),
    ("data-memory", ["train", "data.n_samples=1000000000000"], ["data.n_samples", "of memory, more than"]),
    ("npz-bomb", ["train", "data=npz", "data.path={data}/bomb.npz", "model=mlp"],
     ["data.path", "bomb.npz", "the arrays its headers declare would need"]),
    ("image-bomb", ["train", "data=images", "data.path={data}/bomb_images", "data.image_size=[8,8]", "model=mlp"],
     ["bomb.png", "decompression bomb"]),
    ("image-size-memory", ["train", "data=images", "data.path={data}/bomb_images",
                           "data.image_size=[1000000,1000000]", "model=mlp"], ["data.image_size", "of memory"]),
    ("data-inf-feature", ["train", *CSV, "data.path={data}/inf.csv"],
     ["inf.csv, line 4, column 'a'", "infinite value inf"]),
    ("data-inf-target", ["train", *CSV, "data.path={data}/inf_target.csv", "data.target=y"],
     ["data.target", "inf_target.csv, line 10, column 'y'", "infinite value"]),
    ("data-duplicate-header", ["train", *CSV, "data.path={data}/dup.csv"], ["dup.csv, line 1", "'a' more than once"]),
    ("predict-overflow", ["predict", "run={bad}/small_std", "input={data}/big_rows.csv", PRED[1]],
     ["big_rows.csv", "data row 1", "infinite or NaN after the saved preparation"]),
    ("predict-output-under-file", ["predict", "run={run}", "input=" + PRED[0], "output={data}/good.csv/pred.csv"],
     ["good.csv is a file, not a folder"]),
]

# What a run may write before it fails: complete files only.
ALLOWED_NEW = {".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "run", "run/.hydra",
               "run/.hydra/config.yaml", "run/.hydra/hydra.yaml", "run/.hydra/overrides.yaml", "run/train.log",
               "run/summary.txt", "run/metrics.json"}


def _write_data(d: Path) -> None:
    import pandas as pd

    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.csv").write_text("")
    (d / "header.csv").write_text("a,b,label\n")
    (d / "ragged.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,7,x\n1,2,y\n")
    (d / "latin.csv").write_bytes("a,b,label\n1,2,caf\xe9\n3,4,y\n".encode("latin-1"))
    (d / "nonnumeric.csv").write_text("a,b,label\n" + "".join(f"{i},{i * 2},{'xy'[i % 2]}\n" for i in range(20))
                                      + "n/k,3,x\n")
    (d / "sheet.xlsx").write_text("a,b,label\n")
    (d / "fake.parquet").write_text("PAR1 not really")
    (d / "folder.csv").mkdir(exist_ok=True)
    (d / "oneclass.csv").write_text("a,b,label\n" + "".join(f"{i},{i * 2},x\n" for i in range(20)))
    pd.DataFrame({"a": range(40), "b": [i % 7 for i in range(40)], "label": ["x", "y"] * 20}).to_csv(
        d / "good.csv", index=False)
    (d / "locked.csv").write_bytes((d / "good.csv").read_bytes())
    (d / "notzip.npz").write_text("hello")
    np.savez(d / "nox.npz", features=np.zeros((10, 3)), y=np.zeros(10))
    np.savez(d / "lengths.npz", x=np.zeros((10, 3)), y=np.zeros(7))
    with open(d / "object.npz", "wb") as fh:           # np.savez would need allow_pickle to read this back
        np.savez(fh, x=np.array([[1], [2, 3], [4]], dtype=object), y=np.zeros(3))
    rows = [f"{i},{i * 2},{'xy'[i % 2]}" for i in range(30)]
    (d / "inf.csv").write_text("a,b,label\n" + "\n".join(rows[:2] + ["inf,3,x"] + rows[3:]) + "\n")   # line 4
    rows = [f"{i},{i * 2},{i * 0.37:.2f}" for i in range(30)]
    (d / "inf_target.csv").write_text("a,b,y\n" + "\n".join(rows[:8] + ["5,3,inf"] + rows[9:]) + "\n")  # line 10
    (d / "dup.csv").write_text("a,b,a,label\n" + "".join(f"{i},{i},{i},{'xy'[i % 2]}\n" for i in range(20)))
    (d / "big_rows.csv").write_text(",".join(f"x{i}" for i in range(8)) + "\n" + ",".join(["0"] * 8) + "\n"
                                    + ",".join(["1e37"] * 8) + "\n")
    _write_bomb_images(d / "bomb_images")
    _write_bomb_npz(d / "bomb.npz")


def _write_bomb_npz(path: Path) -> None:
    """A 350-byte .npz whose x declares 10^11 x 4 float64 values (3 TiB); the data is not there."""
    import io
    import zipfile

    from numpy.lib import format as npformat

    header = io.BytesIO()
    npformat.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 11, 4)})
    labels = io.BytesIO()
    np.save(labels, np.zeros(10))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(64))
        archive.writestr("y.npy", labels.getvalue())


def _write_bomb_images(folder: Path) -> None:
    """Two classes of 8x8 PNGs, one of them a 129-byte PNG that declares 100,000 x 100,000 pixels."""
    import struct
    import zlib

    from PIL import Image

    for c in ("a", "b"):
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.new("L", (8, 8), 60 if c == "a" else 200).save(folder / c / f"{i}.png")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)        # 1-bit grayscale
    (folder / "b" / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                          + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _write_conf(c: Path) -> None:
    (c / "model").mkdir(parents=True, exist_ok=True)
    (c / "experiment").mkdir(exist_ok=True)
    files = {
        "model/broken.yaml": "layers:\n  - dense: {units: 4\n  - flatten\nhead: auto\n",
        "model/units.yaml": "layers:\n  - dense: {units: abc}\n",
        "model/reshape.yaml": "layers:\n  - reshape: [3, 5]\n  - flatten\n",
        "model/typo.yaml": "layers:\n  - convd1: {filters: 3, kernel_size: 3}\n",
        "model/k0.yaml": "layers:\n  - conv1d: {filters: 3, kernel_size: 0}\n  - flatten\n",
        "model/kbig.yaml": "layers:\n  - conv1d: {filters: 3, kernel_size: 9}\n  - flatten\n",
        "model/argtypo.yaml": "layers:\n  - dense: {units: 4, activaton: relu}\n",
        "experiment/badkey.yaml": "# @package _global_\noptimizer:\n  lrr: 0.1\n",
    }
    for name, text in files.items():
        (c / name).write_text(text)


def _damaged_bundles(run: Path, root: Path) -> None:
    import yaml

    def copy(name):
        dest = root / name
        shutil.copytree(run, dest, ignore=shutil.ignore_patterns("evaluation", "export", "in*.csv"))
        return dest / "model"

    weights = copy("truncated") / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])
    weights = copy("tampered") / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\x7f" * 8                                        # the last tensor's bytes, not the header
    weights.write_bytes(bytes(data))
    (copy("header") / "weights.safetensors").write_bytes(b"\x00" * 50)
    meta = json.loads((run / "model" / "meta.json").read_text())
    del meta["weights_sha256"]               # as an older bundle: no checksum, so the reader itself must refuse
    (root / "header" / "model" / "meta.json").write_text(json.dumps(meta))
    (copy("newer") / "meta.json").write_text(json.dumps({**meta, "netkiln": "99.0.0"}))
    (copy("format") / "meta.json").write_text(json.dumps({**meta, "bundle_format": 7}))
    (copy("badmeta") / "meta.json").write_text("{not json")
    (copy("incomplete") / "meta.json").unlink()
    config_file = copy("target") / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["model"]["layers"][1] = {"_target_": "os.system", "command": "echo pwned"}
    config_file.write_text(yaml.safe_dump(config))
    _hostile_bundles(run, copy)


def _hostile_bundles(run: Path, copy) -> None:
    """Bundle copies whose values are damaged: wrong types and lengths, huge sizes, NaN weights, YAML aliases."""
    import torch
    import yaml
    from safetensors.torch import load_file, save_file

    def edit_json(model: Path, name: str, change) -> None:
        data = json.loads((model / name).read_text())
        change(data)
        (model / name).write_text(json.dumps(data))

    def edit_config(model: Path, change) -> None:
        config = yaml.safe_load((model / "config.yaml").read_text())
        change(config)
        (model / "config.yaml").write_text(yaml.safe_dump(config))

    edit_json(copy("stats_type"), "preprocessing.json",
              lambda p: p["preparation"]["standardize"].update(mean="abc"))
    edit_json(copy("stats_length"), "preprocessing.json",
              lambda p: p["preparation"]["standardize"].update(std=[1.0]))        # numpy would broadcast it
    edit_json(copy("feature_axis"), "preprocessing.json",
              lambda p: p["preparation"]["standardize"].update(feature_axis=2))
    edit_json(copy("shape_text"), "preprocessing.json", lambda p: p.update(input_shape="8"))
    edit_json(copy("small_std"), "preprocessing.json",             # valid, but 1e37 / 1e-3 overflows float32
              lambda p: p["preparation"]["standardize"].update(std=[1e-3] * 8))
    edit_json(copy("format_bool"), "meta.json", lambda m: m.update(bundle_format=True))
    edit_json(copy("version_list"), "meta.json", lambda m: m.update(netkiln=[1, 2]))
    edit_config(copy("num_outputs"), lambda c: c["task"].update(num_outputs=10 ** 12))
    edit_config(copy("units"), lambda c: c["model"]["layers"][1]["dense"].update(units=10 ** 12))
    model = copy("nan_weights")
    state = load_file(str(model / "weights.safetensors"))
    state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
    save_file(state, str(model / "weights.safetensors"))
    edit_json(model, "meta.json", lambda m: m.pop("weights_sha256"))     # as if trained to NaN: no checksum catch
    model = copy("aliases")                    # a "billion laughs": 9 levels of 10 aliases = 10^9 values
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))
    (model / "config.yaml").write_text((model / "config.yaml").read_text() + "l0: &l0 [lol]\n" + laughs)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The shared inputs: bad data files, a user config folder, a trained run and damaged copies of it."""
    import pandas as pd

    root = tmp_path_factory.mktemp("bad_inputs")
    _write_data(root / "data")
    _write_conf(root / "conf")
    run = root / "run"
    assert main(["train", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={run}"]) == 0
    features = [f"x{i}" for i in range(8)]
    frame = pd.DataFrame(np.zeros((4, 8)), columns=features)
    frame.to_csv(run / "in.csv", index=False)
    frame.drop(columns=["x3"]).to_csv(run / "in_missing.csv", index=False)
    frame.assign(extra=1).to_csv(run / "in_extra.csv", index=False)
    (root / "bad").mkdir()
    _damaged_bundles(run, root / "bad")
    return {"data": root / "data", "conf": root / "conf", "run": run, "bad": root / "bad"}


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def _lock(monkeypatch, path: Path) -> None:
    """Make `path` unreadable; as root (who reads anything) by refusing to open it."""
    path.chmod(0)
    try:
        path.read_bytes()
    except PermissionError:
        return
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", refusing_open)


def test_the_catalogue_is_complete():
    assert len(CASES) >= 40
    assert len({case[0] for case in CASES}) == len(CASES), "case ids are unique"


@pytest.mark.parametrize("argv, expected", [pytest.param(argv, expected, id=name) for name, argv, expected in CASES])
def test_bad_input(world, tmp_path, capsys, monkeypatch, argv, expected):
    places = {**{k: str(v) for k, v in world.items()}, "tmp": str(tmp_path)}
    argv = [arg.format(**places) for arg in argv]
    command, args = argv[0], argv[1:]
    if command == "train":
        own_data = any(a.startswith("data=") for a in args)
        base = ["trainer=debug", "trainer.enable_progress_bar=false"] if own_data else TINY
        args = [*base, *args, f"hydra.run.dir={tmp_path}/run"]
    if "locked.csv" in " ".join(args):
        _lock(monkeypatch, world["data"] / "locked.csv")
    monkeypatch.chdir(tmp_path)               # commands that write to the working folder would show up here
    watched = [tmp_path, world["run"], world["bad"], world["data"]]
    before = {str(f): _files(f) for f in watched}
    capsys.readouterr()

    rc = main([command, *args])
    err = capsys.readouterr().err

    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"one paragraph expected, got:\n{err}"
    assert lines[0].startswith(f"netkiln {command}: error: "), lines[0]
    assert "Traceback" not in err
    assert "np.float" not in err and "np.int" not in err, "numbers print plainly"
    for text in expected:
        assert text in lines[0], f"{text!r} not in: {lines[0]}"
    for folder in watched:
        new = _files(folder) - before[str(folder)]
        if folder == tmp_path:
            new -= ALLOWED_NEW
            if (tmp_path / "run" / "metrics.json").exists():       # a failed run's record: the error, no results
                record = json.loads((tmp_path / "run" / "metrics.json").read_text())
                assert record["status"] == "failed" and record["error"]
        assert not new, f"files left behind in {folder}: {sorted(new)}"
