"""Preparation kinds: how a source's raw rows became the network's input, one class per kind.

A kind (a table's columns, arrays, images, text) is fitted on the training rows only (`fit`, called by its source's
`prepare` or by `load_dataset`), built from the JSON saved with the model (`from_json`, the fitted steps of
`Dataset.preprocessing` / a bundle's preprocessing.json), gives it back (`to_json`) and answers what train,
evaluate, predict and export ask: apply the fitted steps to new raw input (`apply`), which input files it reads,
the checks of its saved JSON (`check_json`), what an exported graph can embed. Callers get the object from
`preparation_for(steps)` (the class: `preparation_class(steps)`) and never test a kind by its name; a new source
registers its kind here with `@register_preparation`.

The built-in sources save no kind (their steps are a standardisation at most): `PlainPreparation`, kind None.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netkiln.errors import NetkilnError, did_you_mean

from . import json_checks as check

PREPARATIONS: dict[str | None, type["Preparation"]] = {}


def register_preparation(cls: type["Preparation"]) -> type["Preparation"]:
    PREPARATIONS[cls.kind] = cls
    return cls


def fitted_steps(preprocessing: dict) -> dict:
    """The fitted steps: a bundle's preprocessing.json keeps them under "preparation", beside the input schema
    (layout, input_shape, feature_names), which is merged in; `Dataset.preprocessing` is returned as it is."""
    steps = preprocessing.get("preparation")
    if not isinstance(steps, dict):
        return preprocessing
    schema = {k: preprocessing[k] for k in ("input_shape", "layout", "feature_names")
              if preprocessing.get(k) is not None}
    return {**schema, **steps}


def preparation_for(preprocessing: dict, *, input_shape: Any = None, layout: str | None = None,
                    feature_names: list | None = None) -> "Preparation":
    """The preparation object of saved steps (`Dataset.preprocessing`, a bundle's preprocessing.json whole, or its
    "preparation" entry); the input schema, when the steps lack it, comes from the keyword arguments."""
    if not isinstance(preprocessing, dict):
        raise TypeError("preprocessing must be the dict saved with the dataset")
    steps = fitted_steps(preprocessing)
    return preparation_class(steps).from_json(steps, input_shape=input_shape, layout=layout,
                                              feature_names=feature_names)


def preparation_class(steps: dict) -> type["Preparation"]:
    """The registered kind of steps (a source's `RawSource.preprocessing`, or fitted steps)."""
    kind = steps.get("kind")
    cls = PREPARATIONS.get(kind)
    if cls is None:
        raise NetkilnError(f"unknown preprocessing kind {kind!r} (saved by a newer netkiln?)")
    return cls


def check_input_columns(have: list[str], need: list[str], *, ignore: Any = (), allow_extra: bool = False) -> None:
    """The input's columns against those the model was trained on: every one present (a missing one named with a
    did-you-mean), no other column unless `allow_extra` (columns in `ignore`, e.g. targets, are never extra)."""
    have_set, need_set, ignore = set(have), set(need), set(ignore)      # sets: linear in the number of columns
    missing = [c for c in need if c not in have_set]
    extra = [c for c in have if c not in need_set and c not in ignore]
    if missing:
        hints = "".join(did_you_mean(m, extra) for m in missing[:3])
        raise NetkilnError(f"the input lacks the column{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(repr(m) for m in missing[:10])}{' ...' if len(missing) > 10 else ''} that "
                           f"the model was trained on.{hints} Expected columns: {', '.join(need)}.",
                           column=missing[0])
    if extra and not allow_extra:
        raise NetkilnError(f"the input has column{'s' if len(extra) > 1 else ''} the model was not trained on: "
                           f"{', '.join(repr(e) for e in extra[:10])}{' ...' if len(extra) > 10 else ''}; "
                           f"remove {'them' if len(extra) > 1 else 'it'} or allow extra columns", column=extra[0])


def is_frame(data: Any) -> bool:
    """A pandas DataFrame, without importing pandas for array input."""
    import sys
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(data, pd.DataFrame)


class Preparation:
    """The base of every kind: the fitted steps (`steps`) and the input schema they produce."""

    kind: str | None = None
    trained_on = "arrays"           # how messages name the training input ("this model was trained on ...")
    reads_tables = True             # a table (.csv/.tsv/.parquet, a DataFrame) can be predicted
    reads_arrays = True             # arrays (.npz/.npy, numpy, torch) can be predicted
    reads_lines = False             # a list of strings (a .txt file, one a line): texts
    reads_images = False            # image files (one, a folder of them, a .txt list of their paths)
    labelled_tables = False         # evaluate takes another labelled table (inputs and target columns)
    has_categories = False          # unknown_categories and flag_unknown apply
    export_dtype = "float32"        # what an exported graph takes

    def __init__(self, steps: dict, *, input_shape: Any = None, layout: str | None = None,
                 feature_names: list | None = None):
        self.steps = steps
        shape = steps.get("input_shape", input_shape)
        self.input_shape = tuple(int(s) for s in shape) if shape is not None else None
        self.layout = steps.get("layout", layout)
        self.feature_names = steps.get("feature_names", feature_names)

    @classmethod
    def fit(cls, train: Any, *args: Any, **kwargs: Any) -> "Preparation":
        """The kind fitted on the training rows `train` only (the arguments after them are the kind's own:
        what its source read and the data config asks); the fitted object's `to_json` is what is saved."""
        raise NotImplementedError

    def apply_to_split(self, x: np.ndarray) -> np.ndarray:
        """Training's own rows, already read into the input shape by the source (load_dataset's train, val and
        test): the fitted steps without the checks of new input. Kinds whose source prepares its own rows (a
        table's, with its unknown-categories policy) need none."""
        raise NotImplementedError

    @classmethod
    def from_json(cls, steps: dict, **schema: Any) -> "Preparation":
        return cls(steps, **schema)

    def to_json(self) -> dict:
        return dict(self.steps)

    @classmethod
    def check_json(cls, p: dict, layout: str, shape: tuple, config: dict) -> None:
        """A bundle's saved steps of this kind, beyond what every kind shares (input shape, standardisation,
        target): raises json_checks.BadEntry."""

    # ------------------------------------------------------------------------------------------------ applying
    def apply(self, data: Any, *, allow_extra: bool = False, unknown_categories: str | None = None,
              unseen: list | None = None, first_row: int = 0) -> np.ndarray:
        """New raw input → float32 array shaped (N, *input_shape), as the network saw training's rows.
        `first_row` numbers the rows in messages (a chunk of a file)."""
        raise NotImplementedError

    def input_columns(self) -> list[str]:
        """The columns a table input must have (before one-hot encoding etc.); [] when it takes no table."""
        return list(self.feature_names or []) if self.reads_tables else []

    def file_refusal(self, holds: str) -> str | None:
        """Why input that `holds` "table", "arrays" or "lines" cannot be predicted, or None when it can."""
        if holds == "table" and not self.reads_tables:
            return (f"this model takes {self.layout} input of shape {self.input_shape}, which a table cannot hold; "
                    "give an .npz or .npy file with rows of that shape")
        if (holds == "arrays" and not self.reads_arrays) or (holds == "lines" and not self.reads_lines):
            return f"this model was trained on {self.trained_on}; give {self.table_hint()}"
        if holds == "images" and not self.reads_images:
            return (f"image files need a model trained on images (data=images); this model was trained on "
                    f"{self.trained_on}: give {self.table_hint()}")
        return None

    def table_hint(self) -> str:
        return "the rows as a .csv or .parquet file"

    def other_data(self, node: dict) -> dict:
        """`evaluate data=...` on other data read by its source: the data config, changed so that the source
        reads it as training did, but fits nothing (the saved steps are applied instead)."""
        return {**node, "standardize": False}

    # ------------------------------------------------------------------------------------------------ evaluate
    examples_name = "example"       # the column of mistakes.csv that shows a row's raw example

    def examples_of_source(self, raw, split_indices: dict, splits: tuple) -> list | None:
        """The raw examples (texts) of the rows of `splits`, in order, from the source that was loaded again
        (`RawSource`), when showing them helps (evaluate's mistakes.csv); None otherwise."""
        return None

    def examples_of_table(self, frame) -> list | None:
        """The raw examples of a labelled table's rows, as `examples_of_source`."""
        return None

    @property
    def target_columns(self) -> list[str]:
        """The columns of a labelled table that hold the true values (as the training data named them)."""
        return [str(c) for c in (self.steps.get("target") or {}).get("columns", [])]

    def read_labelled(self, node: dict, path: str = "data"):
        """Other labelled data of a `labelled_tables` kind, for evaluate: (a DataFrame with the input columns and
        `target_columns`, the data's name); here a table file read whole, `{path}.filter` applied."""
        from .tables import read_table_source
        from .tabular import filter_rows

        frame, tf = read_table_source(node.get("path"), format=node.get("format", "auto"),
                                      delimiter=node.get("delimiter"), key=f"{path}.path")
        return filter_rows(frame, node.get("filter"), tf, path), tf.path.name

    # ------------------------------------------------------------------------------------------------ analyze
    def analysis(self, raw, ds, warnings: list[str]) -> dict | None:
        """`netkiln analyze`'s report section(s) of this kind, from the source (`RawSource`) and the split dataset,
        or None for the generic ones (a table's columns, arrays' per-feature statistics)."""
        return None

    def row_hashes(self, raw, ds) -> dict | None:
        """{split: one hash per row} for analyze's duplicate search when the kind's raw rows say more than the
        prepared x (None: analyze hashes the table's raw values or x)."""
        return None

    # ------------------------------------------------------------------------------------------------ export
    def embeddable_standardize(self) -> dict | None:
        """The standardisation an exported graph can apply itself (None when there is none); an error when the
        preparation has steps a graph cannot hold."""
        raise NetkilnError("only a standardisation can be embedded in the exported graph; this model's preparation "
                           "has other steps (see the sidecar JSON), so export with embed_preparation=false",
                           key="embed_preparation")

    def export_note(self, embedded: bool) -> str:
        """What the sidecar tells a user about feeding the exported graph."""
        if embedded:
            return "the graph applies the saved standardisation itself: feed raw values"
        return ("feed prepared values: apply `preparation` first (netkiln predict does this), e.g. "
                "standardize: (x - mean) / std along feature_axis")

    def vocabulary_json(self) -> dict | None:
        """A text kind's {token: id}, exported beside the graph; None for kinds without tokens."""
        return None

    def example_inputs(self, n: int, seed: int = 0, raw: bool = False):
        """Deterministic inputs shaped like the model's (an export's trace and check): N(0, 1) in prepared space,
        mapped back to raw values if asked."""
        import torch

        g = torch.Generator().manual_seed(seed)
        x = torch.randn((n, *self.input_shape), generator=g)
        stats = self.steps.get("standardize")
        if raw and stats is not None:
            axis = int(stats["feature_axis"])
            shape = [1] * (len(self.input_shape) + 1)
            shape[axis + 1] = -1
            x = x * torch.tensor(stats["std"], dtype=torch.float32).reshape(shape) \
                + torch.tensor(stats["mean"], dtype=torch.float32).reshape(shape)
        return x


class _ArrayLike(Preparation):
    """Kinds whose input is numbers shaped like the model's rows: an array, or a table of the flat features."""

    embeddable_keys = frozenset({"standardize", "kind", "format", "layout", "input_shape", "feature_names",
                                 "raw_shape", "transform", "target_scale", "target", "task"})

    @property
    def reads_tables(self) -> bool:          # a table holds flat rows with named features only
        return self.layout == "flat" and bool(self.feature_names)

    def accepted_shapes(self) -> list[tuple]:
        return [self.input_shape] if self.input_shape is not None else []

    @classmethod
    def fit(cls, x_train: np.ndarray, steps: dict, *, layout: str, standardize: bool) -> "_ArrayLike":
        """The source's own steps (`RawSource.preprocessing`: how it read the rows), plus the standardisation
        fitted on the training rows when the data config asks for it."""
        steps = dict(steps)
        if standardize:
            from .preprocess import fit_standardize
            steps["standardize"] = fit_standardize(cls._as_floats(x_train), layout)
        return cls(steps, layout=layout)

    @staticmethod
    def _as_floats(x: np.ndarray) -> np.ndarray:
        """The training rows as the network sees them before standardisation: uint8 pixels (images, uint8 image
        arrays) are seen / 255 (dataset.PixelsToFloat), so the statistics are fitted on those floats."""
        return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x

    def apply_to_split(self, x: np.ndarray) -> np.ndarray:
        if "standardize" not in self.steps or x.dtype == np.uint8:    # pixels: standardised per batch, after / 255
            return x
        from .preprocess import apply_standardize
        return apply_standardize(x, self.steps["standardize"])

    def apply(self, data: Any, *, allow_extra: bool = False, unknown_categories: str | None = None,
              unseen: list | None = None, first_row: int = 0) -> np.ndarray:
        x = self._from_table(data, allow_extra) if is_frame(data) else self._array(data)
        x = self._to_input(x)
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite)) + first_row
            raise NetkilnError(f"data row {row} has a missing, NaN or infinite value; the model needs every input "
                               "value")
        return self.apply_to_split(x)

    def _array(self, data: Any) -> np.ndarray:
        try:
            return np.asarray(data.detach().cpu().numpy() if hasattr(data, "detach") else data, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise NetkilnError(f"expected numeric arrays, got {type(data).__name__}: {err}") from None

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        """Rows in an accepted shape → the model's input shape."""
        accepted = self.accepted_shapes()
        if x.ndim < 2 or (accepted and tuple(x.shape[1:]) not in accepted):
            shown = " or ".join(str(s) for s in dict.fromkeys(accepted)) or "(features...)"
            raise NetkilnError(f"expected rows of shape {shown} (N rows first), got an array of shape {x.shape}")
        return x

    def _from_table(self, frame, allow_extra: bool) -> np.ndarray:
        """A table for a model trained on flat arrays with named features: the saved feature columns in order."""
        import pandas as pd

        if not self.reads_tables:
            raise NetkilnError(self.file_refusal("table"))
        names = list(self.feature_names)
        check_input_columns([str(c) for c in frame.columns], names, allow_extra=allow_extra)
        sub = frame[names]
        for col in names:
            if not np.issubdtype(sub[col].dtype, np.number):
                values = sub[col]
                bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
                row = int(bad.index[0]) if len(bad) else None
                raise NetkilnError(f"expected numbers, found {bad.iloc[0]!r}"
                                   + (f" in data row {row}" if row is not None else ""), column=col)
        return sub.to_numpy(dtype=np.float32)

    def embeddable_standardize(self) -> dict | None:
        if set(self.steps) - self.embeddable_keys:
            super().embeddable_standardize()
        raw = self.steps.get("raw_shape")
        if raw and list(raw) != list(self.input_shape):
            raise NetkilnError("the model's input was reshaped from the raw arrays; embedding the preparation would "
                               "hide that, so export with embed_preparation=false", key="embed_preparation")
        return self.steps.get("standardize")


@register_preparation
class PlainPreparation(_ArrayLike):
    """The built-in sources' rows (scikit-learn's, mnist1d, synthetic): a standardisation at most."""

    kind = None
    known_steps = frozenset({"standardize", "kind", "format", "target_scale", "input_shape", "layout",
                             "feature_names"})

    def apply(self, data: Any, **options: Any) -> np.ndarray:
        unknown = sorted(set(self.steps) - self.known_steps)
        if unknown:
            raise NetkilnError(f"the bundle's preparation has steps this netkiln cannot apply ({', '.join(unknown)})",
                               key="run")
        return super().apply(data, **options)


@register_preparation
class ArraysPreparation(_ArrayLike):
    """An .npz file's x rows (data=npz): reshaped into the layout (`transform`), then standardised. uint8 image
    arrays are pixels (`pixel_scale`), held as uint8 and seen / 255 as image folders are; predict scales alike."""

    kind = "arrays"

    def _array(self, data: Any) -> np.ndarray:
        scale = self.steps.get("pixel_scale")          # uint8 image arrays: trained on pixels / 255
        if scale is None:
            return super()._array(data)
        from .pixel_inputs import scale_pixels
        x = np.asarray(data.detach().cpu().numpy() if hasattr(data, "detach") else data)
        if x.dtype.kind not in "biuf":
            return super()._array(x)                    # its error
        told = self.__dict__.setdefault("_told_integers", [])      # log the scaling once, not every chunk
        return scale_pixels(x, float(scale), told)

    def accepted_shapes(self) -> list[tuple]:
        raw = self.steps.get("raw_shape")
        return super().accepted_shapes() + ([tuple(raw)] if raw else [])

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        x = super()._to_input(x)
        raw = self.steps.get("raw_shape")
        if raw is not None and tuple(x.shape[1:]) != self.input_shape and tuple(x.shape[1:]) == tuple(raw):
            from .arrays import apply_transform
            x = apply_transform(x, self.steps.get("transform") or {})
        return x

    @classmethod
    def check_json(cls, p: dict, layout: str, shape: tuple, config: dict) -> None:
        if p.get("raw_shape") is not None:
            check.shape(p["raw_shape"], "preparation.raw_shape")


@register_preparation
class ImagesPreparation(_ArrayLike):
    """Image files (data=images): loaded, resized to `image_size`, `color` channels, scaled to [0, 1]; or arrays
    (N, C, H, W) of such pixels: uint8 ones (and integers in 0..255) scaled by 1 / 255 as training's were, float ones
    taken as in [0, 1]; other integers, and floats above 1.5, are refused (data/pixel_inputs.py)."""

    kind = "images"
    trained_on = "images"
    reads_images = True

    def apply(self, data: Any, **options: Any) -> np.ndarray:
        if isinstance(data, (str, Path)):
            data = [data]
        if hasattr(data, "detach"):             # a torch tensor
            data = data.detach().cpu().numpy()
        if isinstance(data, (list, tuple)) and (not data or not isinstance(data[0], (int, float, list, tuple))):
            from .images import load_image

            size, color = tuple(self.steps["image_size"]), self.steps["color"]
            data = (np.stack([load_image(Path(f) if isinstance(f, str) else f, size, color) for f in data])
                    if data else np.zeros((0, *self.input_shape), dtype=np.float32))
            return super().apply(data, **options)
        if isinstance(data, (list, tuple)):
            data = np.asarray(data)
        if isinstance(data, np.ndarray):        # pixels: scaled as training's were, or refused (data/pixel_inputs)
            from .pixel_inputs import scale_pixels
            told = self.__dict__.setdefault("_told_integers", [])      # log the scaling once, not every chunk
            data = scale_pixels(data, float(self.steps.get("pixel_scale", 255.0)), told)
        return super().apply(data, **options)

    def table_hint(self) -> str:
        return "an image file, a folder of them, a .txt list of their paths, or (N, C, H, W) pixels as .npz or .npy"

    @classmethod
    def check_json(cls, p: dict, layout: str, shape: tuple, config: dict) -> None:
        size = p.get("image_size")
        if not isinstance(size, list) or list(shape[1:]) != size:
            raise check.BadEntry("preparation.image_size", f"the input's height and width {list(shape[1:])}", size)
        color = check.choice(p.get("color"), "preparation.color", ("grayscale", "rgb"))
        if shape[0] != {"grayscale": 1, "rgb": 3}[color]:
            raise check.BadEntry("preparation.color", f"{shape[0]} channel(s) as in the input shape", color)

    def other_data(self, node: dict) -> dict:
        node = super().other_data(node)
        if node.get("name") == "images":
            # Loaded at the model's size and colour (the loader resizes as it reads), whatever the data config says.
            node["image_size"], node["color"] = self.steps["image_size"], self.steps["color"]
        return node
