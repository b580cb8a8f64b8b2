"""What the model must predict: shared by data, compiler, loss and metrics."""
from __future__ import annotations

from dataclasses import dataclass, field

TASK_KINDS = ("multiclass", "binary", "regression")


@dataclass(frozen=True)
class Task:
    kind: str                       # one of TASK_KINDS
    num_outputs: int                # classes (multiclass), 1 (binary), targets (regression)
    class_names: tuple[str, ...] = field(default=())

    @property
    def is_classification(self) -> bool:
        return self.kind != "regression"

    @property
    def num_classes(self) -> int:
        """Classes seen by metrics: 2 for binary, num_outputs for multiclass, 0 for regression."""
        return {"multiclass": self.num_outputs, "binary": 2}.get(self.kind, 0)

    def for_output_units(self, units) -> "Task":
        """The task a model ending in `units` outputs trains for: a binary task with 2 units (Keras's `Dense(2)` with
        sparse categorical cross-entropy) is a 2-class softmax classifier (cross_entropy, a probability per class)."""
        if self.kind == "binary" and tuple(units) == (2,):
            return Task("multiclass", 2, self.class_names)
        return self

    def to_dict(self) -> dict:
        return {"kind": self.kind, "num_outputs": self.num_outputs, "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(d["kind"], int(d["num_outputs"]), tuple(d.get("class_names") or ()))
