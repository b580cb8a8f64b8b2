"""`netkiln analyze`: what is in the data, before any model sees it.

`analyze_data` loads the dataset exactly as training does (same checks, same split) and returns a plain-JSON
report; `print_report` shows it as rich tables and `plot_report` draws the PNG. Nothing is written until the
whole analysis has succeeded.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from netkiln.errors import NetkilnError

from .preparations import preparation_for

IMBALANCE_RATIO = 3.0           # largest class / smallest class above this: a warning
MAX_FEATURE_STATS = 500         # per-feature statistics kept in analysis.json
PLOT_FEATURES = 11
SAMPLE_IMAGES_PER_CLASS = 4     # analysis.png: this many training images (sequences: 3) of each of ...
SAMPLE_CLASSES = 8              # ... the first classes
AUGMENT_SAMPLES = 6             # augment_samples.png: the first training images


def _num(v: Any) -> Any:
    """A JSON-safe number (NaN/inf → None)."""
    if v is None:
        return None
    f = float(v)
    if not math.isfinite(f):
        return None
    return int(f) if f.is_integer() and abs(f) < 2 ** 53 and isinstance(v, (int, np.integer)) else round(f, 6)


def _row_hashes(x: np.ndarray) -> list[int]:
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    return [hash(r.tobytes()) for r in flat]


def _stats(v: np.ndarray) -> dict:
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": _num(v.mean()), "std": _num(v.std()), "min": _num(v.min()), "max": _num(v.max())}


def analyze_data(data_cfg: Any, seed: int = 0):
    """Load and split like `netkiln train`, then describe. Returns (report dict, context for the plot)."""
    from netkiln.data import load_dataset_and_source
    from netkiln.data.config import to_plain

    from .analyze_images import channel_stats, is_streamed_images, pixel_pass

    ds, raw = load_dataset_and_source(data_cfg, seed)
    streamed_images = None          # a streamed image folder: pixel counts and hashes from one pass, a batch at a time
    if is_streamed_images(raw.x):
        streamed_images = pixel_pass(ds, raw.info["streaming"]["workers"])
    node = to_plain(data_cfg)
    task = ds.task
    warnings: list[str] = []
    report: dict[str, Any] = {
        "dataset": ds.name,
        "description": ds.source_info.get("description", ""),
        "source": {k: v for k, v in ds.source_info.items() if k not in ("files", "test_files")},
        "layout": ds.layout,
        "input_shape": list(ds.input_shape),
        "rows": int(sum(ds.split_sizes.values())),
        "splits": ds.split_sizes,
        "task": {**task.to_dict(), "configured": node.get("task", "auto") if ds.name in ("csv", "npz") else "fixed",
                 "inferred": ds.name in ("csv", "npz") and node.get("task", "auto") == "auto"},
        "features_after_preparation": int(np.prod(ds.input_shape)),
    }

    # target distribution
    ys = {s: getattr(ds, f"y_{s}").numpy() for s in ("train", "val", "test")}
    if task.is_classification:
        names = list(task.class_names) or [str(i) for i in range(task.num_classes)]
        per = {s: np.bincount(y, minlength=len(names)) for s, y in ys.items()}
        total = sum(per.values())
        classes = [{"class": n, "count": int(total[i]), "share": _num(total[i] / max(1, total.sum())),
                    **{s: int(per[s][i]) for s in per}} for i, n in enumerate(names)]
        nz = total[total > 0]
        ratio = float(nz.max() / nz.min()) if len(nz) else 1.0
        report["target"] = {"kind": "classes", "classes": classes, "imbalance_ratio": _num(ratio)}
        if ratio > IMBALANCE_RATIO:
            big, small = names[int(np.argmax(total))], names[int(np.argmin(total))]
            warnings.append(f"class imbalance: '{big}' has {int(total.max())} rows but '{small}' only "
                            f"{int(total.min())} (ratio {ratio:.1f}); accuracy will flatter the model, watch f1 "
                            "and consider more data for the rare class")
        rare = [names[i] for i in range(len(names)) if per["train"][i] < 5]
        if rare:
            warnings.append(f"classes with fewer than 5 training rows: {', '.join(rare[:10])}")
    else:
        y_all = np.concatenate([y.reshape(len(y), -1) for y in ys.values()])
        named = node.get("target") if raw.table is not None else None      # a table's target column(s)
        named = [named] if isinstance(named, str) else list(named or [])
        report["target"] = {"kind": "values", "targets": [
            {"index": j, **({"name": str(named[j])} if len(named) == y_all.shape[1] else {}),
             **_stats(y_all[:, j].astype(np.float64)),
             "median": _num(np.median(y_all[:, j])) if len(y_all) else None} for j in range(y_all.shape[1])]}

    preparation = preparation_for(ds.preprocessing)
    own = preparation.analysis(raw, ds, warnings)      # a kind's own section, e.g. text: lengths, vocabulary, ...
    # columns (tables), the kind's own section or per-feature statistics
    if own is not None:
        report.update(own)
    elif raw.table is not None:
        report["columns"] = _table_columns(raw, ds, warnings)
    else:
        report["features"] = (_array_features(raw, ds) if streamed_images is None else
                              [{k: v if k == "name" else _num(v) for k, v in f.items()}
                               for f in channel_stats(streamed_images[0])])
        report["constant_features"] = [f["name"] for f in report["features"] if f.get("std") == 0]
        if report["constant_features"]:
            warnings.append(f"{len(report['constant_features'])} constant feature(s): "
                            f"{', '.join(report['constant_features'][:10])}")

    # duplicates and rows shared between splits (on the prepared features the model sees)
    # (tables: on the raw feature values, so that imputation cannot make different rows look alike)
    hashes = preparation.row_hashes(raw, ds)            # text: the texts themselves, not their (cut) token ids
    if hashes is None and raw.table is not None:
        hashes = _table_row_hashes(raw, ds)
    elif hashes is None and streamed_images is not None:
        hashes = streamed_images[1]
    elif hashes is None:
        hashes = {s: _row_hashes(getattr(ds, f"x_{s}").numpy()) for s in ("train", "val", "test")}
    if raw.table is not None and raw.table.get("sampled_rows"):        # streamed: the sampled rows' targets
        test_frame = raw.table.get("test_frame")        # a streamed own test file: its sampled rows
        ys = {s: ys[s][np.isin(ds.split_indices[s], (test_frame if s == "test" and test_frame is not None
                                                     else raw.table["frame"]).index)] for s in ys}
        report["sample"] = {"rows": raw.table["sampled_rows"], "note": (    # streamed by choice or by the budget
            "the table was streamed (data.streaming): missing counts and numeric mean/std/min/max cover every "
            "row; unique counts, top values, plots, duplicates and rows shared between splits come from a seeded "
            f"sample of {raw.table['sampled_rows']:,} rows")}
    if streamed_images is not None:
        plotted = _plotted_images(ds)
        report["sample"] = {"images_plotted": plotted, "note": (
            "the image folder was streamed (data.streaming): class counts, image size and channels come from the "
            "file listing, and per-channel mean/std/min/max, duplicates and images shared between splits from one "
            "pass over every image, a batch at a time; only the figures are drawn from a sample: analysis.png "
            f"shows the first {SAMPLE_IMAGES_PER_CLASS} training images of each class ("
            + (f"of the first {SAMPLE_CLASSES} classes: " if ds.task.num_classes > SAMPLE_CLASSES else "")
            + f"{plotted} images)" + (f", augment_samples.png the first {AUGMENT_SAMPLES} training images"
                                      if ds.augment else ""))}
    labels = {s: [hash(np.asarray(v).tobytes()) for v in ys[s]] for s in ys}
    all_h = sum(hashes.values(), [])
    all_pairs = list(zip(all_h, sum(labels.values(), [])))
    dup_rows = len(all_pairs) - len(set(all_pairs))
    by_x: dict[int, set] = {}
    for h, lab in all_pairs:
        by_x.setdefault(h, set()).add(lab)
    conflicting = sum(1 for v in by_x.values() if len(v) > 1)
    train_set, val_set = set(hashes["train"]), set(hashes["val"])
    shared = {"val_in_train": sum(h in train_set for h in hashes["val"]),
              "test_in_train": sum(h in train_set for h in hashes["test"]),
              "test_in_val": sum(h in val_set for h in hashes["test"])}
    report["duplicates"] = {"duplicate_rows": int(dup_rows), "conflicting_feature_rows": int(conflicting),
                            "shared_between_splits": shared}
    if dup_rows:
        warnings.append(f"{dup_rows} duplicate row(s) (same features and target)")
    if conflicting:
        warnings.append(f"{conflicting} feature row(s) appear with different targets")
    if shared["val_in_train"] or shared["test_in_train"]:
        warnings.append(f"rows shared between splits: {shared['val_in_train']} validation and "
                        f"{shared['test_in_train']} test rows also appear in train; scores on them are optimistic")
    report["warnings"] = warnings
    return report, {"dataset": ds, "raw": raw}


def _table_row_hashes(raw, ds) -> dict[str, list[int]]:
    import pandas as pd

    plan = raw.table["plan"]
    frame, test_frame = raw.table["frame"], raw.table.get("test_frame")

    def h(f, rows):
        if raw.table.get("sampled_rows"):       # a streamed table: its sampled rows only
            rows = np.asarray(rows)[np.isin(rows, f.index)]
        part = f.loc[rows, plan.features].astype(object)
        return pd.util.hash_pandas_object(part.where(part.notna(), None), index=False).tolist()

    out = {s: h(frame, ds.split_indices[s]) for s in ("train", "val")}
    out["test"] = h(test_frame if test_frame is not None else frame, ds.split_indices["test"])
    return out


def _table_columns(raw, ds, warnings: list[str]) -> list[dict]:
    import pandas as pd

    frame = raw.table["frame"]
    if raw.table.get("test_frame") is not None:
        frame = pd.concat([frame, raw.table["test_frame"]], ignore_index=True)
    plan = raw.table["plan"]
    out = []
    sigs: dict[Any, str] = {}
    constant, duplicate = [], []
    targets, features = set(plan.target), set(plan.features)      # sets: linear in the number of columns
    for col in frame.columns:
        s = frame[col]
        role = ("target" if col in targets else "feature" if col in features
                else "split" if col == plan.split_column else "unused")
        kind = plan.kinds.get(col, "numeric" if pd.api.types.is_numeric_dtype(s.dtype) else "text")
        miss = int(s.isna().sum())
        exact = (raw.table.get("column_stats") or {}).get(col)     # streamed: counted over every row
        if exact is not None:
            miss = exact["missing"]
        entry: dict[str, Any] = {"name": str(col), "role": role, "dtype": str(s.dtype), "kind": kind,
                                 "missing": miss, "missing_share": _num(miss / max(1, exact["rows"] if exact
                                                                                  else len(s))),
                                 "unique": int(s.nunique(dropna=True))}
        if kind == "numeric" and role != "unused" or pd.api.types.is_numeric_dtype(s.dtype):
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            entry.update(_stats(v))
            if exact is not None and "mean" in exact:
                entry.update({k: _num(exact[k]) for k in ("mean", "std", "min", "max")})
        else:
            counts = s.astype(object).where(s.notna(), None).dropna().map(str).value_counts()
            if len(counts):
                entry.update({"top": str(counts.index[0]), "top_count": int(counts.iloc[0])})
        if role == "feature":
            if s.nunique(dropna=False) <= 1:
                constant.append(col)
                entry["constant"] = True
            sig = int(pd.util.hash_pandas_object(s.astype(object).where(s.notna(), None).map(str),
                                                  index=False).sum())
            if sig in sigs and frame[sigs[sig]].astype(object).equals(s.astype(object)):
                entry["duplicate_of"] = sigs[sig]
                duplicate.append((col, sigs[sig]))
            sigs.setdefault(sig, col)
            if miss:
                warnings.append(f"column '{col}' has {miss} missing value(s) ({100 * entry['missing_share']:.1f}%)")
            if (kind == "numeric" and entry["unique"] == len(s) and len(s) > 20
                    and pd.api.types.is_integer_dtype(s.dtype) and (s.is_monotonic_increasing
                                                                    or s.is_monotonic_decreasing)):
                warnings.append(f"column '{col}' counts the rows (an identifier?); drop it unless it carries "
                                f"information: data.drop=[{col}]")
            if kind == "categorical" and entry["unique"] > 0.5 * len(s) and len(s) > 20:
                warnings.append(f"column '{col}' has {entry['unique']} distinct values in {len(s)} rows "
                                "(an identifier or free text?)")
        out.append(entry)
    if constant:
        warnings.append(f"constant column(s), no information: {', '.join(map(str, constant))}")
    for a, b in duplicate:
        warnings.append(f"column '{a}' duplicates column '{b}'")
    return out


def _array_features(raw, ds) -> list[dict]:
    x = raw.x if raw.x is not None else ds.x_train.numpy()
    if raw.x_test is not None:
        x = np.concatenate([x, raw.x_test])
    scale = 255.0 if ds.pixels is not None else 1.0     # uint8 pixels: described in [0, 1], as the network sees them
    if ds.layout == "flat":
        names = ds.feature_names or [f"x{i}" for i in range(x.shape[1])]
        cols = [(names[i], x[:, i]) for i in range(min(x.shape[1], MAX_FEATURE_STATS))]
    elif ds.layout == "sequence":
        cols = [(f"feature {i} (all time steps)", x[:, :, i].ravel()) for i in range(min(x.shape[2], MAX_FEATURE_STATS))]
    else:
        cols = [(f"channel {i} (all pixels)", x[:, i].ravel()) for i in range(min(x.shape[1], MAX_FEATURE_STATS))]
    # A column at a time in float64: a whole image folder at 8 bytes a value could not fit in memory.
    return [{"name": n, **_stats(np.asarray(v, dtype=np.float64).ravel() / scale)} for n, v in cols]


# ----------------------------------------------------------------------------------------------- output
def print_report(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 120))
    t = report["task"]
    overview = Table(title=f"netkiln analyze: {report['dataset']}", show_header=False, title_justify="left")
    overview.add_column(style="bold")
    overview.add_column()
    src = report["source"]
    overview.add_row("source", str(src.get("file") or src.get("folder") or src.get("source", report["dataset"])))
    if report["description"]:
        overview.add_row("description", report["description"])
    overview.add_row("rows", f"{report['rows']} (train {report['splits']['train']} / val {report['splits']['val']} "
                             f"/ test {report['splits']['test']})")
    overview.add_row("layout", f"{report['layout']} {tuple(report['input_shape'])}, "
                               f"{report['features_after_preparation']} values per row after preparation")
    task_text = {"multiclass": f"multiclass, {t['num_outputs']} classes", "binary": "binary",
                 "regression": f"regression, {t['num_outputs']} target(s)"}[t["kind"]]
    overview.add_row("task", task_text + (" (inferred)" if t.get("inferred") else ""))
    for k in ("rows_in_file", "rows_after_filter", "rows_dropped_no_target", "rows_dropped_missing"):
        if k in src:
            overview.add_row(k.replace("_", " "), str(src[k]))
    console.print(overview)

    if "columns" in report:
        cols = Table(title="columns", title_justify="left")
        for h in ("column", "role", "type", "missing", "unique", "mean", "std", "min", "max", "top"):
            cols.add_column(h, justify="right" if h in ("missing", "unique", "mean", "std", "min", "max") else "left",
                            no_wrap=h in ("role", "type", "missing"))
        for c in report["columns"]:
            flag = " (constant)" if c.get("constant") else (f" (= {c['duplicate_of']})" if c.get("duplicate_of") else "")
            cols.add_row(c["name"] + flag, c["role"], c["kind"],
                         f"{c['missing']}" + (f" ({100 * c['missing_share']:.0f}%)" if c["missing"] else ""),
                         str(c["unique"]), *(_fmt(c.get(k)) for k in ("mean", "std", "min", "max")),
                         f"{c['top']} ×{c['top_count']}" if "top" in c else "")
        console.print(cols)
    elif "text" in report:
        from .analyze_text import print_text
        print_text(report["text"], console)
    elif report.get("features"):
        feats = Table(title="features", title_justify="left")
        for h in ("feature", "mean", "std", "min", "max"):
            feats.add_column(h, justify="left" if h == "feature" else "right")
        shown = report["features"][:30]
        for f in shown:
            feats.add_row(f["name"], *(_fmt(f.get(k)) for k in ("mean", "std", "min", "max")))
        if len(report["features"]) > len(shown):
            feats.add_row(f"... {len(report['features']) - len(shown)} more in analysis.json", "", "", "", "")
        console.print(feats)

    tg = report["target"]
    if tg["kind"] == "classes":
        tab = Table(title=f"target distribution (imbalance ratio {tg['imbalance_ratio']:.2f})", title_justify="left")
        for h in ("class", "count", "share", "train", "val", "test"):
            tab.add_column(h, justify="left" if h == "class" else "right")
        for c in tg["classes"]:
            tab.add_row(c["class"], str(c["count"]), f"{100 * c['share']:.1f}%", str(c["train"]), str(c["val"]),
                        str(c["test"]))
    else:
        tab = Table(title="target values", title_justify="left")
        for h in ("target", "mean", "std", "min", "median", "max"):
            tab.add_column(h, justify="right")
        for c in tg["targets"]:
            tab.add_row(str(c.get("name", c["index"])),
                        *(_fmt(c.get(k)) for k in ("mean", "std", "min", "median", "max")))
    console.print(tab)

    d = report["duplicates"]
    s = d["shared_between_splits"]
    console.print(f"duplicate rows: {d['duplicate_rows']}; same features with different targets: "
                  f"{d['conflicting_feature_rows']}; shared between splits: val∩train {s['val_in_train']}, "
                  f"test∩train {s['test_in_train']}, test∩val {s['test_in_val']}")
    if "sample" in report:          # streamed: which numbers cover every row and which come from a sample
        console.print(f"[bold]sampled:[/bold] {report['sample']['note']}", highlight=False)
    if report["warnings"]:
        for w in report["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    else:
        console.print("[green]no warnings[/green]")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plot_report(report: dict, context: dict, path) -> None:
    """Target histogram plus feature histograms (tables, flat arrays) or sample images / sequences."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds, raw = context["dataset"], context["raw"]
    if ds.layout == "tokens":
        from .analyze_text import plot_text
        fig = plot_text(plt, report, ds, _plot_target, _grid)
    elif ds.layout == "image":
        fig = _plot_images(plt, report, ds)
    elif ds.layout == "sequence":
        fig = _plot_sequences(plt, report, ds)
    else:
        fig = _plot_features(plt, report, ds, raw)
    from netkiln.io.files import write_atomic

    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    finally:
        plt.close(fig)


def _plot_target(ax, report: dict, ds) -> None:
    tg = report["target"]
    if tg["kind"] == "classes":
        names = [c["class"] for c in tg["classes"]]
        ax.bar(range(len(names)), [c["count"] for c in tg["classes"]], color="tab:blue")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n[:12] for n in names], rotation=45 if len(names) > 4 else 0, fontsize=7)
    else:
        y = np.concatenate([ds.y_train.numpy(), ds.y_val.numpy(), ds.y_test.numpy()]).reshape(-1)
        ax.hist(y, bins=30, color="tab:blue")
    ax.set_title("target", fontsize=9, fontweight="bold")


def _grid(plt, n: int, cols: int = 4):
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat


def _plot_features(plt, report: dict, ds, raw):
    panels: list[tuple[str, Any]] = []
    if raw.table is not None:
        frame = raw.table["frame"]
        plan = raw.table["plan"]
        for col in plan.features[:PLOT_FEATURES]:
            panels.append((col, (plan.kinds.get(col), frame[col])))
    else:
        x = raw.x if raw.x is not None else ds.x_train.numpy()
        names = ds.feature_names or [f"x{i}" for i in range(x.shape[1])]
        for i in range(min(PLOT_FEATURES, x.shape[1])):
            panels.append((names[i], ("numeric", x[:, i])))
    fig, axes = _grid(plt, 1 + len(panels))
    _plot_target(axes[0], report, ds)
    for ax, (name, (kind, values)) in zip(axes[1:], panels):
        if kind == "categorical":
            import pandas as pd
            counts = pd.Series(values).dropna().map(str).value_counts().head(10)
            ax.bar(range(len(counts)), counts.to_numpy(), color="tab:orange")
            ax.set_xticks(range(len(counts)))
            ax.set_xticklabels([str(i)[:10] for i in counts.index], rotation=45, fontsize=7)
        else:
            import pandas as pd
            v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            v = v[np.isfinite(v)]
            ax.hist(v, bins=30, color="tab:green")
        ax.set_title(str(name)[:30], fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _plotted_images(ds) -> int:
    """How many images analysis.png shows (_samples_per_class's)."""
    if not ds.task.is_classification:
        return min(SAMPLE_IMAGES_PER_CLASS, len(ds.y_train))
    counts = np.bincount(ds.y_train.numpy().reshape(-1), minlength=ds.task.num_classes)[:SAMPLE_CLASSES]
    return int(np.minimum(counts, SAMPLE_IMAGES_PER_CLASS).sum())


def _samples_per_class(ds, k: int) -> list[tuple[str, list[np.ndarray]]]:
    x, y = ds.x_train, ds.y_train.numpy().reshape(len(ds.y_train), -1)
    task = ds.task

    def rows(idx) -> list[np.ndarray]:              # as the network sees them (uint8 pixels scaled)
        return list(ds.floats(x[np.asarray(idx, dtype=np.int64)]).numpy()) if len(idx) else []

    if not task.is_classification:
        return [("samples", rows(range(min(k, len(x)))))]
    out = []
    for c, name in enumerate(task.class_names[:SAMPLE_CLASSES]):
        out.append((name, rows(np.flatnonzero(y[:, 0] == c)[:k])))
    return out


def _plot_images(plt, report: dict, ds):
    groups = _samples_per_class(ds, SAMPLE_IMAGES_PER_CLASS)
    fig, axes = plt.subplots(len(groups) + 1, 4, figsize=(8, 2 * (len(groups) + 1)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0][0].axis("on")
    _plot_target(axes[0][0], report, ds)
    for r, (name, imgs) in enumerate(groups, start=1):
        for c, img in enumerate(imgs):
            a = np.transpose(img, (1, 2, 0))
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 1:                                 # standardised: stretch for display
                a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
            axes[r][c].imshow(a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3], cmap="gray" if a.shape[2] == 1 else None)
            axes[r][c].set_title(str(name)[:16], fontsize=8)
    fig.tight_layout()
    return fig


def plot_augment_samples(ds, seed: int, path, count: int = AUGMENT_SAMPLES, variants: int = 4) -> None:
    """data.augment: a PNG grid, one training image a row, the original then `variants` augmented draws."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from netkiln.data.augment import training_inputs
    from netkiln.io.files import write_atomic

    inputs = training_inputs(ds, seed)
    inputs.new_epoch(seed, 0)
    x = ds.x_train[:count]
    shown = [ds.floats(x)] + [inputs(x) for _ in range(variants)]
    fig, axes = plt.subplots(len(x), variants + 1, figsize=(1.6 * (variants + 1), 1.6 * max(1, len(x))),
                             squeeze=False)
    for r in range(len(x)):
        for c, batch in enumerate(shown):
            a = np.transpose(batch[r].detach().to(torch.float32).numpy(), (1, 2, 0))
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 1:                                 # standardised: stretch for display
                a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
            ax = axes[r][c]
            ax.imshow(a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3], cmap="gray" if a.shape[2] == 1 else None)
            ax.axis("off")
            if r == 0:
                ax.set_title("original" if c == 0 else f"augmented {c}", fontsize=8)
    fig.tight_layout()
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    finally:
        plt.close(fig)


def _plot_sequences(plt, report: dict, ds):
    groups = _samples_per_class(ds, 3)
    fig, axes = _grid(plt, 1 + len(groups), cols=3)
    _plot_target(axes[0], report, ds)
    for ax, (name, seqs) in zip(axes[1:], groups):
        for s in seqs:
            ax.plot(s[:, 0], linewidth=1)
        title = f"class {str(name)[:20]}" if ds.task.is_classification else "samples"
        ax.set_title(f"{title} (feature 0)", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
