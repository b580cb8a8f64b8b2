"""`data=images`: a folder with one sub-folder of PNG/JPEG files per class, loaded with Pillow.

Images are converted to grayscale or RGB and resized to `data.image_size`; x is (N, C, H, W) uint8 pixels, a
quarter of the memory of float32: each batch is scaled to [0, 1] on the training device (dataset.PixelsToFloat).
A folder whose pixels do not fit `data.memory_budget` (`data.streaming`) is only listed: x is then ImageRows, the
files decoded batch by batch by DataLoader workers (data/image_stream.py, training/image_batches.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netkiln.config_values import is_positive_int
from netkiln.errors import NetkilnError
from netkiln.memory import check_fits

from .config import get_choice
from .sources import RawSource, SourceSpec, register_source
from .tables import check_file
from netkiln.task import Task

IMAGE_KEYS = ("path", "image_size", "color", "test_path", "streaming", "memory_budget", "workers")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
COLORS = ("grayscale", "rgb")


def _image_size(node: dict, path: str) -> tuple[int, int]:
    v = node.get("image_size", [32, 32])
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v, v]
    if (not isinstance(v, list) or len(v) != 2
            or not all(is_positive_int(s) for s in v)):
        raise NetkilnError(f"expected [height, width] in pixels (or one number for square images), got {v!r}",
                           key=f"{path}.image_size")
    return int(v[0]), int(v[1])


def class_folders(root: Path, key: str) -> dict[str, list[Path]]:
    """{class name: sorted image files}, classes in name order; errors for a folder without classes."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = [f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not subdirs:
        extra = (f"; it holds {len(loose)} image file(s) directly" if loose else "")
        raise NetkilnError(f"no class sub-folders in this folder{extra}. Put each class's images in a sub-folder "
                           "named after the class (e.g. cats/, dogs/)", key=key, file=str(root))
    out = {}
    for d in subdirs:
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in f.relative_to(d).parts))
        if not files:
            raise NetkilnError(f"the class folder '{d.name}' has no images ({', '.join(IMAGE_SUFFIXES)})", key=key,
                               file=str(d))
        out[d.name] = files
    return out


def decode_image(f: Any, size: tuple[int, int], color: str, key: str | None = None) -> np.ndarray:
    """One image → uint8 (C, H, W) pixels; an unreadable file raises a NetkilnError naming it."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        # A small file can declare a huge image (a decompression bomb): Pillow warns above MAX_IMAGE_PIXELS and
        # refuses above twice that; both are refused here, before the pixels are decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = f if isinstance(f, Image.Image) else Image.open(f)
            img.load()
        img = img.convert("L" if color == "grayscale" else "RGB")
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        a = np.asarray(img, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NetkilnError(f"cannot read this image: it declares more than {Image.MAX_IMAGE_PIXELS:,} pixels "
                           "(a decompression bomb, or a picture to shrink before training)", key=key,
                           file=str(f)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise NetkilnError(f"cannot read this image ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
                           .replace(": )", ")"), key=key, file=str(f)) from None
    return a[None, :, :] if a.ndim == 2 else np.transpose(a, (2, 0, 1))


def load_image(f: Any, size: tuple[int, int], color: str, key: str | None = None) -> np.ndarray:
    """One image → float32 (C, H, W) in [0, 1] (for predictions; training data keeps the uint8 pixels)."""
    return decode_image(f, size, color, key).astype(np.float32) / 255.0


def _load_folder(root: Path, size, color, key, classes: list[str] | None = None):
    folders = class_folders(root, key)
    classes = _check_classes(folders, classes, root, key)
    count = sum(len(paths) for paths in folders.values())
    channels = 1 if color == "grayscale" else 3
    # uint8 pixels, decoded straight into one array (no list of images to stack).
    check_fits(count * channels * size[0] * size[1], f"{count:,} images of {size[0]}x{size[1]} pixels",
               key=key.rsplit(".", 1)[0] + ".image_size", advice="choose a smaller image_size")
    x = np.empty((count, channels, size[0], size[1]), dtype=np.uint8)
    ys, files = [], []
    for name, paths in folders.items():
        c = classes.index(name)
        for f in paths:
            x[len(ys)] = decode_image(f, size, color, key)
            ys.append(c)
            files.append(str(f.relative_to(root)))
    return x, np.asarray(ys, dtype=np.int64), classes, files


def _list_folder(root: Path, size, color, key, classes: list[str] | None = None):
    """_load_folder without decoding (data.streaming): the files as ImageRows (data/image_stream.py) and labels."""
    from .image_stream import ImageRows

    folders = class_folders(root, key)
    classes = _check_classes(folders, classes, root, key)
    ys, files = [], []
    for name, paths in folders.items():
        ys += [classes.index(name)] * len(paths)
        files += [str(f) for f in paths]
    rows = ImageRows(tuple(files), np.arange(len(files)), size, color, key)
    return rows, np.asarray(ys, dtype=np.int64), classes, [str(Path(f).relative_to(root)) for f in files]


def _check_classes(folders: dict, classes: list[str] | None, root: Path, key: str) -> list[str]:
    if classes is None:
        classes = list(folders)
        if len(classes) < 2:
            raise NetkilnError(f"only one class sub-folder ('{classes[0]}'); a classifier needs at least two",
                               key=key, file=str(root))
    else:
        unknown = [c for c in folders if c not in classes]
        if unknown:
            raise NetkilnError(f"the test folder has the class '{unknown[0]}', which the training folder does not "
                               f"have (classes: {', '.join(classes)})", key=key, file=str(root / unknown[0]))
    return classes


def _streams(node: dict, path: str, root: Path, size, color) -> tuple[bool, dict]:
    """data.streaming for this folder (streaming.decide: the choice and why are logged), and what is recorded."""
    from .image_stream import IN_MEMORY_FACTOR, workers_of
    from .streaming import decide

    count = sum(len(p) for p in class_folders(root, f"{path}.path").values())
    if node.get("test_path") is not None:
        troot = check_file(node.get("test_path"), f"{path}.test_path", kind="folder")
        count += sum(len(p) for p in class_folders(troot, f"{path}.test_path").values())
    pixels = count * (1 if color == "grayscale" else 3) * size[0] * size[1]
    workers = workers_of(node, path)
    stream, budget, why = decide(node, path, IN_MEMORY_FACTOR * pixels, "the images",
                                 f"{count:,} images' uint8 pixels and their split copies")
    if stream:          # streamed, a batch of images is decoded at a time: one must fit, at least
        channels = 1 if color == "grayscale" else 3
        check_fits(channels * size[0] * size[1], f"an image of {size[0]}x{size[1]} pixels", key=f"{path}.image_size",
                   advice="choose a smaller image_size")
    return stream, {"budget_bytes": budget, "reason": why, "workers": workers}


def load_images(node: dict, path: str) -> RawSource:
    key = f"{path}.path"
    root = check_file(node.get("path"), key, kind="folder")
    size = _image_size(node, path)
    color = get_choice(node, "color", "rgb", COLORS, path)
    stream, streaming = _streams(node, path, root, size, color)
    load = _list_folder if stream else _load_folder
    x, y, classes, files = load(root, size, color, key)
    x_test = y_test = None
    info: dict[str, Any] = {"source": "file", "folder": str(root), "format": "images", "rows": int(len(x)),
                            "files": files, "description": f"{root.name}: {len(classes)} classes, {color} images "
                                                           f"{size[0]}x{size[1]}"}
    if node.get("test_path") is not None:
        troot = check_file(node.get("test_path"), f"{path}.test_path", kind="folder")
        x_test, y_test, _, tfiles = load(troot, size, color, f"{path}.test_path", classes)
        info.update({"test_folder": str(troot), "test_files": tfiles, "rows": int(len(x) + len(x_test))})
    info["split_indices_note"] = "indices into source_info.files (class folders in name order, files in name order)"
    if stream:      # decoded per batch in DataLoader workers (training/image_batches.py)
        info["streaming"] = streaming
    kind = "binary" if len(classes) == 2 else "multiclass"
    task = Task(kind, 1 if kind == "binary" else len(classes), tuple(classes))
    prep = {"kind": "images", "format": 1, "layout": "image", "image_size": list(size), "color": color,
            "pixel_scale": 255.0, "input_shape": list(x.shape[1:]),
            "target": {"task": kind, "class_names": classes, "class_values": classes}, "task": task.to_dict()}
    return RawSource(x=x, y=y, task=task, layout="image", x_test=x_test, y_test=y_test, info=info,
                     preprocessing=prep, ignores_split_test=True)


register_source(SourceSpec("images", load_images, extra_keys=IMAGE_KEYS, standardize=False,
                           description="your own images: one sub-folder per class (data.path)"))
