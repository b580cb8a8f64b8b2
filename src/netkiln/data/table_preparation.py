"""The table kind (data=csv): each feature column's fitted imputation, categories and scaling (`tabular.fit_columns`),
re-applied by column name to new rows."""
from __future__ import annotations

from typing import Any

import numpy as np

from netkiln.errors import NetkilnError

from . import json_checks as check
from .preparations import Preparation, check_input_columns, is_frame, register_preparation

FORMAT = 1
UNKNOWN_CATEGORIES = ("warn", "error", "ignore")


@register_preparation
class TablePreparation(Preparation):
    kind = "table"
    trained_on = "a table"
    reads_arrays = False
    labelled_tables = True
    has_categories = True

    @classmethod
    def fit(cls, train, plan, target_info: dict, task, tf=None, path: str = "data") -> "TablePreparation":
        """Imputation values, categories and scaling fitted on the training rows `train` (a DataFrame)."""
        from .tabular import fit_columns

        return cls.from_columns(fit_columns(train, plan, tf, path), plan, target_info, task)

    @classmethod
    def from_columns(cls, specs: list[dict], plan, target_info: dict, task) -> "TablePreparation":
        """The saved preparation of fitted column specs (the in-memory fit above, or a streamed one)."""
        feature_names = [o for s in specs for o in s["outputs"]]
        return cls({
            "kind": cls.kind, "format": FORMAT, "layout": "flat", "input_shape": [len(feature_names)],
            "columns": specs, "feature_names": feature_names, "target": target_info, "task": task.to_dict(),
            "missing": plan.missing, "scale": plan.scale, "filter": plan.filter,
            "unknown_categories": plan.unknown_categories,
        })

    @property
    def columns(self) -> list[dict]:
        return self.steps["columns"]

    def input_columns(self) -> list[str]:
        return [str(spec["name"]) for spec in self.columns]

    def table_hint(self) -> str:
        return f"the rows as a .csv or .parquet file with the columns {', '.join(self.input_columns())}"

    def apply(self, data: Any, *, allow_extra: bool = False, unknown_categories: str | None = None,
              unseen: list | None = None, first_row: int = 0) -> np.ndarray:
        """A pandas DataFrame (or a dict of columns / list of row dicts) with the original column names; target
        columns are ignored, other extra columns refused unless `allow_extra`. A category the training rows did
        not have is warned about, refused or ignored as `unknown_categories` says (default: the policy the model
        was trained with, else warn); a caller that passes a list as `unseen` gets them appended there instead
        (`unknown_categories.Unseen`) and decides itself."""
        import pandas as pd

        from . import unknown_categories as unknown
        from .tables import few_blocks
        from .tabular import apply_columns, check_finite

        if is_frame(data):
            frame = data
        elif isinstance(data, (dict, list)):
            try:
                frame = pd.DataFrame(data)
            except (ValueError, TypeError) as err:
                raise NetkilnError(f"cannot make a table of the input: {err}") from None
        else:
            raise NetkilnError(f"expected a table (pandas DataFrame) of raw rows, got {type(data).__name__}")
        frame = few_blocks(frame).rename(columns=lambda c: str(c).strip())
        check_input_columns([str(c) for c in frame.columns], self.input_columns(),
                            ignore=(self.steps.get("target") or {}).get("columns", []), allow_extra=allow_extra)
        if len(frame) == 0:
            return np.zeros((0, int(self.input_shape[0])), dtype=np.float32)
        frame = frame.reset_index(drop=True)
        found: list = [] if unseen is None else unseen
        x = apply_columns(frame, self.columns, None, None, found)
        if unseen is None:
            unknown.apply_policy(found, unknown.policy_of(self.steps, unknown_categories), total=len(frame),
                                 where="the input", key="data.unknown_categories")
        check_finite(x, frame, self.columns, None)
        return x

    @classmethod
    def check_json(cls, p: dict, layout: str, shape: tuple, config: dict) -> None:
        columns = p.get("columns")
        if not isinstance(columns, list) or not columns:
            raise check.BadEntry("preparation.columns", "a list of column preparations", columns)
        outputs = 0
        for i, spec in enumerate(columns):
            where = f"preparation.columns[{i}]"
            spec = check.mapping(spec, where)
            if not isinstance(spec.get("name"), str):
                raise check.BadEntry(f"{where}.name", "a column name", spec.get("name"))
            kind = check.choice(spec.get("kind"), f"{where}.kind", ("numeric", "categorical"))
            outputs += len(check.strings(spec.get("outputs"), f"{where}.outputs"))
            impute = check.mapping(spec.get("impute") or {}, f"{where}.impute")
            if kind == "numeric" and "value" in impute:
                check.number(impute["value"], f"{where}.impute.value")
            if kind == "categorical":
                categories = check.strings(spec.get("categories"), f"{where}.categories")
                encoding = check.choice(spec.get("encoding"), f"{where}.encoding", ("onehot", "ordinal"))
                if encoding == "onehot" and len(spec["outputs"]) != len(categories):
                    raise check.BadEntry(f"{where}.outputs", f"one output per category ({len(categories)})",
                                         spec["outputs"])
            if kind == "numeric" or spec.get("encoding") == "ordinal":
                check.scale(check.mapping(spec.get("scale"), f"{where}.scale"), f"{where}.scale")
        if outputs != shape[0]:
            raise check.BadEntry("preparation.columns", f"{shape[0]} outputs in all (the input shape), not {outputs}",
                                 [c.get("name") for c in columns][:5])
        if p.get("unknown_categories") is not None:
            check.choice(p["unknown_categories"], "preparation.unknown_categories", UNKNOWN_CATEGORIES)
