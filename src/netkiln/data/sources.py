"""Built-in data sources: each turns its config node into raw numpy arrays plus a Task.

A source does not split or standardise; `netkiln.data.load_dataset` does that for every source alike.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from netkiln.config_values import is_positive_int
from netkiln.errors import NetkilnError
from netkiln.memory import check_fits
from netkiln.task import Task

from . import cache
from .config import check_keys, get_choice, get_float, get_int

log = logging.getLogger(__name__)


@dataclass
class RawSource:
    x: np.ndarray | None                # (N, *input_shape) rows to split into train/val(/test); None: see prepare
    y: np.ndarray                       # (N,) int for classification, (N, k) float for regression
    task: Task
    layout: str
    x_test: np.ndarray | None = None    # the source's own test set, honoured when present
    y_test: np.ndarray | None = None
    feature_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # Sources whose preparation fits statistics (tables): prepare(train_idx) -> (x, x_test, preprocessing,
    # feature_names), called after the split with the training rows' positions; x is None until then.
    prepare: Callable[[np.ndarray], tuple] | None = None
    # A split the source fixes itself (a split column): {"train", "val", "test"} positions; fractions are ignored.
    fixed_split: dict[str, np.ndarray] | None = None
    # What split_indices report for each position (e.g. the file's data-row numbers); default the position.
    row_ids: np.ndarray | None = None
    test_row_ids: np.ndarray | None = None
    # Source-specific preprocessing entries merged into Dataset.preprocessing (e.g. how images are resized).
    preprocessing: dict[str, Any] = field(default_factory=dict)
    # The raw table and its plan, for `netkiln analyze` (never serialised).
    table: dict[str, Any] | None = None
    # File sources: a separate test file/array makes the config's `split.test` moot instead of an error.
    ignores_split_test: bool = False
    # Streamed tables (data/streaming.py): streamed({"train", "val", "test"} sorted positions) -> (x per split,
    # memory-mapped from disk, x_test, preprocessing, feature_names), instead of prepare.
    streamed: Callable[[dict], tuple] | None = None


@dataclass(frozen=True)
class SourceSpec:
    name: str
    load: Callable[[dict, str], RawSource]
    extra_keys: tuple[str, ...] = ()
    standardize: bool = True            # default when the config node does not say
    split_val: float = 0.15
    split_test: float = 0.15
    description: str = ""


# ----------------------------------------------------------------------------------------------- scikit-learn
def _sklearn_tabular(loader_name: str, kind: str) -> Callable[[dict, str], RawSource]:
    def load(node: dict, path: str) -> RawSource:
        import sklearn.datasets as skd  # slow import: only when used

        b = getattr(skd, loader_name)()
        x = np.asarray(b.data, dtype=np.float32)
        if kind == "regression":
            y = np.asarray(b.target, dtype=np.float32).reshape(len(x), -1)
            task = Task("regression", y.shape[1])
        else:
            y = np.asarray(b.target, dtype=np.int64)
            names = tuple(str(n) for n in b.target_names)
            task = Task(kind, len(names) if kind == "multiclass" else 1, names)
        first = (b.DESCR or "").strip().splitlines()
        return RawSource(x=x, y=y, task=task, layout="flat", feature_names=[str(f) for f in b.feature_names],
                         info={"source": f"sklearn.datasets.{loader_name}", "rows": int(len(x)),
                               "description": _describe_line(b.DESCR) or loader_name})
    return load


def _describe_line(descr: str | None) -> str:
    """The title of a scikit-learn DESCR text (first line that is not markup)."""
    for line in (descr or "").splitlines():
        s = line.strip()
        if s and not s.startswith(("..", "--", "==", "**")):
            return s
    return ""


def load_digits(node: dict, path: str) -> RawSource:
    import sklearn.datasets as skd

    b = skd.load_digits()
    x = (np.asarray(b.images, dtype=np.float32) / 16.0)[:, None, :, :]     # (N, 1, 8, 8) in [0, 1]
    y = np.asarray(b.target, dtype=np.int64)
    names = tuple(str(n) for n in b.target_names)
    return RawSource(x=x, y=y, task=Task("multiclass", len(names), names), layout="image",
                     info={"source": "sklearn.datasets.load_digits", "rows": int(len(x)),
                           "description": "8x8 images of handwritten digits (UCI), pixels scaled to [0, 1]"})


# ----------------------------------------------------------------------------------------------- MNIST-1D
MNIST1D_ARGS = ("num_samples", "train_split", "template_len", "padding", "scale_coeff", "max_translation",
                "corr_noise_scale", "iid_noise_scale", "shear_scale", "shuffle_seq", "final_seq_length", "seed")


# mnist1d's get_dataset_args() defaults (the paper's dataset), copied so that a cache hit never imports mnist1d
# (it pulls in matplotlib and scipy: ~1 s of start-up). tests/test_startup.py checks they still agree.
MNIST1D_DEFAULTS = {"num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
                    "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2,
                    "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": 40, "seed": 42}


def mnist1d_args(overrides: dict | None, path: str) -> dict:
    """The generator arguments: mnist1d's defaults (the paper's dataset) updated with `generator:` overrides."""
    args = {k: list(v) if isinstance(v, list) else v for k, v in MNIST1D_DEFAULTS.items()}
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise NetkilnError(f"expected a mapping of MNIST-1D generator arguments, got {overrides!r}", key=path)
    check_keys(overrides, MNIST1D_ARGS, path)
    for k, v in overrides.items():
        if v is not None:
            args[k] = list(v) if isinstance(v, (list, tuple)) else v
    if not 0.0 < float(args["train_split"]) < 1.0:
        raise NetkilnError(f"must be between 0 and 1, got {args['train_split']}", key=f"{path}.train_split")
    if int(args["num_samples"]) < 20:
        raise NetkilnError(f"must be at least 20, got {args['num_samples']}", key=f"{path}.num_samples")
    return args


def generate_mnist1d(args: dict) -> dict[str, np.ndarray]:
    """Generate offline (never `mnist1d.get_dataset()`, which downloads and writes a pickle into the cwd).

    mnist1d seeds Python's and numpy's global generators; their states are restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    a = get_dataset_args()
    for k, v in args.items():
        setattr(a, k, v)
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(a)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x": np.asarray(d["x"], dtype=np.float32), "y": np.asarray(d["y"], dtype=np.int64),
            "x_test": np.asarray(d["x_test"], dtype=np.float32), "y_test": np.asarray(d["y_test"], dtype=np.int64)}


def load_mnist1d(node: dict, path: str) -> RawSource:
    import importlib.metadata as md

    args = mnist1d_args(node.get("generator"), f"{path}.generator")
    try:
        version = md.version("mnist1d")
    except md.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    key = cache.cache_key({"dataset": "mnist1d", "mnist1d_version": version, "args": args})
    file = cache.cache_dir() / f"mnist1d-{key}.npz"
    arrays = cache.load_arrays(file)
    cached = arrays is not None and {"x", "y", "x_test", "y_test"} <= set(arrays)
    if not cached:
        arrays = generate_mnist1d(args)
        if not cache.save_arrays(file, arrays):
            log.warning("could not write the MNIST-1D cache at %s; it will be generated again next time", file)
    x, x_test = arrays["x"][:, :, None], arrays["x_test"][:, :, None]        # (N, 40) → (N, 40, 1)
    names = tuple(str(i) for i in range(10))
    return RawSource(x=x, y=arrays["y"].astype(np.int64), x_test=x_test, y_test=arrays["y_test"].astype(np.int64),
                     task=Task("multiclass", 10, names), layout="sequence",
                     info={"source": "mnist1d (generated offline)", "mnist1d_version": version,
                           "generator": args, "cache_file": str(file), "from_cache": bool(cached),
                           "rows": int(len(x) + len(x_test)),
                           "description": "MNIST-1D: 1-D digit templates with noise, shear and translation"})


# ----------------------------------------------------------------------------------------------- synthetic
SYNTHETIC_KEYS = ("task", "n_samples", "n_features", "n_classes", "n_targets", "layout", "shape", "noise",
                  "generator_seed")


def load_synthetic(node: dict, path: str) -> RawSource:
    kind = get_choice(node, "task", "multiclass", ("multiclass", "binary", "regression"), path)
    layout = get_choice(node, "layout", "flat", ("flat", "sequence", "image"), path)
    n = get_int(node, "n_samples", 600, path, minimum=10)
    noise = get_float(node, "noise", 1.0, path)
    if noise < 0:
        raise NetkilnError(f"must be at least 0, got {noise}", key=f"{path}.noise")
    gseed = get_int(node, "generator_seed", 0, path)
    shape = node.get("shape")
    want = {"flat": 1, "sequence": 2, "image": 3}[layout]
    if shape is None:
        if layout != "flat":
            raise NetkilnError(f"layout '{layout}' needs a shape with {want} entries, e.g. "
                               f"{'[20, 3] (time steps, features)' if want == 2 else '[1, 8, 8] (C, H, W)'}",
                               key=f"{path}.shape")
        shape = [get_int(node, "n_features", 20, path, minimum=1)]
    if (not isinstance(shape, list) or len(shape) != want
            or not all(is_positive_int(s) for s in shape)):
        raise NetkilnError(f"layout '{layout}' needs a shape of {want} positive integers, got {shape!r}",
                           key=f"{path}.shape")
    shape = tuple(shape)
    dim = math.prod(shape)
    # Generated in float64 with two temporaries of the same size (patterns + noise) before the float32 copy.
    check_fits(n * dim * 8 * 3, f"generating {n:,} rows of {dim:,} values", key=f"{path}.n_samples",
               advice="lower the number of rows or the shape")
    rng = np.random.Generator(np.random.PCG64(gseed))

    if kind == "multiclass":
        k = get_int(node, "n_classes", 3, path, minimum=2)
        protos = _smooth_patterns(rng, k, shape, layout)
        y = np.arange(n) % k
        y = y[rng.permutation(n)]
        x = protos[y] + noise * rng.standard_normal((n, *shape))
        task = Task("multiclass", k, tuple(str(i) for i in range(k)))
    elif kind == "binary":
        w = _smooth_patterns(rng, 1, shape, layout)[0].reshape(-1)
        w = w / np.linalg.norm(w)
        x = rng.standard_normal((n, *shape))
        score = x.reshape(n, -1) @ w * 3.0 + noise * rng.standard_normal(n)
        y = (score > 0).astype(np.int64)
        task = Task("binary", 1, ("0", "1"))
    else:
        t = get_int(node, "n_targets", 1, path, minimum=1)
        w = rng.standard_normal((dim, t)) / np.sqrt(dim)
        x = rng.standard_normal((n, *shape))
        y = (x.reshape(n, -1) @ w + 0.1 * noise * rng.standard_normal((n, t))).astype(np.float32)
        task = Task("regression", t)
    feature_names = [f"x{i}" for i in range(dim)] if layout == "flat" else None
    return RawSource(x=x.astype(np.float32), y=y.astype(np.int64) if task.is_classification else y, task=task,
                     layout=layout, feature_names=feature_names,
                     info={"source": "synthetic", "rows": n, "generator_seed": gseed, "noise": noise,
                           "description": f"synthetic {kind} data, {layout} {list(shape)}"})


def _smooth_patterns(rng: np.random.Generator, k: int, shape: tuple, layout: str) -> np.ndarray:
    """k random patterns, smoothed over time/space so that conv and recurrent models can pick them up too."""
    p = rng.standard_normal((k, *shape))
    spatial = {"flat": (), "sequence": (1,), "image": (2, 3)}[layout]
    for ax in spatial:
        if p.shape[ax] >= 3:
            p = (np.roll(p, 1, axis=ax) + p + np.roll(p, -1, axis=ax)) / 3.0
    p = p / p.reshape(k, -1).std(axis=1).reshape((k,) + (1,) * len(shape))
    return p


SOURCES: dict[str, SourceSpec] = {
    "mnist1d": SourceSpec("mnist1d", load_mnist1d, extra_keys=("generator",), standardize=False, split_val=0.1,
                          description="MNIST-1D, 10 classes, sequences (40, 1), own test set"),
    "digits": SourceSpec("digits", load_digits, standardize=False,
                         description="scikit-learn digits, 10 classes, images (1, 8, 8)"),
    "iris": SourceSpec("iris", _sklearn_tabular("load_iris", "multiclass"),
                       description="scikit-learn iris, 3 classes, 4 features"),
    "wine": SourceSpec("wine", _sklearn_tabular("load_wine", "multiclass"),
                       description="scikit-learn wine, 3 classes, 13 features"),
    "breast_cancer": SourceSpec("breast_cancer", _sklearn_tabular("load_breast_cancer", "binary"),
                                description="scikit-learn breast cancer, binary, 30 features"),
    "diabetes": SourceSpec("diabetes", _sklearn_tabular("load_diabetes", "regression"),
                           description="scikit-learn diabetes, regression (1 target), 10 features"),
    "synthetic": SourceSpec("synthetic", load_synthetic, extra_keys=SYNTHETIC_KEYS,
                            description="generated, configurable task and layout"),
}


def register_source(spec: SourceSpec) -> None:
    """Add a source (file-based sources register themselves here)."""
    SOURCES[spec.name] = spec
