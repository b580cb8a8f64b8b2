"""`netkiln evaluate`: a bundle's metrics on one split of its data (or on other labelled data), with plots.

The run's own data is rebuilt exactly as training built it (same config, same seed, same split); other data
(`data=...`) is prepared with the bundle's saved preparation, never refitted.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netkiln.artifacts.bundle import Bundle
from netkiln.io.files import csv_text, staged_folder, write_json_atomic, write_text_atomic
from netkiln.errors import NetkilnError

log = logging.getLogger("netkiln")

SPLITS = ("auto", "train", "val", "test", "all")
MAX_PRINTED_CLASSES = 50           # more classes: the per-class table goes to per_class.csv only
MISTAKES = 20                      # mistakes.csv (text): this many wrong predictions, the most confident first


# ------------------------------------------------------------------------------------------------ data
def _json_plain(value: Any) -> Any:
    from netkiln.io.files import _json_default
    return json.loads(json.dumps(value, default=_json_default))


def _pick_split(dataset, split: str, own_data: bool,
                as_stored: bool = False) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(split, x, y): x as the network sees it, or with as_stored the values as read (uint8 pixels unscaled: the
    bundle's preparation scales them as it was trained to, which a bundle from before uint8 arrays does not)."""
    if split not in SPLITS:
        from netkiln.errors import did_you_mean
        raise NetkilnError(f"unknown split {split!r}.{did_you_mean(split, SPLITS)} Choose one of: "
                           f"{', '.join(SPLITS)}.", key="split")
    if split == "auto":
        split = ("test" if len(dataset.x_test) else "val") if own_data else "all"
    if split == "all":
        parts = [dataset.x_train, dataset.x_val, dataset.x_test]
        # Streamed image files (data/image_stream.ImageRows) are joined as files, read batch by batch.
        x = parts[0].join(parts[1:]) if hasattr(parts[0], "join") else torch.cat(parts)
        y = torch.cat([dataset.y_train, dataset.y_val, dataset.y_test])
    else:
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if len(x) == 0:
            raise NetkilnError(f"the {split} split of this run's data is empty; choose split=val, test or train.",
                               key="split")
    stored = as_stored and not hasattr(x, "mapped")     # image files are decoded (and scaled) only when read
    return split, (x if stored else dataset.floats(x)), y


def run_data(bundle: Bundle, split: str):
    """(name, split, x, y) from the run's own data config, rebuilt as in training."""
    return _run_data(bundle, split)[:4]


def _run_data(bundle: Bundle, split: str):
    """run_data and the split's raw examples (texts) in the rows' order, when the preparation keeps them."""
    from netkiln.data import load_dataset_and_source
    from netkiln.data.fingerprint import check_data_files

    check_data_files(bundle.config.get("data_files"))       # the files training read: still there, unchanged?
    dataset, raw = load_dataset_and_source(bundle.data_config, seed=bundle.seed)
    if _json_plain(dataset.preprocessing) != _json_plain(bundle.preparation):
        log.warning("the data's fitted preparation differs from the one saved with the model (the data files "
                    "changed since training?); evaluating on the data as it is now")
    split, x, y = _pick_split(dataset, split, own_data=True)
    _check_task(bundle, dataset.task, dataset.input_shape)
    examples = bundle.preparer.examples_of_source(raw, dataset.split_indices,
                                                  ("train", "val", "test") if split == "all" else (split,))
    return dataset.name, split, x, y, examples


def _check_task(bundle: Bundle, task, input_shape) -> None:
    mine = bundle.task
    task = task.for_output_units((mine.num_outputs,))      # binary data, a 2-unit model: as training saw it
    if task.kind != mine.kind or task.num_outputs != mine.num_outputs:
        raise NetkilnError(f"the data is a {task.kind} task with {task.num_outputs} output(s), but the model "
                           f"predicts {mine.kind} with {mine.num_outputs}; evaluate it on data like its training "
                           "data.", key="data")
    if input_shape is not None and tuple(input_shape) != tuple(bundle.input_shape):
        raise NetkilnError(f"the data's rows have shape {tuple(input_shape)}, but the model takes "
                           f"{tuple(bundle.input_shape)}.", key="data")


def other_data(bundle: Bundle, data_cfg, split: str):
    """(name, split, x, y, examples) from a different data config, prepared with the bundle's saved preparation;
    examples: the rows' raw examples (texts) when the preparation keeps them, else None."""
    from netkiln.data import load_dataset
    from netkiln.data.config import to_plain

    node = to_plain(data_cfg)
    preparer = bundle.preparer
    if preparer.labelled_tables:
        return _other_table(bundle, node, split)
    node = preparer.other_data(node)         # read as training read it; the saved steps are applied below
    dataset = load_dataset(node, seed=bundle.seed)
    split, x, y = _pick_split(dataset, split, own_data=False, as_stored=True)
    _check_task(bundle, dataset.task, None)
    from netkiln.artifacts.inputs import Chunk, InputFile
    from netkiln.artifacts.predictions import prepare_chunk
    x = prepare_chunk(bundle, Chunk(0, x.numpy()), InputFile(Path(str(node.get("path", node.get("name")))), "npy",
                                                              key="data"))
    return dataset.name, split, x, y, None


def _other_table(bundle: Bundle, node: dict, split: str):
    """Other labelled data for a model trained on a table (or on texts: a table or a folder of .txt files), read by
    the preparation's kind; inputs and target columns as saved in the bundle."""
    if split not in ("auto", "all"):
        raise NetkilnError("on other data every row is evaluated; leave split at auto (or all).", key="split")
    frame, name = bundle.preparer.read_labelled(node, "data")
    frame = _labelled_rows(bundle, frame, key="data.path", file=str(node.get("path")))
    x, y = table_xy(bundle, frame, key="data.path", file=str(node.get("path")),
                    unknown_categories=node.get("unknown_categories"))
    return name, "all", x, y, bundle.preparer.examples_of_table(frame)


def _labelled_rows(bundle: Bundle, frame, *, key: str, file: str | None):
    """The rows of a labelled table that have every target value (the others cannot be scored)."""
    columns = bundle.preparer.target_columns
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise NetkilnError(f"the table has no target column {missing[0]!r}; evaluation needs the true values",
                           key=key, file=file)
    return frame[frame[columns].notna().all(axis=1)].reset_index(drop=True)


def table_xy(bundle: Bundle, frame, *, key: str, file: str | None = None, unknown_categories: str | None = None,
             setting: str = "data.unknown_categories") -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a labelled table for a model trained on a table: the rows with a target value, their features
    prepared with the bundle's saved preparation (never refitted; other columns ignored). `setting`: how the caller
    picks `unknown_categories` (the config key, or unknown_categories.PYTHON_KEYWORD), named in the messages."""
    from netkiln.data import prepare_features
    from netkiln.data import unknown_categories as unknown

    prep = bundle.preparation
    columns = bundle.preparer.target_columns
    frame = _labelled_rows(bundle, frame, key=key, file=file)
    unseen: list = []               # categories the training rows did not have
    try:
        x = prepare_features(frame.drop(columns=columns), prep, allow_extra=True, unseen=unseen)
    except NetkilnError as err:
        raise NetkilnError(err.message, key=key, file=file, column=err.column) from None
    setting_key = unknown.key_of(setting)
    unknown.apply_policy(unseen, unknown.policy_of(prep, unknown_categories, key=setting_key), total=len(frame),
                         where=file or "the table", key=setting_key, file=file, setting=setting)
    if bundle.task.is_classification:
        return x, class_indices(bundle, frame[columns[0]], key=key, file=file, column=columns[0])
    return x, torch.from_numpy(frame[columns].to_numpy(dtype=np.float32, copy=True))    # writable: no torch warning


def class_indices(bundle: Bundle, labels, *, key: str, file: str | None = None,
                  column: str | None = None) -> torch.Tensor:
    """True class labels, as they appear in the training data (and as predict writes them) → class indices."""
    target = bundle.preparation.get("target") or {}
    values = target.get("class_values") or list(bundle.task.class_names)
    lookup = {str(v): i for i, v in enumerate(values)}
    raw = [str(v).strip() for v in np.asarray(labels, dtype=object).reshape(-1)]
    unseen = sorted(set(raw) - set(lookup))
    if unseen:
        raise NetkilnError(f"the target column has values the model never saw: {', '.join(unseen[:5])}",
                           key=key, file=file, column=column)
    return torch.tensor([lookup[v] for v in raw], dtype=torch.int64)


def bundle_metrics(bundle: Bundle, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[str, dict]:
    """(loss name, metrics) of the bundle's model on prepared x and true y: the metrics of evaluation.json."""
    from netkiln.data.target_scale import TargetScale
    from netkiln.training.evaluate import evaluate_split
    from netkiln.training.losses import make_loss

    loss_name, loss_fn = make_loss(bundle.config.get("loss") or {"name": "auto"}, bundle.task)
    # Regression: the loss on the scaled target, as in training; metrics in the target's units.
    return loss_name, evaluate_split(bundle.network, bundle.task, loss_fn, x, y, batch_size=batch_size,
                                     target_scale=TargetScale.of(bundle.preparation))


# ------------------------------------------------------------------------------------------------ report
def per_class_table(confusion: np.ndarray, labels: list) -> list[dict]:
    return per_class_rows(np.diagonal(confusion), confusion.sum(axis=1), confusion.sum(axis=0), labels)


def per_class_rows(hits, supports, predictions, labels: list) -> list[dict]:
    """Precision, recall, F1 and support per class from its true positives, true count and predicted count."""
    rows = []
    for i, label in enumerate(labels):
        tp = int(hits[i])
        support = int(supports[i])
        predicted = int(predictions[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": label, "precision": round(precision, 6), "recall": round(recall, 6),
                     "f1": round(f1, 6), "support": support})
    return rows


def _format_table(rows: list[dict]) -> str:
    head = list(rows[0])
    cells = [[str(r[h]) if not isinstance(r[h], float) else f"{r[h]:.4f}" for h in head] for r in rows]
    width = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, width))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, width)) for cell in cells]
    return "\n".join(lines)


def evaluate_bundle(bundle: Bundle, *, data_cfg=None, split: str = "auto", out: Any = None,
                    plots: bool = True, batch_size: int = 1024) -> dict:
    """Metrics, per-class table and plots of the bundle's model; writes `<out>/evaluation.json`."""
    from netkiln.artifacts.predictions import forward
    from netkiln.data.target_scale import TargetScale

    from netkiln.artifacts.bundle import refuse_output_in_bundle
    if out:
        refuse_output_in_bundle(out, bundle, "out")
        out = Path(os.path.abspath(str(out)))
        _check_replaceable(out)
    elif data_cfg is None:
        out = bundle.run_dir / "evaluation"
    if data_cfg is None:
        data_name, split, x, y, examples = _run_data(bundle, split)
    else:
        data_name, split, x, y, examples = other_data(bundle, data_cfg, split)
    task, network = bundle.task, bundle.network
    loss_name, metrics = bundle_metrics(bundle, x, y, batch_size)
    target_scale = TargetScale.of(bundle.preparation)        # residuals in the target's units
    # Multiclass: the predicted class only; all the logits would be rows x classes floats (gigabytes for a model
    # with thousands of classes).
    if task.kind == "multiclass":
        outputs = torch.cat([forward(network, x[i:i + batch_size]).argmax(dim=1)
                             for i in range(0, max(len(x), 1), batch_size)])
    else:
        outputs = forward(network, x, batch_size)
    if target_scale is not None:
        outputs = target_scale.unscale(outputs)
    report: dict[str, Any] = {"run": str(bundle.run_dir), "data": data_name, "split": split, "rows": int(len(x)),
                              "task": task.to_dict(), "loss": loss_name, "metrics": metrics, "files": {}}
    claimed = out is None
    out = out or _new_numbered_folder(bundle.run_dir)
    try:
        with staged_folder(out) as stage:   # written whole or not at all: never one split's files beside another's
            _write_report(stage, report, task, bundle, data_name, split, y, outputs, plots)
            if examples is not None and task.is_classification:
                _write_mistakes(stage, report, bundle, x, y, outputs, examples, batch_size)
            report["files"] = {name: str(out / Path(path).name) for name, path in report["files"].items()}
            report["files"]["evaluation"] = str(out / "evaluation.json")
            write_json_atomic(stage / "evaluation.json", report)
    except BaseException:
        if claimed:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return report


def _write_report(out: Path, report: dict, task, bundle: Bundle, data_name: str, split: str, y, outputs,
                  plots: bool) -> None:
    """The per-class table and the plots, into the folder `out`; their paths go into report["files"]."""
    from netkiln.artifacts import plots as plotting
    from netkiln.artifacts.predictions import class_labels, target_names

    files = report["files"]
    if task.is_classification:
        labels = [str(v) for v in class_labels(bundle)]
        if task.kind == "binary":
            predicted = (outputs.reshape(-1) > 0).long()
        else:
            predicted = outputs                  # already the argmax (evaluate_bundle)
        k = task.num_classes
        report["labels"] = labels
        if k <= plotting.CONFUSION_MAX_CLASSES:
            confusion = torch.bincount(y.long() * k + predicted, minlength=k * k).reshape(k, k).numpy()
            report["confusion_matrix"] = confusion.tolist()
            report["per_class"] = per_class_table(confusion, labels)
        else:   # k x k cells would be gigabytes for thousands of classes: per-class counts only, no plot
            confusion = None
            hits = torch.bincount(y.long()[predicted == y.long()], minlength=k).numpy()
            report["per_class"] = per_class_rows(hits, torch.bincount(y.long(), minlength=k).numpy(),
                                                 torch.bincount(predicted, minlength=k).numpy(), labels)
        # The csv module quotes a class name holding a comma, quote or newline.
        files["per_class"] = str(write_text_atomic(out / "per_class.csv", csv_text(report["per_class"])))
        if plots and confusion is not None:
            files["confusion_matrix"] = str(plotting.confusion_matrix(
                confusion, labels, out / "confusion_matrix.png", title=f"Confusion matrix ({data_name}, {split})"))
    elif plots:
        files["residuals"] = str(plotting.residuals(y.numpy(), outputs.numpy(), out / "residuals.png",
                                                    names=target_names(bundle)))
    if plots:
        curves = plotting.learning_curves(bundle.run_dir / "history.csv", out / "curves.png")
        if curves is not None:
            files["curves"] = str(curves)


def _write_mistakes(out: Path, report: dict, bundle: Bundle, x, y, outputs, examples: list,
                    batch_size: int) -> None:
    """mistakes.csv: the MISTAKES wrong predictions the model was surest of, with their raw example (the text),
    true and predicted label and the predicted label's probability."""
    from netkiln.artifacts.predictions import class_labels, forward, probabilities

    task = bundle.task
    predicted = (outputs.reshape(-1) > 0).long() if task.kind == "binary" else outputs.reshape(-1)
    wrong = (predicted != y.long().reshape(-1)).nonzero().flatten()
    sure = [probabilities(task, forward(bundle.network, x[wrong[i:i + batch_size]]))
            .gather(1, predicted[wrong[i:i + batch_size]].reshape(-1, 1)).flatten()
            for i in range(0, len(wrong), batch_size)]
    sure = torch.cat(sure) if sure else torch.zeros(0)
    labels = [str(v) for v in class_labels(bundle)]
    name = bundle.preparer.examples_name
    rows = []
    for j in torch.argsort(sure, descending=True, stable=True)[:MISTAKES].tolist():
        row = int(wrong[j])
        example = examples[row].strip() if isinstance(examples[row], str) else examples[row]   # a .txt file's \n
        rows.append({name: example, "true": labels[int(y[row])], "predicted": labels[int(predicted[row])],
                     "probability": round(float(sure[j]), 6)})
    report["mistakes"] = {"wrong": int(len(wrong)), "listed": len(rows)}
    report["files"]["mistakes"] = str(write_text_atomic(
        out / "mistakes.csv", csv_text(rows, [name, "true", "predicted", "probability"])))


def _check_replaceable(out: Path) -> None:
    """evaluate replaces its output folder whole: refuse a folder that holds anything but an earlier evaluation."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "evaluation.json").is_file())):
        raise NetkilnError("this is not an evaluation folder (it holds other files, and no evaluation.json); "
                           "evaluate replaces its output folder whole, so give a new or empty folder, or one "
                           "evaluate wrote before.", key="out", file=str(out))


def _new_numbered_folder(run_dir: Path) -> Path:
    """Other data's evaluation: the first free <run>/evaluation-N (N = 2, 3, ...), claimed by creating it, so the
    run's own evaluation/ and earlier ones are never replaced."""
    for n in itertools.count(2):
        folder = run_dir / f"evaluation-{n}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def format_report(report: dict) -> str:
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in report["metrics"].items())
    lines = [f"{report['data']} ({report['split']}, {report['rows']} rows): {metrics}"]
    per_class = report.get("per_class")
    if per_class and len(per_class) <= MAX_PRINTED_CLASSES:
        lines += ["", _format_table(per_class)]
    elif per_class:
        lines += ["", f"precision, recall and F1 of the {len(per_class)} classes: per_class.csv"]
    mistakes = report.get("mistakes")
    if mistakes and mistakes["listed"]:
        lines += ["", f"the {mistakes['listed']} most confident of {mistakes['wrong']} wrong predictions: "
                      "mistakes.csv"]
    lines += ["", f"written to {Path(report['files']['evaluation']).parent}"]
    return "\n".join(lines)
