"""report.html's Pareto plot: the finished trials by their first two objectives, the front highlighted.

Data in, SVG text out, with report.py's axes and scales. With more than two objectives the plot shows the first two,
and front membership still counts every objective (a front member may look dominated in the projection).
"""
from __future__ import annotations

from netkiln.sweep.objectives import Objective
from netkiln.sweep.pareto import objective_points, pareto_front
from netkiln.sweep.report import COLORS, H, PAD, W, _axes, _Scale, _svg, _ticks, esc


def _scale(values: list[float], out_low: float, out_high: float) -> _Scale:
    """A scale with a margin around the data, so no point sits on an axis."""
    low, high = min(values), max(values)
    # Parameter counts and latencies often span decades: a log axis keeps the small models apart.
    if low > 0 and high / low >= 100:
        margin = (high / low) ** 0.06
        return _Scale(low / margin, high * margin, out_low, out_high, log=True)
    margin = 0.06 * ((high - low) or abs(high) or 1.0)
    return _Scale(low - margin, high + margin, out_low, out_high)


def _ticks_for(values: list[float], scale: _Scale) -> list[float]:
    low, high = min(values), max(values)
    if scale.log:                       # evenly spaced on the log axis, rounded to two digits between the ends
        middle = [float(f"{low * (high / low) ** (i / 4):.2g}") for i in range(1, 4)]
        return [low, *middle, high]
    return _ticks(low, high)


def pareto_svg(trials, objectives: list[Objective], best_name: str | None) -> str:
    points = objective_points(trials, objectives)
    if not points:
        return '<p class="note">No trial finished with every objective yet.</p>'
    members = pareto_front(trials, objectives)
    (x_obj, y_obj), xs_all, ys_all = objectives[:2], [p[0] for p in points.values()], [p[1] for p in points.values()]
    xs, ys = _scale(xs_all, PAD, W - 20), _scale(ys_all, H - PAD, 20)
    parts = [_axes(xs, ys, str(x_obj), str(y_obj), _ticks_for(xs_all, xs), _ticks_for(ys_all, ys))]
    if len(objectives) == 2:            # the front as a line through its members, left to right
        front = sorted((points[n] for n in members), key=lambda p: (p[0], p[1]))
        if len(front) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{xs(x):.1f},{ys(y):.1f}" for i, (x, y) in enumerate(front))
            parts.append(f'<path d="{path}" stroke="{COLORS[0]}" stroke-width="1.5" fill="none" '
                         'stroke-dasharray="5 3"/>')
    for name, values in sorted(points.items(), key=lambda kv: kv[0] in members):     # the front drawn on top
        on_front = name in members
        label = f"trial {name}: " + ", ".join(f"{o.metric} {v:.4g}" for o, v in zip(objectives, values)) + \
            (" (Pareto front)" if on_front else "") + (" (best)" if name == best_name else "")
        fill = COLORS[0] if on_front else "#bbb"
        ring = f' stroke="{COLORS[3]}" stroke-width="3"' if name == best_name else ""
        parts.append(f'<circle cx="{xs(values[0]):.1f}" cy="{ys(values[1]):.1f}" r="{6 if on_front else 4}" '
                     f'fill="{fill}"{ring} class="pt{" front" if on_front else ""}"><title>{esc(label)}</title>'
                     "</circle>")
    legend = (f'<p class="legend"><span class="key" style="background:{COLORS[0]}"></span>Pareto front '
              f'({len(members)} of {len(points)} finished trials) <span class="key" style="background:#bbb"></span>'
              f'dominated <span class="key" style="border:3px solid {COLORS[3]}"></span>best</p>')
    if len(objectives) > 2:
        legend += (f'<p class="note">{len(objectives)} objectives: the plot shows the first two; the front counts '
                   f'all of them ({esc(", ".join(map(str, objectives)))}).</p>')
    return _svg("".join(parts), "pareto front") + legend
