"""The leaderboard of a sweep directory: one row per trial, ranked by the monitored metric.

Built from what each trial left on disk (`.hydra/overrides.yaml`, `metrics.json`), so it can be
rebuilt at any time, also for a sweep that was interrupted or is still running.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from netkiln.io.files import csv_text, write_json_atomic, write_text_atomic
from netkiln.errors import NetkilnError
from netkiln.sweep.objectives import metric_value, monitored_objective, sweep_objectives
from netkiln.sweep.pareto import duplicates, mark_rows, pick_best, selection_rule
from netkiln.sweep.cv_columns import refit_note, spread_cells
from netkiln.sweep.report import finite_number, format_cell, report_html
from netkiln.sweep.storage_trials import with_storage_trials
from netkiln.training.selection import tie_breaker_for

# retried: a shared study's trial whose worker stopped; its parameters ran again as another trial.
_STATUS_ORDER = {"ok": 0, "pruned": 1, "failed": 2, "damaged": 3, "incomplete": 4, "retried": 5}
# Overrides a sweeper adds for its own bookkeeping; not part of what a user compares.
_HIDDEN_PREFIXES = ("hydra.", "+hydra.", "optuna_trial=")


@dataclass
class Trial:
    name: str
    path: Path
    overrides: list[str]
    status: str
    metrics: dict = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        value = self.metrics.get("monitored")
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


class _Damaged(Exception):
    """A trial file that is not what netkiln writes (torn by a crash, or edited): the trial is listed as damaged."""


def _read_overrides(trial_dir: Path) -> list[str]:
    import yaml

    from netkiln.safe_yaml import safe_load_file

    try:
        overrides = safe_load_file(trial_dir / ".hydra" / "overrides.yaml")
    except (OSError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        reason = (f"{err.problem}, line {mark.line + 1}" if mark is not None and getattr(err, "problem", None)
                  else " ".join(str(err).split()))
        raise _Damaged(f"unreadable .hydra/overrides.yaml ({reason})") from None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise _Damaged(".hydra/overrides.yaml is not a list of overrides")
    return [o for o in overrides if not o.startswith(_HIDDEN_PREFIXES)]


def _read_metrics(path: Path) -> dict:
    """metrics.json as the leaderboard reads it: an object whose monitored value is a number (or null)."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise _Damaged(f"unreadable {path.name} ({err})") from None
    if not isinstance(metrics, dict):
        raise _Damaged(f"{path.name} holds {type(metrics).__name__ if metrics is not None else 'null'}, "
                       "not an object")
    monitored = metrics.get("monitored")
    if monitored is not None and (isinstance(monitored, bool) or not isinstance(monitored, (int, float))):
        raise _Damaged(f"{path.name}: monitored is {monitored!r}, not a number")
    for section in ("val", "test", "params"):
        if metrics.get(section) is not None and not isinstance(metrics[section], dict):
            raise _Damaged(f"{path.name}: {section} is {metrics[section]!r}, not an object")
    if not isinstance(metrics.get("status", "ok"), str):
        raise _Damaged(f"{path.name}: status is {metrics['status']!r}, not a word")
    return metrics


def trial_folders(sweep_dir: Path) -> list[Path]:
    """The sweep's trial folders (those with a .hydra/overrides.yaml), in trial order."""
    return [child for child in sorted(Path(sweep_dir).iterdir(), key=lambda p: (len(p.name), p.name))
            if not child.is_symlink() and (child / ".hydra" / "overrides.yaml").is_file()]


def collect_trials(sweep_dir: Path) -> list[Trial]:
    trials = []
    for child in trial_folders(sweep_dir):
        metrics_path = child / "metrics.json"
        metrics, status, overrides = {}, "incomplete", []
        try:
            overrides = _read_overrides(child)
            if metrics_path.is_file():
                metrics = _read_metrics(metrics_path)
                status = metrics.get("status", "ok")
        except _Damaged as err:          # listed with the reason; the other trials are still ranked
            metrics, status = {"error": str(err)}, "damaged"
        trials.append(Trial(child.name, child, overrides, status, metrics))
    return trials


def _field(metrics: dict, section: str, name: str):
    """metrics[section][name], or None where a damaged metrics.json lacks it."""
    part = metrics.get(section)
    return part.get(name) if isinstance(part, dict) else None


def _number(value) -> float:
    """A finite number for sorting; anything else sorts last."""
    number = finite_number(value)
    return math.inf if number is None else number


def rank(trials: list[Trial], primary=None) -> list[Trial]:
    """Best first: finished trials by their monitored value, then pruned, failed and incomplete ones.

    Ties in the monitored value go to the lower validation loss, then to the cheaper trial (fewer parameters), as
    early stopping and the best checkpoint break them (training/selection.py). With several objectives the `primary`
    one (sweep/objectives.py) takes the monitored value's place.
    """
    def key(trial: Trial):
        value = objective_value(trial, primary)
        if value is None:
            return (_STATUS_ORDER.get(trial.status, 9), 1, 0.0, 0.0, 0.0)
        m = trial.metrics
        signed = -value if (primary.mode if primary else m.get("mode", "max")) == "max" else value
        tie_split, tie_name = (tie_breaker_for(str(m.get("monitor", ""))) or "/").split("/", 1)
        tie = _number(_field(m, tie_split, tie_name)) if tie_name else 0.0
        return (_STATUS_ORDER.get(trial.status, 9), 0, signed, tie, _number(_field(m, "params", "total")))
    return sorted(trials, key=key)


def _varying_overrides(trials: list[Trial]) -> list[list[str]]:
    """Per trial, the overrides that differ between trials (the common ones are noise in a table)."""
    common = set.intersection(*(set(t.overrides) for t in trials)) if trials else set()
    return [[o for o in t.overrides if o not in common] or t.overrides for t in trials]


def objective_value(trial: Trial, primary=None):
    """What a trial is ranked by: the primary objective's value (a parameter count stays a whole number), or without
    objectives the monitored metric's."""
    return trial.value if primary is None else _metric_cell(trial.metrics, primary.metric)


def _metric_cell(metrics: dict, metric: str):
    value = metric_value(metrics, metric)
    return int(value) if metric == "params" and value is not None and value.is_integer() else value


def _row(trial: Trial, shown_overrides: list[str], primary=None) -> dict:
    m = trial.metrics
    row = {"rank": None, "trial": trial.name, "status": trial.status, "overrides": " ".join(shown_overrides),
           "monitor": m.get("monitor", "")}
    if primary is not None:         # `value` is the primary objective's (not the monitor's); this names it
        row["objective"] = str(primary)
    row["value"] = objective_value(trial, primary)
    for split in ("val", "test"):
        for name, value in (m.get(split) or {}).items():
            row[f"{split}/{name}"] = value
            row.update(spread_cells(m, split, name))     # a cv trial's mean: the folds' spread beside it
    row.update({"params": (m.get("params") or {}).get("total"), "latency_ms": m.get("latency_ms"),
                "epochs": m.get("epochs"), "seconds": m.get("seconds"), "error": m.get("error", "")})
    return row


def _after_value(row: dict, key: str, value) -> dict:
    """The row with `key` right after its value column."""
    items = list(row.items())
    at = [k for k, _ in items].index("value") + 1
    return dict(items[:at] + [(key, value)] + items[at:])


def build_rows(trials: list[Trial], primary=None) -> list[dict]:
    ranked = rank(trials, primary)
    shown = dict(zip((t.name for t in trials), _varying_overrides(trials)))
    rows = [_row(t, shown[t.name], primary) for t in ranked]
    repeated = duplicates(trials)
    if repeated:                    # the same configuration ran again (a sampler may propose it twice)
        rows = [_after_value(row, "duplicate_of", repeated.get(row["trial"], "")) for row in rows]
    for i, row in enumerate(r for r in rows if r["status"] == "ok"):
        row["rank"] = i + 1
    return rows


def _columns(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    # errors are long: keep them last
    return [c for c in columns if c != "error"] + ["error"]


def to_csv(rows: list[dict]) -> str:
    return csv_text(rows, _columns(rows))


def to_markdown(rows: list[dict], title: str) -> str:
    columns = _columns(rows)
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [format_cell(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _point_best(sweep_dir: Path, best: Trial | None) -> None:
    """`best` -> the best trial's bundle (model/) or run directory, swapped atomically."""
    link = sweep_dir / "best"
    if best is None:
        if link.is_symlink():           # none now (constraints no trial meets): an old link would name a wrong model
            link.unlink()
        return
    target = best.path / "model" if (best.path / "model").is_dir() else best.path
    tmp = sweep_dir / f".best.{os.getpid()}.tmp"        # the workers of a shared study each write it
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, sweep_dir), tmp)
    if link.exists() and not link.is_symlink():
        raise NetkilnError(f"{link} exists and is not a link netkiln made; leaving it alone.")
    os.replace(tmp, link)


@dataclass
class Leaderboard:
    sweep_dir: Path
    rows: list[dict]
    best: Trial | None
    rule: str | None = None         # how best was picked, with several objectives (sweep/pareto.py)
    basis: str | None = None        # the same rule without its outcome: "the top of ... among ..."
    objectives: tuple = ()          # the sweep's objectives (sweep/objectives.py), the first primary; () for none

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "failed")


def write_leaderboard(sweep_dir: str | os.PathLike) -> Leaderboard:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise NetkilnError("not a directory.", file=str(sweep_dir))
    trials = collect_trials(sweep_dir)
    trials = with_storage_trials(sweep_dir, trials)       # a trial only the Optuna study knows, too
    if not trials:
        raise NetkilnError("no trials found: a sweep directory holds one sub-folder per trial with a "
                           ".hydra/overrides.yaml (made by `netkiln train -m ...`).", file=str(sweep_dir))
    objectives, constraints = sweep_objectives(sweep_dir)
    objectives = objectives or (monitored_objective(trials) if constraints else [])
    primary = objectives[0] if objectives else None
    rows = build_rows(trials, primary)
    ranked = rank(trials, primary)
    best = ranked[0] if ranked and ranked[0].status == "ok" and ranked[0].value is not None else None
    rule = basis = None
    if objectives:
        best, rule = pick_best(ranked, objectives, constraints)
        basis = selection_rule(objectives, constraints)
        rows = mark_rows(rows, trials, objectives, constraints)
    write_text_atomic(sweep_dir / "leaderboard.csv", to_csv(rows))
    note = refit_note(best.metrics) if best is not None else None        # cv.refit: what best/ is
    write_text_atomic(sweep_dir / "leaderboard.md", to_markdown(rows, f"Leaderboard: {sweep_dir}")
                      + (f"\nRanked by {primary}; {rule}\n" if rule else "")
                      + (f"\nTrial {best.name}: {note}\n" if note else ""))
    best_info = None
    if best is not None:
        best_info = {"trial": best.name, "path": str(best.path), "overrides": best.overrides,
                     "monitor": best.metrics.get("monitor"), "mode": best.metrics.get("mode"),
                     "value": best.value, "val": best.metrics.get("val"), "test": best.metrics.get("test")}
        if rule:
            best_info.update(objectives=[str(o) for o in objectives], rule=rule)
    write_json_atomic(sweep_dir / "best.json", best_info)
    write_text_atomic(sweep_dir / "report.html", report_html(sweep_dir, trials, rows, _columns(rows), best, primary))
    _point_best(sweep_dir, best)
    return Leaderboard(sweep_dir, rows, best, rule, basis, tuple(objectives))


def _printed_columns(board: Leaderboard) -> list[str]:
    """The printed table's columns, most telling first (a narrow terminal loses the last ones)."""
    all_columns = _columns(board.rows)
    columns = ["rank", "trial", "status", "overrides", "value"]
    if board.rule:                      # several objectives: the front, the constraints, the other objectives
        columns += [c for c in ("pareto", "constraints") if c in all_columns]
        columns += [o.metric for o in board.objectives[1:]]
    columns += [c for c in ("duplicate_of",) if c in all_columns]
    columns += [c for c in all_columns if c.startswith("test/") and c != "test/loss"][:2]
    columns += ["params", "epochs", "seconds"]
    if any(row["status"] in ("failed", "damaged") for row in board.rows):
        columns.append("error")
    if board.objectives:                # `value` shows the primary objective: not twice
        columns = [c for c in columns if c != board.objectives[0].metric]
    columns = list(dict.fromkeys(columns))  # an objective such as params: once, where it first comes
    monitor = str(board.best.metrics.get("monitor")) if board.best else None
    if f"{monitor} ±std" in all_columns:        # cross-validation trials: the folds' spread beside the mean
        mean = "value" if _value_name(board) == monitor else monitor
        if mean in columns:
            columns.insert(columns.index(mean) + 1, f"{monitor} ±std")
    return columns


_ESSENTIAL = 5          # rank, trial, status, overrides, value: never left out


def _value_name(board: Leaderboard) -> str:
    """The `value` column's header: the primary objective's metric, or the monitored metric."""
    if board.objectives:
        return board.objectives[0].metric
    return str(board.best.metrics.get("monitor")) if board.best else "value"


def _table(board: Leaderboard, columns: list[str]):
    from rich.table import Table
    from rich.text import Text          # plain text: overrides such as data.drop=[id] are not rich markup

    table = Table(title=Text(f"Leaderboard: {board.sweep_dir}"))
    value_name = _value_name(board)
    for column in columns:
        left = column in ("trial", "status", "overrides", "error")
        table.add_column(value_name if column == "value" else column, overflow="fold",
                         justify="left" if left else "right", min_width=16 if column == "overrides" else None)
    for row in board.rows:
        style = {"failed": "red", "damaged": "red", "pruned": "yellow", "incomplete": "dim"}.get(row["status"])
        cells = [format_cell(row.get(c)) for c in columns]
        if columns[-1] == "error" and len(cells[-1]) > 50:      # the full error is in leaderboard.md
            cells[-1] = cells[-1][:49] + "…"
        table.add_row(*(Text(cell) for cell in cells), style=style)
    return table


def _drawn_width(table, width: int | None = None) -> int:
    """How wide rich draws the table when asked to fit `width` (None: as wide as it likes). It folds text, but a
    column never gets narrower than a few characters, and what still does not fit a console is cut off at its
    edge: drawn on a wide enough console, the lines show the width it really needs."""
    import io

    from rich.console import Console

    console = Console(width=100_000, file=io.StringIO())
    table.width = width
    try:
        console.print(table)
    finally:
        table.width = None
    return max(map(len, console.file.getvalue().splitlines()), default=0)


def print_leaderboard(board: Leaderboard, console=None) -> None:
    """The leaderboard as a table. In a terminal the columns that cannot fit its width are left out and named;
    elsewhere (a pipe, a file, CI) every column is printed at its full width. leaderboard.csv / .md hold every
    column in any case."""
    from rich.console import Console

    console = console or Console()
    columns = _printed_columns(board)
    table = _table(board, columns)
    left_out: list[str] = []
    if console.is_terminal:
        while _drawn_width(table, console.width) > console.width and len(columns) > _ESSENTIAL:
            left_out.insert(0, columns.pop())
            table = _table(board, columns)
    else:
        console.width = max(console.width, _drawn_width(table))
    console.print(table)
    if left_out:
        console.print(f"not shown, the terminal is too narrow: {', '.join(left_out)} (every column is in "
                      f"{board.sweep_dir / 'leaderboard.csv'})", markup=False)
    if board.best is None:
        console.print(board.rule or "no trial finished successfully.", markup=False, soft_wrap=not console.is_terminal)
        return
    line = f"best: trial {board.best.name} ({' '.join(board.best.overrides) or 'defaults'}), "
    if board.objectives:            # each objective's value
        line += ", ".join(f"{o.metric} = {format_cell(_metric_cell(board.best.metrics, o.metric)) or 'unknown'}"
                          for o in board.objectives)
    else:
        line += f"{board.best.metrics.get('monitor')} = {board.best.value:.4f}"
    if board.basis:                 # several objectives or constraints: the rule that picked it, in the same line
        line += f" ({board.basis})"
    console.print(f"{line}; bundle at {board.sweep_dir / 'best'}", markup=False, soft_wrap=not console.is_terminal)
    note = refit_note(board.best.metrics)
    if note:
        console.print(note, markup=False, soft_wrap=not console.is_terminal)
