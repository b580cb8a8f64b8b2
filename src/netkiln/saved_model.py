"""A trained run's model in Python: `netkiln.load(RUN)`, predicting and evaluating as the CLI does.

    import netkiln
    model = netkiln.load("outputs/2026-11-26/13-05-12")     # a run directory, or its model/ bundle
    model.predict(frame)            # labels (or values): `netkiln predict`'s `prediction` column
    model.predict_proba(frame)      # classifiers: one column a class, in model.classes_ order
    model.evaluate()                # the metrics `netkiln evaluate` writes into evaluation.json (test split)
    model.evaluate(frame)           # ... on a labelled table; or evaluate((x, y))

Input is what `netkiln predict` reads, already in memory: a pandas DataFrame with the training columns, a numpy
array / torch tensor of rows (raw, or already prepared in the model's input shape), or for a text model a list of
strings (`model.predict(["a fine film", "dull"])`), for an image model image paths (a list, or one path: an image,
a folder of them, a .txt list) or (N, C, H, W) pixels (uint8, or floats in [0, 1]). Every step is the CLI's own
code (artifacts.predictions and training.bundle_evaluation), so both give the same numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netkiln.errors import NetkilnError


class SavedModel:
    """A loaded bundle: the network (CPU, eval mode), its task and its saved preparation."""

    def __init__(self, bundle):
        self.bundle = bundle

    @classmethod
    def load(cls, run: Any, *, allow_targets: bool = False) -> "SavedModel":
        from netkiln.artifacts.bundle import load_bundle
        return cls(load_bundle(run, allow_targets=allow_targets))

    def __repr__(self) -> str:
        task = self.task
        what = f"{task.kind}, {len(self.classes_)} classes" if task.is_classification else task.kind
        return f"<netkiln.SavedModel {self.bundle.path} ({what}, input {self.input_shape})>"

    # ------------------------------------------------------------------------------------------------ facts
    @property
    def task(self):
        return self.bundle.task

    @property
    def network(self):
        """The compiled torch module (eval mode, CPU): it takes prepared input and returns logits or values."""
        return self.bundle.network

    @property
    def input_shape(self) -> tuple:
        return self.bundle.input_shape

    @property
    def feature_names(self) -> list[str] | None:
        return self.bundle.feature_names

    @property
    def classes_(self) -> list:
        """The class labels as predict returns them (scikit-learn's name); [] for regression."""
        from netkiln.artifacts.predictions import class_labels
        return class_labels(self.bundle) if self.task.is_classification else []

    # ------------------------------------------------------------------------------------------------ predict
    def prepare(self, data: Any, *, allow_extra: bool = False, unknown_categories: str | None = None):
        """Raw rows → the float32 tensor the network takes, with the saved preparation (as `netkiln predict`).

        A table's category that the training rows did not have is warned about ('warn'), refused ('error') or let
        through ('ignore') as `unknown_categories` says; None: the policy the model was trained with (else warn)."""
        import pandas as pd

        from netkiln.artifacts.inputs import Chunk, InputFile
        from netkiln.artifacts.predictions import prepare_chunk
        from netkiln.data import unknown_categories as unknown

        policy = unknown.policy_of(self.bundle.preparation, unknown_categories, key="unknown_categories")

        if isinstance(data, dict):
            data = pd.DataFrame(data)
        if isinstance(data, (pd.Series, np.ndarray)) and (data.dtype == object or pd.api.types.is_string_dtype(data)):
            data = data.tolist()            # texts (or image paths)
        if isinstance(data, (str, Path)):
            data = [data]
        if isinstance(data, pd.DataFrame):
            source = InputFile(Path("<DataFrame>"), "csv", key="data")
        elif isinstance(data, (list, tuple)) and (not data or isinstance(data[0], (str, Path))):
            images = self._image_files(data)
            if images is not None:
                data = [f for f, _ in images]
            source = InputFile(Path("<list>"), "lines" if images is None else "images", key="data")
        else:
            data = _as_array(data)
            source = InputFile(Path("<array>"), "npy", key="data")
        unseen: list | None = [] if self.bundle.preparer.has_categories else None    # the policy is applied here
        try:
            x = prepare_chunk(self.bundle, Chunk(0, data), source, allow_extra=allow_extra, unseen=unseen)
        except NetkilnError as err:      # the CLI's words, in Python's: predict(frame, allow_extra=True)
            if "allow_extra=true" not in err.message:
                raise
            raise NetkilnError(err.message.replace("allow_extra=true", "allow_extra=True"), key=err.key,
                               file=err.file, line=err.line, column=err.column) from None
        # Advice in Python's words (unknown_categories='warn'), not the CLI's data.unknown_categories=warn.
        unknown.apply_policy(unseen or [], policy, total=len(x), where="the input", key="unknown_categories",
                             index=data.index if isinstance(data, pd.DataFrame) else None,
                             setting=unknown.PYTHON_KEYWORD)
        return x

    def predict_frame(self, data: Any, *, allow_extra: bool = False, batch_size: int = 4096,
                      unknown_categories: str | None = None):
        """The table `netkiln predict` writes: `prediction` and, for classifiers, one `prob_<class>` column a
        class (multi-target regression: `prediction_<target>`), one row per input row. `unknown_categories`: as
        `prepare`."""
        import pandas as pd

        from netkiln.artifacts.predictions import forward, output_frame

        x = self.prepare(data, allow_extra=allow_extra, unknown_categories=unknown_categories)
        frame = output_frame(self.bundle, forward(self.network, x, batch_size))
        if isinstance(data, pd.DataFrame):
            frame.index = data.index            # rows line up with the input's
        images = self._image_files(data)
        if images is not None:                  # as `netkiln predict` writes it: the file first
            frame.insert(0, "file", [name for _, name in images])
        return frame

    def _image_files(self, data: Any) -> list | None:
        """An image model's input named by paths (one, or a list; a folder or a .txt list stands for its images):
        (file, name) for each image, in order; None for other input."""
        from netkiln.artifacts.inputs import image_files

        if isinstance(data, (str, Path)):
            data = [data]
        if not self.bundle.preparer.reads_images or not isinstance(data, (list, tuple)) \
                or not all(isinstance(f, (str, Path)) for f in data):
            return None
        return [pair for f in data for pair in image_files(Path(f).expanduser(), "data")]

    def predict(self, data: Any, *, allow_extra: bool = False, batch_size: int = 4096,
                unknown_categories: str | None = None) -> np.ndarray:
        """Labels as they appeared in the training data (classification) or values (regression): shape (N,), or
        (N, targets) for multi-target regression. `unknown_categories`: as `prepare`."""
        frame = self.predict_frame(data, allow_extra=allow_extra, batch_size=batch_size,
                                   unknown_categories=unknown_categories)
        if "prediction" in frame:
            return frame["prediction"].to_numpy()
        return frame[[c for c in frame.columns if c.startswith("prediction_")]].to_numpy()

    def predict_proba(self, data: Any, *, allow_extra: bool = False, batch_size: int = 4096,
                      unknown_categories: str | None = None) -> np.ndarray:
        """Class probabilities (N, classes), columns in `classes_` order. `unknown_categories`: as `prepare`."""
        if not self.task.is_classification:
            raise NetkilnError("this model does regression: it has no class probabilities; use predict()")
        frame = self.predict_frame(data, allow_extra=allow_extra, batch_size=batch_size,
                                   unknown_categories=unknown_categories)
        return frame[[f"prob_{label}" for label in self.classes_]].to_numpy(dtype=np.float32)

    # ------------------------------------------------------------------------------------------------ evaluate
    def evaluate(self, data: Any = None, y: Any = None, *, split: str = "auto", batch_size: int = 1024,
                 unknown_categories: str | None = None) -> dict:
        """The metrics `netkiln evaluate` writes into evaluation.json (loss and the task's metrics), on:

        - nothing: the run's own data rebuilt as training built it, `split` auto (test, else val) | train | val |
          test | all, as `netkiln evaluate run=RUN split=...`;
        - a DataFrame with the training columns and the target column(s), for a model trained on a table (every
          row with a target value, as `netkiln evaluate run=RUN data=csv data.path=...`);
        - x and y, as `evaluate(x, y)` (Keras) or `evaluate((x, y))`: rows as predict() takes them, and the true
          labels as predict() returns them (or values).
        """
        import pandas as pd

        from netkiln.data import unknown_categories as unknown
        from netkiln.training import bundle_evaluation as evaluation

        bundle = self.bundle
        if y is not None:
            data = (data, y)
        if data is None:
            _, _, x, y = evaluation.run_data(bundle, split)
        elif isinstance(data, pd.DataFrame):
            if not bundle.preparer.labelled_tables:
                raise NetkilnError("this model was not trained on a table: pass (x, y), the rows and their true "
                                   "labels or values", key="data")
            x, y = evaluation.table_xy(bundle, data, key="data", file="<DataFrame>",
                                       unknown_categories=unknown_categories, setting=unknown.PYTHON_KEYWORD)
        elif isinstance(data, tuple) and len(data) == 2:
            x, y = self.prepare(data[0], unknown_categories=unknown_categories), self._targets(data[1])
            if len(x) != len(y):
                raise NetkilnError(f"x has {len(x)} rows but y has {len(y)} values", key="data")
        else:
            raise NetkilnError(f"expected a DataFrame with the target column, or a pair (x, y), got "
                               f"{type(data).__name__}", key="data")
        return evaluation.bundle_metrics(bundle, x, y, batch_size)[1]

    def _targets(self, y: Any):
        """True labels (classification) or values (regression) → the tensor the metrics compare against."""
        import torch

        from netkiln.training.bundle_evaluation import class_indices

        values = _as_array(y)
        if self.task.is_classification:
            return class_indices(self.bundle, values, key="data")
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32).reshape(len(values), -1))


def _as_array(data: Any) -> np.ndarray:
    if hasattr(data, "detach"):                  # a torch tensor, on any device
        return data.detach().cpu().numpy()
    try:
        return np.asarray(data)
    except (TypeError, ValueError) as err:
        raise NetkilnError(f"expected a pandas DataFrame, a numpy array or a torch tensor of rows, got "
                           f"{type(data).__name__} ({err})", key="data") from None
