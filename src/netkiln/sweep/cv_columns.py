"""Leaderboard cells of a cross-validation trial (cv.folds): the folds' spread beside each mean."""
from __future__ import annotations


def _std_section(metrics: dict, split: str) -> dict | None:
    """metrics.json's cv.std[split] of a cv trial (the folds' standard deviations), None for other trials."""
    cv = metrics.get("cv")
    std = cv.get("std") if isinstance(cv, dict) else None
    values = std.get(split) if isinstance(std, dict) else None
    return values if isinstance(values, dict) else None


def spread_cells(metrics: dict, split: str, name: str) -> dict:
    """{"val/acc ±std": the folds' standard deviation} for a cv trial's mean `split/name`; {} for other trials.

    A numeric column of its own (not "0.912 ± 0.011" in one cell), so leaderboard.csv sorts and plots by either."""
    values = _std_section(metrics, split)
    return {} if values is None else {f"{split}/{name} ±std": values.get(name)}


def fold_std(metrics: dict, split: str, name: str) -> float | None:
    """The folds' standard deviation of a cv trial's `split/name` (a finite number), None where there is none."""
    value = (_std_section(metrics, split) or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        return None
    return float(value)


def fold_count(metrics: dict) -> int | None:
    """How many folds a cv trial's means are over; None for other trials."""
    cv = metrics.get("cv")
    folds = cv.get("folds") if isinstance(cv, dict) else None
    return folds if isinstance(folds, int) and not isinstance(folds, bool) else None


def refit_note(metrics: dict) -> str | None:
    """What `best/` is when the best trial was refitted (cv.refit=true), or why it is not."""
    cv = metrics.get("cv")
    refit = cv.get("refit") if isinstance(cv, dict) else None
    if not isinstance(refit, dict):
        return None
    if refit.get("status") == "ok":
        test = ", ".join(f"{k}={v:.4f}" for k, v in (refit.get("test") or {}).items()
                         if isinstance(v, (int, float)))
        epochs = refit.get("epochs")
        return (f"best/ is this trial's refit on train + val ({epochs} epoch{'' if epochs == 1 else 's'}, the folds' "
                f"best epoch count); test: {test or 'no test split'}")
    if refit.get("status") == "failed":
        return f"the refit failed: {refit.get('error')}; best/ is the trial's folder"
    return None
