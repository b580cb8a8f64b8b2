"""report.html: the page a person opens after a sweep, self-contained (inline CSS, SVG and a few lines of JS).

The leaderboard (sortable), the best value so far over the trials, every trial's validation curve, parallel
coordinates of the swept parameters, parameter importance and a card for the best model. Reading the trial files is
kept apart from drawing: the `*_svg` / `*_html` functions take plain data and return HTML text. Every text that comes
from a file (overrides, errors, class names, metric names) goes through `html.escape`.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path

from netkiln.sweep.cv_columns import fold_count, fold_std
from netkiln.sweep.objectives import metric_value

W, H = 640, 300            # chart size in SVG units
PAD = 48
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def format_cell(value) -> str:
    """A leaderboard cell as text: floats to 4 decimals (4 significant digits when large), None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def finite_number(value) -> float | None:
    """`value` as a finite float, or None (missing, not a number, NaN or infinite)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- reading what the trials left

def read_curve(history_csv: Path, metric: str) -> list[tuple[int, float]]:
    """(epoch, value) of `metric` per epoch from a trial's history.csv; epochs without a validation value skipped."""
    try:
        with open(history_csv, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    points = []
    for i, row in enumerate(rows):
        value = finite_number(row.get(metric))
        if value is not None:
            points.append((int(finite_number(row.get("epoch")) or i), value))
    return points


def fold_curves(trial_dir: Path, metric: str) -> list[list[tuple[int, float]]]:
    """A cross-validation trial's curves, one per fold (fold-k/history.csv, in fold order); [] for other trials."""
    folds = [d for d in Path(trial_dir).glob("fold-*") if d.name[5:].isdigit() and not d.is_symlink()]
    return [read_curve(d / "history.csv", metric) for d in sorted(folds, key=lambda d: int(d.name[5:]))]


def mean_curve(folds: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The folds' mean per epoch, at the epochs every fold reached (an early-stopped fold ends the mean: a mean over
    fewer folds would jump)."""
    by_fold = [dict(points) for points in folds if points]
    if not by_fold or len(by_fold) < len(folds):
        return []
    epochs = sorted(set.intersection(*(set(points) for points in by_fold)))
    return [(epoch, sum(points[epoch] for points in by_fold) / len(by_fold)) for epoch in epochs]


def split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def varying_params(trials) -> list[str]:
    """The override keys whose value is not the same in every trial, in first-seen order."""
    values: dict[str, set] = {}
    for trial in trials:
        for key, value in map(split_override, trial.overrides):
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items()
            if len(seen) > 1 or any(key not in dict(map(split_override, t.overrides)) for t in trials)]


def optuna_importance(sweep_dir: Path) -> tuple[dict[str, float] | None, str]:
    """optuna's parameter importances from the sweep's optuna.db, or None and why not."""
    db = Path(sweep_dir) / "optuna.db"
    if not db.is_file():
        return None, "no optuna.db (not an Optuna sweep)"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{db.resolve()}"
        names = optuna.study.get_all_study_names(storage)
        if not names:
            return None, "optuna.db holds no study"
        study = optuna.load_study(study_name="netkiln" if "netkiln" in names else names[0], storage=storage)
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        params = {name for trial in done for name in trial.params}
        if len(done) < 2 or len(params) < 2:
            return None, f"Optuna importance needs >= 2 finished trials and > 1 parameter ({len(done)} finished, " \
                         f"{len(params)} parameter{'s' * (len(params) != 1)})"
        # Named explicitly: the label must say which method computed the figures (Optuna 5's default is PED-ANOVA,
        # earlier versions' fANOVA). PED-ANOVA follows the study's direction(s); with several objectives it rates
        # what it takes to reach the best (Pareto) trials.
        importance = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        several = len(study.directions) > 1
        return dict(importance), "Optuna (PED-ANOVA) importance" + (" for the Pareto front" if several else "")
    except Exception as err:        # a damaged or foreign database: the rest of the report still stands
        return None, f"Optuna importance failed: {type(err).__name__}: {err}"


def objective(trial, primary=None) -> float | None:
    """A finished trial's value of the sweep's primary objective (without objectives: its monitored value); a pruned
    trial's last value is not its result."""
    if trial.status != "ok":
        return None
    return trial.value if primary is None else metric_value(trial.metrics, primary.metric)


def spread_importance(trials, params: list[str], primary=None) -> dict[str, float]:
    """Per parameter: the range of the mean objective over its values (a crude importance, for grid sweeps)."""
    result = {}
    for key in params:
        groups: dict[str, list[float]] = {}
        for trial in trials:
            if objective(trial, primary) is not None:
                groups.setdefault(dict(map(split_override, trial.overrides)).get(key, "(default)"), []).append(
                    objective(trial, primary))
        means = [sum(v) / len(v) for v in groups.values()]
        if len(means) > 1:
            result[key] = max(means) - min(means)
    return result


def read_evaluation(run_dir: Path) -> dict:
    """The run's own evaluation (`netkiln evaluate` writes <run>/evaluation/evaluation.json), or {}."""
    try:
        evaluation = json.loads((run_dir / "evaluation" / "evaluation.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return evaluation if isinstance(evaluation, dict) else {}


def best_images(run_dir: Path) -> list[tuple[str, str]]:
    """(title, data URI) of a confusion matrix or residual plot netkiln wrote for this run (evaluation folders)."""
    images = []
    for folder in [run_dir, *sorted(run_dir.glob("evaluation*"))]:
        for name in ("confusion_matrix.png", "residuals.png"):
            path = folder / name
            if path.is_file() and not path.is_symlink():
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                images.append((f"{folder.name}/{name}", f"data:image/png;base64,{data}"))
    return images


# ---------------------------------------------------------------- drawing (data in, SVG/HTML text out)

class _Scale:
    def __init__(self, low: float, high: float, out_low: float, out_high: float, log: bool = False):
        self.log = log and low > 0
        f = math.log10 if self.log else float
        self.low, self.high = f(low), f(high)
        if self.high == self.low:
            self.low, self.high = self.low - 1, self.high + 1
        self.out_low, self.out_high = out_low, out_high

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return self.out_low + (v - self.low) / (self.high - self.low) * (self.out_high - self.out_low)


def _axes(xs: _Scale, ys: _Scale, x_label: str, y_label: str, x_ticks: list[float], y_ticks: list[float]) -> str:
    parts = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" class="ax"/>',
             f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" class="ax"/>']
    for t in x_ticks:
        parts.append(f'<text x="{xs(t):.1f}" y="{H - PAD + 16}" text-anchor="middle">{esc(_tick(t))}</text>')
    for t in y_ticks:
        parts.append(f'<text x="{PAD - 4}" y="{ys(t) + 4:.1f}" text-anchor="end">{esc(_tick(t))}</text>'
                     f'<line x1="{PAD}" x2="{W - 10}" y1="{ys(t):.1f}" y2="{ys(t):.1f}" class="grid"/>')
    parts.append(f'<text x="{(PAD + W) / 2}" y="{H - 8}" text-anchor="middle">{esc(x_label)}</text>')
    parts.append(f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle">'
                 f'{esc(y_label)}</text>')
    return "".join(parts)


def _tick(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() and abs(value) < 1e6 else f"{value:.3g}"


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    if high == low:
        return [low]
    return [low + (high - low) * i / (n - 1) for i in range(n)]


def _svg(body: str, label: str, width: int = W, height: int = H) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{esc(label)}">{body}</svg>')


def _figure(value: float) -> str:
    """A value in a tooltip: a count (parameters) as a whole number, anything else to 4 decimals."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.4f}"


def best_so_far_svg(values: list[float | None], names: list[str], mode: str, monitor: str) -> str:
    """Each trial's objective (dots) and the best so far (step line) over trial order."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return '<p class="note">No trial has a value yet.</p>'
    ys_all = [v for _, v in points]
    xs = _Scale(0, max(len(values) - 1, 1), PAD, W - 20)
    ys = _Scale(min(ys_all), max(ys_all), H - PAD, 20)
    pick = max if mode == "max" else min
    best, path = None, []
    for i, v in points:          # a step line: flat until a trial beats the best so far
        best = v if best is None else pick(best, v)
        path.append(f"M{xs(i):.1f},{ys(best):.1f}" if not path else f"H{xs(i):.1f} V{ys(best):.1f}")
    path.append(f"H{xs(len(values) - 1):.1f}")
    dots = "".join(f'<circle cx="{xs(i):.1f}" cy="{ys(v):.1f}" r="4" class="dot">'
                   f'<title>trial {esc(names[i])}: {_figure(v)}</title></circle>' for i, v in points)
    x_ticks = sorted({0, len(values) - 1, *range(0, len(values), max(1, len(values) // 8))})
    body = (_axes(xs, ys, "trial (in order run)", f"{monitor} ({mode})", x_ticks, _ticks(min(ys_all), max(ys_all)))
            + f'<path d="{" ".join(path)}" class="best"/>' + dots)
    return _svg(body, "best so far")


def _path(points: list[tuple[int, float]], xs: _Scale, ys: _Scale) -> str:
    return " ".join(f"{'M' if j == 0 else 'L'}{xs(x):.1f},{ys(y):.1f}" for j, (x, y) in enumerate(points))


def curves_svg(curves: dict[str, list[tuple[int, float]]], best_name: str | None, monitor: str,
               folds: dict[str, list[list[tuple[int, float]]]] | None = None) -> str:
    """Every trial's monitored metric per epoch, overlaid; the best trial drawn thick. A cross-validation trial
    (`folds`: its folds' curves) is drawn as its folds' mean, each fold thin and faint in the same colour."""
    folds = folds or {}
    curves = {name: pts for name, pts in curves.items() if pts or any(folds.get(name, []))}
    if not curves:
        return '<p class="note">No trial has a validation curve (history.csv) yet.</p>'
    every = [pts for name, pts in curves.items()] + [pts for per_fold in folds.values() for pts in per_fold]
    all_x = [x for pts in every for x, _ in pts]
    all_y = [y for pts in every for _, y in pts]
    xs = _Scale(min(all_x), max(max(all_x), min(all_x) + 1), PAD, W - 20)
    ys = _Scale(min(all_y), max(all_y), H - PAD, 20)
    lines, legend = [], []
    for k, (name, pts) in enumerate(curves.items()):
        color = COLORS[k % len(COLORS)]
        legend.append(f'<span class="key" style="background:{color}"></span>{esc(name)}'
                      + (" (best)" if name == best_name else ""))
        for fold, fold_pts in enumerate(folds.get(name, [])):
            if fold_pts:
                lines.append(f'<path d="{_path(fold_pts, xs, ys)}" stroke="{color}" stroke-width="1" opacity="0.4" '
                             f'fill="none" class="fold"><title>trial {esc(name)}, fold {fold}</title></path>')
        if not pts:
            continue
        width = 3.5 if name == best_name else 1.5
        title = f"trial {name}"
        if folds.get(name):             # the mean's figures, to read off the chart
            title += f", mean of {len(folds[name])} folds: " + ", ".join(f"epoch {x} {y:.4f}" for x, y in pts)
        lines.append(f'<path d="{_path(pts, xs, ys)}" stroke="{color}" stroke-width="{width}" fill="none">'
                     f'<title>{esc(title)}</title></path>')
        if len(pts) == 1:
            lines.append(f'<circle cx="{xs(pts[0][0]):.1f}" cy="{ys(pts[0][1]):.1f}" r="3" fill="{color}"/>')
    x_ticks = sorted(set(all_x)) if len(set(all_x)) <= 10 else _ticks(min(all_x), max(all_x))
    body = _axes(xs, ys, "epoch", monitor, x_ticks, _ticks(min(all_y), max(all_y))) + "".join(lines)
    note = ('<p class="note">Cross-validation trials: the folds\' mean per epoch (at the epochs every fold reached), '
            "each fold thin.</p>" if any(pts for per_fold in folds.values() for pts in per_fold) else "")
    return _svg(body, "validation curves") + f'<p class="legend">{" ".join(legend)}</p>' + note


def _color(t: float) -> str:
    """0 -> bad (red), 1 -> good (green)."""
    t = min(max(t, 0.0), 1.0)
    r, g, b = (int(215 - 170 * t), int(48 + 130 * t), int(39 + 40 * t))
    return f"#{r:02x}{g:02x}{b:02x}"


def parallel_svg(params: list[str], rows: list[tuple[str, dict[str, str], float | None]], mode: str,
                 objective_name: str = "value") -> str:
    """Parallel coordinates: one axis per varying parameter and a last one for the objective, one line per trial
    coloured by its objective (a trial without a value stops at the last parameter)."""
    if not params:
        return '<p class="note">No parameter varies between the trials.</p>'
    n_axes = len(params) + 1
    left = max(PAD, 4 + 3.5 * len(params[0]))         # the first axis's name is centred on it: keep it in view
    width = max(W, 150 * n_axes + 2 * PAD)
    top, bottom = 30, H - 30
    width += 100                 # room for the labels right of the last axis
    axes_x = [left + (width - left - 120) * i / (n_axes - 1) for i in range(n_axes)]
    scales, parts = [], []
    for key, x in zip(params, axes_x):
        values = [r[1].get(key, "(default)") for r in rows]
        numbers = [finite_number(v) for v in values]
        if all(n is not None for n in numbers):
            low, high = min(numbers), max(numbers)
            log = low > 0 and high / low >= 100
            scale = _Scale(low, high, bottom, top, log=log)
            scales.append(lambda v, s=scale: s(float(v)))
            labels = sorted(set(numbers))
            labels = labels if len(labels) <= 4 else [low, high]
            ticks = [(scale(n), _tick(n)) for n in labels]
        else:
            cats = sorted(set(values))
            pos = {c: bottom - (bottom - top) * (i + 0.5) / len(cats) for i, c in enumerate(cats)}
            scales.append(lambda v, p=pos: p[v])
            ticks = [(pos[c], c) for c in cats]
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" class="ax"/>'
                     f'<text x="{x:.1f}" y="{top - 10}" text-anchor="middle" class="axname">{esc(key)}</text>')
        parts += [f'<text x="{x + 4:.1f}" y="{y + 4:.1f}">{esc(label)}</text>' for y, label in ticks]
    values = [r[2] for r in rows if r[2] is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    objective_scale = _Scale(low, high, bottom, top)
    x = axes_x[-1]
    parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" class="ax"/>'
                 f'<text x="{x:.1f}" y="{top - 10}" text-anchor="middle" class="axname">{esc(objective_name)}</text>')
    parts += [f'<text x="{x + 4:.1f}" y="{objective_scale(v) + 4:.1f}">{esc(_tick(v))}</text>'
              for v in sorted({low, high}) if values]
    lines = []
    for name, overrides, value in rows:
        ys = [scale(overrides.get(key, "(default)")) for key, scale in zip(params, scales)]
        if value is not None:
            ys.append(objective_scale(value))
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(axes_x, ys))
        if value is None:
            style = 'stroke="#aaa" stroke-dasharray="4 3"'
        else:
            t = 0.5 if high == low else (value - low) / (high - low)
            style = f'stroke="{_color(t if mode == "max" else 1 - t)}"'
        label = f"trial {name}: " + (_figure(value) if value is not None else "no value")
        lines.append(f'<polyline points="{points}" {style} stroke-width="2.5" fill="none" opacity="0.85">'
                     f'<title>{esc(label)}</title></polyline>')
    body = "".join(lines) + "".join(parts)
    legend = ('<p class="legend"><span class="key" style="background:#d73027"></span>worst '
              '<span class="key" style="background:#2db24f"></span>best '
              '<span class="key" style="background:#aaa"></span>no value (failed, pruned, incomplete)</p>')
    return _svg(body, "parallel coordinates", width=int(width)) + legend


def importance_svg(importance: dict[str, float], label: str) -> str:
    items = sorted(importance.items(), key=lambda kv: -kv[1])
    top = max((v for _, v in items), default=0) or 1.0
    bar_h, left = 26, 220
    body = []
    for i, (name, value) in enumerate(items):
        y = 10 + i * bar_h
        width = (W - left - 80) * value / top
        body.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{esc(name)}</text>'
                    f'<rect x="{left}" y="{y}" width="{width:.1f}" height="{bar_h - 8}" class="bar"/>'
                    f'<text x="{left + width + 4:.1f}" y="{y + 15}">{value:.3g}</text>')
    return _svg("".join(body), label, height=20 + bar_h * len(items))


def table_html(columns: list[str], rows: list[dict]) -> str:
    head = "".join(f'<th data-col="{i}">{esc(c)}</th>' for i, c in enumerate(columns))
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            sort = value if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
            cls = {"error": ' class="err"', "status": ' class="status"'}.get(c, "")
            cells.append(f'<td data-v="{esc(sort)}"{cls}>{esc(format_cell(value))}</td>')
        body.append(f'<tr class="st-{esc(row.get("status"))}">{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table id="leaderboard"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _with_spread(metrics: dict, split: str, name: str) -> str:
    """A metric as text, "0.9526 ± 0.0517" for a cross-validation trial's mean (its folds' standard deviation)."""
    text = format_cell((metrics.get(split) or {}).get(name))
    std = fold_std(metrics, split, name)
    return f"{text} ± {std:.4f}" if text and std is not None else text


def metrics_table(metrics: dict) -> str:
    names = sorted({n for split in ("val", "test") for n in (metrics.get(split) or {})})
    if not names:
        return '<p class="note">No val/test metrics.</p>'
    rows = "".join(f"<tr><th>{esc(n)}</th>" + "".join(
        f"<td>{esc(_with_spread(metrics, s, n))}</td>" for s in ("val", "test")) + "</tr>" for n in names)
    folds = fold_count(metrics)
    note = f'<p class="note">val: the mean ± standard deviation over {folds} folds.</p>' if folds else ""
    return f'<table class="small"><tr><th></th><th>val</th><th>test</th></tr>{rows}</table>{note}'


def confusion_html(matrix: list[list], labels: list) -> str:
    head = "".join(f"<th>{esc(label)}</th>" for label in labels)
    rows = "".join(f"<tr><th>{esc(labels[i] if i < len(labels) else i)}</th>"
                   + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for i, row in enumerate(matrix))
    return f'<table class="small"><tr><th>true \\ predicted</th>{head}</tr>{rows}</table>'


def best_card(best, images: list[tuple[str, str]], evaluation: dict) -> str:
    if best is None:
        return '<p class="note">No trial finished successfully.</p>'
    m = best.metrics
    overrides = "".join(f"<li><code>{esc(o)}</code></li>" for o in best.overrides) or "<li>(the defaults)</li>"
    split, _, name = str(m.get("monitor")).partition("/")
    std = fold_std(m, split, name)
    spread = f" ± {std:.4f} (mean of {fold_count(m)} folds)" if std is not None else ""
    parts = [f'<div class="card"><h3>Trial {esc(best.name)}: {esc(m.get("monitor"))} = {best.value:.4f}'
             f'{esc(spread)}</h3>',
             f'<p>Bundle: <code>{esc(best.path / "model")}</code> (also <code>best/</code>)</p>',
             f"<h4>Overrides (its difference from the defaults)</h4><ul>{overrides}</ul>",
             "<h4>Metrics</h4>", metrics_table(m)]
    matrix = evaluation.get("confusion_matrix")
    if images:
        parts += [f'<h4>{esc(title)}</h4><img alt="{esc(title)}" src="{uri}" class="plot"/>' for title, uri in images]
    elif isinstance(matrix, list):
        parts += ["<h4>Confusion matrix</h4>", confusion_html(matrix, evaluation.get("labels") or [])]
    else:
        parts.append('<p class="note">No confusion matrix or residual plot in this run; '
                     f'<code>netkiln evaluate run={esc(best.path)}</code> writes one.</p>')
    return "".join(parts) + "</div>"


CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
#leaderboard th{background:#f3f3f3;cursor:pointer;user-select:none}
#leaderboard th[aria-sort=ascending]::after{content:" \\25B2"}
#leaderboard th[aria-sort=descending]::after{content:" \\25BC"}
td.status{font-weight:600} tr.st-ok td.status{color:#1a7f37}
tr.st-failed td.status,tr.st-damaged td.status{color:#b42318}
tr.st-pruned td.status{color:#9a6700} tr.st-failed,tr.st-damaged{background:#fdecea} .scroll{overflow-x:auto}
tr.st-pruned{background:#fff6d9} tr.st-incomplete,tr.st-retried{color:#888}
td.err{font-family:monospace;font-size:12px;max-width:480px;white-space:pre-wrap}
svg text{font-size:11px;fill:#333} .ax{stroke:#333} .grid{stroke:#eee} .axname{font-weight:600;font-size:12px}
.best{stroke:#1f77b4;stroke-width:2.5;fill:none} .dot{fill:#ff7f0e} .bar{fill:#4c78a8}
.key{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:middle}
.note{color:#666;font-style:italic} .card{border:1px solid #ccc;border-radius:6px;padding:8px 16px}
.plot{max-width:520px} table.small td{text-align:right}
"""

# Click a header: sort the rows by that column (numbers by data-v, text otherwise); click again: the other way.
SCRIPT = """
(function(){
  var table=document.getElementById('leaderboard'); if(!table) return;
  table.classList.add('sortable');
  var ths=table.tHead.rows[0].cells;
  Array.prototype.forEach.call(ths,function(th,col){
    th.title='click to sort';
    th.addEventListener('click',function(){
      var asc=th.getAttribute('aria-sort')!=='ascending';
      Array.prototype.forEach.call(ths,function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
      function key(r){var c=r.cells[col],v=c.getAttribute('data-v');return v!==''?parseFloat(v):c.textContent;}
      rows.sort(function(a,b){var x=key(a),y=key(b),n=typeof x==='number',m=typeof y==='number';
        if(n!==m) return n?-1:1; var d=n?x-y:String(x).localeCompare(String(y)); return asc?d:-d;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
})();
"""


def render(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{esc(heading)}</h2>{content}" for heading, content in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>{body}<script>{SCRIPT}</script></body></html>\n")


def report_html(sweep_dir: Path, trials: list, rows: list[dict], columns: list[str], best, primary=None) -> str:
    """The whole report of a sweep directory. trials in run order, rows (leaderboard.build_rows) in rank order;
    `primary`: the sweep's primary objective (sweep/objectives.py), which the charts of the trials' results show;
    None: the monitored metric."""
    sweep_dir = Path(sweep_dir)
    sample = best or next((t for t in trials if t.metrics.get("monitor")), None)
    monitor = str(sample.metrics.get("monitor", "value")) if sample else "value"
    mode = str(sample.metrics.get("mode", "max")) if sample else "max"
    if primary is not None:             # what the trials are ranked by
        goal, goal_mode = primary.metric, primary.mode
    else:
        goal, goal_mode = monitor, mode
    counts = {}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())

    params = varying_params(trials)
    param_rows = [(t.name, dict(map(split_override, t.overrides)), objective(t, primary)) for t in trials]
    importance, why = optuna_importance(sweep_dir)
    if importance is None:
        spread = spread_importance(trials, params, primary)
        if spread:
            importance, why = spread, f"{why}; shown instead: the range of the mean {goal} over each " \
                                      "parameter's values"
    importance_part = (f'<p class="note">{esc(why)}</p>'
                       + (importance_svg(importance, "importance") if importance else ""))
    folds = {t.name: fold_curves(t.path, monitor) for t in trials}
    curves = {t.name: mean_curve(folds[t.name]) if folds[t.name] else read_curve(t.path / "history.csv", monitor)
              for t in trials}
    card = (best_card(best, best_images(best.path), read_evaluation(best.path)) if best is not None
            else best_card(None, [], {}))
    sections = [
        ("Leaderboard", f"<p>{len(trials)} trials: {esc(summary)}. Click a column header to sort.</p>"
                        + table_html(columns, rows)),
        ("Best model", card),
        (f"Best {goal} so far" + (" (the primary objective)" if primary is not None and goal != monitor else ""),
         best_so_far_svg([objective(t, primary) for t in trials], [t.name for t in trials], goal_mode, goal)),
        (f"Validation curves ({monitor} per epoch)", curves_svg(curves, best.name if best else None, monitor, folds)),
        ("Parallel coordinates of the swept parameters", parallel_svg(params, param_rows, goal_mode, goal)),
        ("Parameter importance", importance_part),
    ]
    from netkiln.sweep.objectives import sweep_objectives
    objectives, constraints = sweep_objectives(sweep_dir)
    if best is None and constraints and any(t.status == "ok" for t in trials):
        sections[1] = ("Best model", f'<p class="note">No finished trial meets {esc(constraints.describe())} '
                                     "(the constraints column says what each breaks).</p>")
    if len(objectives) > 1:             # several objectives: their trade-off, after the best model
        from netkiln.sweep.pareto_plot import pareto_svg
        sections.insert(2, (f"Pareto front: {objectives[0]} against {objectives[1]}",
                            pareto_svg(trials, objectives, best.name if best else None)))
    return render(f"Sweep report: {sweep_dir}", sections)
