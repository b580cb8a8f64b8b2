"""`data=npz`: arrays from the user's .npz file: x and y, optionally x_test and y_test.

x rows may be flat features (N, F), sequences (N, T, F) or (N, T), or images (N, C, H, W), (N, H, W, C) or
(N, H, W); the layout follows the rank unless `data.layout` says otherwise. `data.path` may also be a folder of
.npy files (x.npy, y.npy, ...: np.save's format), memory-mapped: only the rows of each split are read into memory.
uint8 images are held as uint8 pixels and seen / 255, as an image folder's (`pixel_scale`); other x as float32.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from netkiln.errors import NetkilnError, did_you_mean
from netkiln.memory import check_fits
from netkiln.task import Task

from .config import get_choice
from .sources import RawSource, SourceSpec, register_source
from .tables import check_file

NPZ_KEYS = ("path", "layout", "channels", "task", "keys")
ARRAY_NAMES = ("x", "y", "x_test", "y_test")
LAYOUT_CHOICES = ("auto", "flat", "sequence", "image")
RANK_LAYOUT = {2: "flat", 3: "sequence", 4: "image"}
MAX_CLASS_VALUES = 20


def _open_npz(p, key: str) -> dict[str, np.ndarray]:
    import zipfile

    with open(p, "rb") as fh:
        magic = fh.read(6)
    if not (magic.startswith(b"PK") or magic.startswith(b"\x93NUMPY")):
        raise NetkilnError("not a readable .npz file (it is not a zip archive of arrays as np.savez writes)",
                           key=key, file=str(p))
    try:
        z = np.load(p, allow_pickle=False)
        if not hasattr(z, "files"):
            raise NetkilnError("expected an .npz archive of named arrays (np.savez(path, x=..., y=...)), "
                               "not a single .npy array; for .npy files, give the folder that holds x.npy and "
                               "y.npy", key=key, file=str(p))
        with z:
            # A small compressed file can declare arrays of any size: check what the headers declare first.
            check_fits(_declared_bytes(z) * 2, "the arrays its headers declare", key=key, file=str(p))
            return {name: z[name] for name in z.files}
    except NetkilnError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise NetkilnError("an array holds Python objects; save numbers (or fixed-width text labels) instead "
                               "of object arrays", key=key, file=str(p)) from None
        raise NetkilnError(f"not a readable .npz file: {err}", key=key, file=str(p)) from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise NetkilnError(f"not a readable .npz file ({type(err).__name__}: {err})", key=key, file=str(p)) from None


def _open_npy_folder(folder, key: str) -> dict[str, np.ndarray]:
    """The folder's .npy files by name (x.npy → "x"), memory-mapped read-only: nothing is read until used."""
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix == ".npy")
    if not files:
        raise NetkilnError("no .npy files in this folder; save the arrays with np.save(folder / 'x.npy', x) and "
                           "y.npy (optionally x_test.npy, y_test.npy), or give an .npz file", key=key,
                           file=str(folder))
    arrays = {}
    for f in files:
        try:
            arrays[f.stem] = np.load(f, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            what = ("it holds Python objects; save numbers (or fixed-width text labels) instead of object arrays"
                    if "object" in str(err).lower() or "pickle" in str(err).lower() else
                    f"not a readable .npy file, or one cut short ({err})")
            raise NetkilnError(what, key=key, file=str(f)) from None
        except OSError as err:
            raise NetkilnError(f"cannot read this .npy file ({type(err).__name__}: {err})", key=key,
                               file=str(f)) from None
    return arrays


def _declared_bytes(npz) -> int:
    """The bytes the archive's arrays declare in their .npy headers, read without reading any array."""
    from numpy.lib import format as npformat

    total = 0
    for name in npz.files:
        with npz.zip.open(name + ".npy") as fh:
            version = npformat.read_magic(fh)
            read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, _, dtype = read(fh)
        total += math.prod(shape) * dtype.itemsize
    return total


def _shape(a: np.ndarray) -> str:
    return "(" + ", ".join(str(s) for s in a.shape) + ("," if a.ndim == 1 else "") + ")"


def to_layout(x: np.ndarray, layout: str, channels: str, name: str, key: str, file: str) -> tuple[np.ndarray, dict]:
    """x in the model's layout plus the transform that got it there (saved for predict)."""
    r = x.ndim
    transform = {"add_axis": None, "channels_last": False}
    if layout == "flat":
        if r != 2:
            raise NetkilnError(f"layout flat needs {name} of shape (N, F), got {_shape(x)}", key=key, file=file)
    elif layout == "sequence":
        if r == 2:
            x, transform["add_axis"] = x[:, :, None], 2
        elif r != 3:
            raise NetkilnError(f"layout sequence needs {name} of shape (N, T, F) or (N, T), got {_shape(x)}",
                               key=key, file=file)
    else:
        if r == 3:
            x, transform["add_axis"] = x[:, None, :, :], 1
        elif r == 4:
            last = channels == "last" or (channels == "auto" and x.shape[1] > 4 and x.shape[3] <= 4)
            if last:
                x, transform["channels_last"] = np.transpose(x, (0, 3, 1, 2)), True
        else:
            raise NetkilnError(f"layout image needs {name} of shape (N, C, H, W), (N, H, W, C) or (N, H, W), "
                               f"got {_shape(x)}", key=key, file=file)
    return x, transform


def apply_transform(x: np.ndarray, t: dict) -> np.ndarray:
    if t.get("add_axis") is not None:
        x = np.expand_dims(x, int(t["add_axis"]))
    if t.get("channels_last"):
        x = np.transpose(x, (0, 3, 1, 2))
    return x


def _non_finite_rows(x: np.ndarray, step: int = 65536) -> np.ndarray:
    """Which rows hold a NaN or an infinity, a slice at a time (a memory-mapped x is never read in whole)."""
    flags = [~np.isfinite(x[i:i + step]).reshape(min(step, len(x) - i), -1).all(axis=1)
             for i in range(0, len(x), step)]
    return np.concatenate(flags) if flags else np.zeros(0, dtype=bool)


def _classes(y: np.ndarray) -> tuple[list, list[str]]:
    uniq = np.unique(y)
    values = [v.item() if hasattr(v, "item") else v for v in uniq]
    return values, [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in values]


def load_npz(node: dict, path: str) -> RawSource:
    key = f"{path}.path"
    folder = isinstance(node.get("path"), str) and Path(node["path"]).expanduser().is_dir()
    p = check_file(node.get("path"), key, kind="folder" if folder else "file")
    file = str(p)
    arrays = _open_npy_folder(p, key) if folder else _open_npz(p, key)
    names = dict(zip(ARRAY_NAMES, ARRAY_NAMES))
    overrides = node.get("keys") or {}
    if not isinstance(overrides, dict):
        raise NetkilnError(f"expected a mapping such as {{x: features, y: labels}}, got {overrides!r}",
                           key=f"{path}.keys")
    for k, v in overrides.items():
        if k not in ARRAY_NAMES:
            raise NetkilnError(f"unknown array role {k!r}.{did_you_mean(str(k), ARRAY_NAMES)} Roles: "
                               f"{', '.join(ARRAY_NAMES)}.", key=f"{path}.keys.{k}")
        names[k] = str(v)
    for role in ("x", "y"):
        if names[role] not in arrays:
            raise NetkilnError(f"no array named {names[role]!r}.{did_you_mean(names[role], arrays)} The file has: "
                               f"{', '.join(sorted(arrays)) or 'no arrays'}. Save x and y (and optionally x_test, "
                               f"y_test) or map the names with {path}.keys.{role}=<name>", key=key, file=file)
    has_test = [names[r] in arrays for r in ("x_test", "y_test")]
    if any(has_test) and not all(has_test):
        have, lack = ("x_test", "y_test") if has_test[0] else ("y_test", "x_test")
        raise NetkilnError(f"the file has {names[have]!r} but no {names[lack]!r}; a test set needs both",
                           key=key, file=file)
    x, y = arrays[names["x"]], arrays[names["y"]]
    x_test = arrays[names["x_test"]] if all(has_test) else None
    y_test = arrays[names["y_test"]] if all(has_test) else None

    if x.ndim < 2 or x.ndim > 4:
        raise NetkilnError(f"array {names['x']!r} has shape {_shape(x)}; expected one row per example: (N, F) "
                           "features, (N, T) or (N, T, F) sequences, (N, C, H, W) or (N, H, W) images",
                           key=key, file=file)
    for name, a in ((names["x"], x), (names["x_test"], x_test)):
        if a is not None and not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise NetkilnError(f"array {name!r} holds {a.dtype} values; x must be numeric", key=key, file=file)
    layout = get_choice(node, "layout", "auto", LAYOUT_CHOICES, path)
    layout = RANK_LAYOUT[x.ndim] if layout == "auto" else layout
    channels = get_choice(node, "channels", "auto", ("auto", "first", "last"), path)
    raw_shape = list(x.shape[1:])
    x, transform = to_layout(x, layout, channels, names["x"], key, file)
    if x_test is not None:
        if list(x_test.shape[1:]) != raw_shape:
            raise NetkilnError(f"{names['x_test']!r} rows have shape {tuple(x_test.shape[1:])} but "
                               f"{names['x']!r} rows have {tuple(raw_shape)}", key=key, file=file)
        x_test = apply_transform(x_test, transform)

    for xn, yn, xa, ya in ((names["x"], names["y"], x, y), (names["x_test"], names["y_test"], x_test, y_test)):
        if xa is None:
            continue
        if ya.ndim == 0 or ya.ndim > 2 or len(ya) != len(xa):
            raise NetkilnError(f"{yn!r} has shape {_shape(ya)} but {xn!r} has {len(xa)} rows; expected ({len(xa)},)"
                               f" labels or ({len(xa)}, k) regression targets", key=key, file=file)
        bad = _non_finite_rows(xa)
        if bad.any():
            raise NetkilnError(f"array {xn!r} has NaN or infinite values (first in row {int(np.flatnonzero(bad)[0])}"
                               f", {int(bad.sum())} rows in all); clean them before saving", key=key, file=file)

    task_choice = get_choice(node, "task", "auto", ("auto", "classification", "multiclass", "binary", "regression"),
                             path)
    y, y_test, task, target = _target(y, y_test, task_choice, names, path, file)
    prep = {"kind": "arrays", "format": 1, "layout": layout, "raw_shape": raw_shape,
            "input_shape": list(x.shape[1:]), "transform": transform, "target": target, "task": task.to_dict()}
    # uint8 images are pixels, as an image folder's: held as uint8 (a quarter of float32's bytes), each batch scaled
    # by 1 / 255 on its device (dataset.PixelsToFloat); the saved pixel_scale makes predict scale its input alike.
    pixels = layout == "image" and x.dtype == np.uint8 and (x_test is None or x_test.dtype == np.uint8)
    if pixels:
        prep["pixel_scale"] = 255.0
    dtype = np.uint8 if pixels else np.float32
    info = {"source": "file", "file": file, "format": "npy folder" if folder else "npz",
            "rows": int(len(x) + (len(x_test) if x_test is not None else 0)),
            "arrays": {n: list(a.shape) for n, a in arrays.items()},
            "description": f"{p.name}: {layout} {tuple(x.shape[1:])}"}
    # np.asarray, not astype: float32 (and uint8) memory maps stay maps, and the split reads only its rows.
    return RawSource(x=np.asarray(x, dtype=dtype), y=y, task=task, layout=layout,
                     x_test=None if x_test is None else np.asarray(x_test, dtype=dtype), y_test=y_test, info=info,
                     preprocessing=prep, ignores_split_test=True)


def _target(y: np.ndarray, y_test: np.ndarray | None, choice: str, names: dict, path: str, file: str):
    numeric = np.issubdtype(y.dtype, np.number) or y.dtype == bool
    if not numeric and not np.issubdtype(y.dtype, np.str_) and not np.issubdtype(y.dtype, np.bytes_):
        raise NetkilnError(f"array {names['y']!r} holds {y.dtype} values", key=f"{path}.path", file=file)
    if y.dtype.kind in "SU" and y_test is not None and y_test.dtype.kind not in "SU":
        raise NetkilnError(f"{names['y']!r} holds text labels but {names['y_test']!r} does not", key=f"{path}.path",
                           file=file)
    squeezed = y.reshape(len(y)) if (y.ndim == 1 or y.shape[1] == 1) else None
    task = choice
    if task == "auto":
        if squeezed is None:
            task = "regression"
        elif y.dtype == bool or y.dtype.kind in "SU":
            task = "classification"
        elif np.issubdtype(y.dtype, np.integer) and len(np.unique(squeezed)) <= MAX_CLASS_VALUES:
            task = "classification"
        else:
            task = "regression"
    if task == "regression":
        if not numeric or y.dtype == bool:
            raise NetkilnError(f"regression needs numeric targets, but {names['y']!r} holds {y.dtype} values",
                               key=f"{path}.task", file=file)
        y2 = y.reshape(len(y), -1).astype(np.float32)
        if not np.isfinite(y2).all():
            raise NetkilnError(f"{names['y']!r} has NaN or infinite values", key=f"{path}.path", file=file)
        yt = None if y_test is None else y_test.reshape(len(y_test), -1).astype(np.float32)
        if yt is not None and yt.shape[1] != y2.shape[1]:
            raise NetkilnError(f"{names['y_test']!r} has {yt.shape[1]} targets per row but {names['y']!r} has "
                               f"{y2.shape[1]}", key=f"{path}.path", file=file)
        return y2, yt, Task("regression", y2.shape[1]), {"task": "regression"}
    if squeezed is None:
        raise NetkilnError(f"classification needs one label per row, but {names['y']!r} has shape "
                           f"{_shape(y)}", key=f"{path}.task", file=file)
    values, class_names = _classes(squeezed)
    if len(values) < 2:
        raise NetkilnError(f"{names['y']!r} has a single class ({class_names[0]!r}); a classifier needs at least two",
                           key=f"{path}.path", file=file)
    if task == "binary" and len(values) != 2:
        raise NetkilnError(f"task binary needs exactly 2 classes, but {names['y']!r} has {len(values)}",
                           key=f"{path}.task", file=file)
    lookup = {v: i for i, v in enumerate(np.unique(squeezed).tolist())}
    codes = np.searchsorted(np.unique(squeezed), squeezed).astype(np.int64)
    yt = None
    if y_test is not None:
        flat = y_test.reshape(len(y_test)) if (y_test.ndim == 1 or y_test.shape[1] == 1) else None
        if flat is None:
            raise NetkilnError(f"{names['y_test']!r} must have one label per row, got shape {_shape(y_test)}",
                               key=f"{path}.path", file=file)
        unknown = [v for v in np.unique(flat).tolist() if v not in lookup]
        if unknown:
            raise NetkilnError(f"{names['y_test']!r} has class {unknown[0]!r}, which {names['y']!r} does not have",
                               key=f"{path}.path", file=file)
        yt = np.array([lookup[v] for v in flat.tolist()], dtype=np.int64)
    kind = "binary" if (task == "binary" or (task == "classification" and len(values) == 2)) else "multiclass"
    t = Task(kind, 1 if kind == "binary" else len(values), tuple(class_names))
    values = [v.decode() if isinstance(v, bytes) else v for v in values]
    return codes, yt, t, {"task": kind, "class_names": class_names, "class_values": values}


register_source(SourceSpec("npz", load_npz, extra_keys=NPZ_KEYS, standardize=True,
                           description="your own arrays: an .npz file with x and y (data.path)"))
