"""Leaderboard cells of a cross-validation trial (cv.folds): the folds' spread beside each mean."""
from __future__ import annotations


def spread_cells(metrics: dict, split: str, name: str) -> dict:
    """{"val/acc ±std": the folds' standard deviation} for a cv trial's mean `split/name`; {} for other trials.

    A numeric column of its own (not "0.912 ± 0.011" in one cell), so leaderboard.csv sorts and plots by either."""
    cv = metrics.get("cv")
    std = cv.get("std") if isinstance(cv, dict) else None
    values = std.get(split) if isinstance(std, dict) else None
    if not isinstance(values, dict):
        return {}
    return {f"{split}/{name} ±std": values.get(name)}


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
