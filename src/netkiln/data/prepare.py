"""Re-applying a saved preparation (`Dataset.preprocessing`) to new raw input, for predict."""
from __future__ import annotations

from typing import Any

import numpy as np

from netkiln.errors import NetkilnError, did_you_mean


def prepare_features(data: Any, preprocessing: dict, *, allow_extra: bool = False,
                     unknown_categories: str | None = None, unseen: list | None = None):
    """Apply the preparation fitted at training time to new raw input → float32 tensor shaped like training x.

    - tables (``preprocessing["kind"] == "table"``): a pandas DataFrame (or a dict of columns / list of row
      dicts) with the original column names; missing columns are an error naming them, target columns are
      ignored, other extra columns are an error unless ``allow_extra=True``. A category the training rows did
      not have is warned about, refused or ignored as ``unknown_categories`` says (default: the policy the model
      was trained with, else warn); a caller that passes a list as ``unseen`` gets them appended there instead
      (`netkiln.data.unknown_categories.Unseen`) and decides itself.
    - arrays (npz and the built-in sources): an array shaped like the source's ``x`` rows, ``(N, *raw_shape)``,
      or already in the model's layout ``(N, *input_shape)``.
    - images: a list of image file paths or PIL images (loaded, resized and scaled as in training), or an array
      ``(N, C, H, W)`` already scaled to [0, 1].

    ``preprocessing`` is ``Dataset.preprocessing``, or a bundle's ``preprocessing.json`` as ``json.load`` reads it.
    """
    import torch

    if not isinstance(preprocessing, dict):
        raise TypeError("preprocessing must be the dict saved with the dataset")
    preprocessing = fitted_steps(preprocessing)
    kind = preprocessing.get("kind", "arrays")
    if kind == "table":
        x = _prepare_table(data, preprocessing, allow_extra, unknown_categories, unseen)
    elif kind == "images":
        from .images import prepare_images
        x = prepare_images(data, preprocessing)
    elif kind == "arrays":
        from .arrays import prepare_arrays
        x = prepare_arrays(data, preprocessing)
    else:
        raise NetkilnError(f"unknown preprocessing kind {kind!r} (saved by a newer netkiln?)")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def fitted_steps(preprocessing: dict) -> dict:
    """The fitted steps: a bundle's preprocessing.json keeps them under "preparation", beside the input schema
    (whose input_shape lets array input be checked against the model's)."""
    steps = preprocessing.get("preparation")
    if not isinstance(steps, dict):
        return preprocessing            # already Dataset.preprocessing
    shape = preprocessing.get("input_shape")
    return {"input_shape": shape, **steps} if shape is not None else steps


def _prepare_table(data: Any, prep: dict, allow_extra: bool, policy: str | None, unseen: list | None) -> np.ndarray:
    import pandas as pd

    from . import unknown_categories as unknown
    from .tabular import apply_columns, check_finite

    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, (dict, list)):
        try:
            frame = pd.DataFrame(data)
        except (ValueError, TypeError) as err:
            raise NetkilnError(f"cannot make a table of the input: {err}") from None
    else:
        raise NetkilnError(f"expected a table (pandas DataFrame) of raw rows, got {type(data).__name__}")
    frame = frame.rename(columns=lambda c: str(c).strip())
    specs = prep["columns"]
    need = [s["name"] for s in specs]
    have = [str(c) for c in frame.columns]
    have_set, need_set = set(have), set(need)          # sets: linear in the number of columns
    missing = [c for c in need if c not in have_set]
    targets = set(prep.get("target", {}).get("columns", []))
    extra = [c for c in have if c not in need_set and c not in targets]
    if missing:
        hints = "".join(did_you_mean(m, extra) for m in missing[:3])
        raise NetkilnError(f"the input lacks the column{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(repr(m) for m in missing)} that the model was trained on.{hints} "
                           f"Expected columns: {', '.join(need)}.", column=missing[0])
    if extra and not allow_extra:
        raise NetkilnError(f"the input has column{'s' if len(extra) > 1 else ''} the model was not trained on: "
                           f"{', '.join(repr(e) for e in extra)}; remove {'them' if len(extra) > 1 else 'it'} "
                           "or allow extra columns",
                           column=extra[0])
    if len(frame) == 0:
        return np.zeros((0, int(prep["input_shape"][0])), dtype=np.float32)
    frame = frame.reset_index(drop=True)
    found: list = [] if unseen is None else unseen
    x = apply_columns(frame, specs, None, None, found)
    if unseen is None:
        unknown.apply_policy(found, unknown.policy_of(prep, policy), total=len(frame), where="the input",
                             key="data.unknown_categories")
    check_finite(x, frame, specs, None)
    return x
