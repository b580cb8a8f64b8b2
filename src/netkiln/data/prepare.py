"""Re-applying a saved preparation (`Dataset.preprocessing`) to new raw input, for predict."""
from __future__ import annotations

from typing import Any

import numpy as np

from .preparations import fitted_steps, preparation_for

__all__ = ["prepare_features", "fitted_steps"]


def prepare_features(data: Any, preprocessing: dict, *, allow_extra: bool = False,
                     unknown_categories: str | None = None, unseen: list | None = None):
    """Apply the preparation fitted at training time to new raw input → float32 tensor shaped like training x.

    What the input may be depends on the preparation's kind (`netkiln.data.preparations`):

    - tables (data=csv): a pandas DataFrame (or a dict of columns / list of row dicts) with the original column
      names; missing columns are an error naming them, target columns are ignored, other extra columns are an
      error unless ``allow_extra=True``. A category the training rows did not have is warned about, refused or
      ignored as ``unknown_categories`` says (default: the policy the model was trained with, else warn); a
      caller that passes a list as ``unseen`` gets them appended there instead
      (`netkiln.data.unknown_categories.Unseen`) and decides itself.
    - arrays (npz and the built-in sources): an array shaped like the source's ``x`` rows, ``(N, *raw_shape)``,
      or already in the model's layout ``(N, *input_shape)``.
    - images: a list of image file paths or PIL images (loaded, resized and scaled as in training), or an array
      ``(N, C, H, W)`` already scaled to [0, 1].

    ``preprocessing`` is ``Dataset.preprocessing``, or a bundle's ``preprocessing.json`` as ``json.load`` reads it.
    """
    import torch

    x = preparation_for(preprocessing).apply(data, allow_extra=allow_extra, unknown_categories=unknown_categories,
                                             unseen=unseen)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
