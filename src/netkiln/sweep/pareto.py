"""The Pareto front of a sweep with several objectives, and the rule that picks its `best`.

A trial dominates another when it is at least as good in every objective and better in one. The front is the
finished trials (status ok, every objective known) that no other finished trial dominates; equal trials are both on
it. A configuration that ran more than once (NSGA-II may propose the same parameters again) counts once: by its
first finished trial in run order; the later ones are duplicates, never on the front. `best` is the top of the primary objective (the first) among the front of the trials that meet the constraints
(`max_params`, `max_latency_ms`): a front member that meets them is on that front too, and a trial that meets them
but is dominated only by trials that do not is on it as well, so the constraints never hide a feasible better
choice. Ties in the primary objective go to the trial that ranks first on the leaderboard (lower val/loss, then
fewer parameters). When no trial meets the constraints there is no `best`.
"""
from __future__ import annotations

from netkiln.sweep.objectives import Constraints, Objective, objective_values


def _signed(values: list[float], objectives: list[Objective]) -> list[float]:
    """Values turned so that lower is better in every objective."""
    return [-v if o.mode == "max" else v for v, o in zip(values, objectives)]


def dominates(a: list[float], b: list[float]) -> bool:
    """a dominates b (both already signed so lower is better)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front(points: dict[str, list[float]]) -> set[str]:
    """The names whose (signed) points no other point dominates."""
    return {name for name, p in points.items()
            if not any(dominates(q, p) for other, q in points.items() if other != name)}


def run_order(trial) -> tuple[int, str]:
    """Trial folders are numbered in the order they ran: 2 before 10."""
    return len(trial.name), trial.name


def duplicates(trials) -> dict[str, str]:
    """name -> the earlier trial that ran the same configuration (the same overrides), for each later one (a damaged
    trial's overrides are unknown: it is none)."""
    first: dict[frozenset, str] = {}
    found = {}
    for trial in sorted((t for t in trials if t.status != "damaged"), key=run_order):
        config = frozenset(trial.overrides)
        if config in first:
            found[trial.name] = first[config]
        else:
            first[config] = trial.name
    return found


def objective_points(trials, objectives: list[Objective], distinct: bool = False) -> dict[str, list[float]]:
    """name -> objective values (as recorded) of the finished trials with every objective known; `distinct`: one
    trial per configuration, its first finished one in run order."""
    points, seen = {}, set()
    for trial in sorted(trials, key=run_order) if distinct else trials:
        values = objective_values(trial.metrics, objectives) if trial.status == "ok" else None
        if values is not None and not (distinct and frozenset(trial.overrides) in seen):
            points[trial.name] = values
            seen.add(frozenset(trial.overrides))
    return points


def finished_points(trials, objectives: list[Objective]) -> dict[str, list[float]]:
    """name -> signed objective values of the finished trials with every objective known, one per configuration."""
    return {name: _signed(values, objectives)
            for name, values in objective_points(trials, objectives, distinct=True).items()}


def pareto_front(trials, objectives: list[Objective]) -> set[str]:
    return front(finished_points(trials, objectives))


def selection_rule(objectives: list[Objective], constraints: Constraints) -> str:
    """How `best` is picked, as words: "the top of val/acc:max among the Pareto front of val/acc:max, params:min"."""
    names = ", ".join(str(o) for o in objectives)
    rule = f"the top of {objectives[0]}" + (f" among the Pareto front of {names}" if len(objectives) > 1 else "")
    if constraints:
        rule += f" {'of' if len(objectives) > 1 else 'among'} the trials that meet {constraints.describe()}"
    return rule


def pick_best(ranked, objectives: list[Objective], constraints: Constraints):
    """(best trial or None, the sentence that says how it was picked). `ranked`: the leaderboard's order (best
    first by the primary objective)."""
    feasible = [t for t in ranked if not constraints.violations(t.metrics)] if constraints else list(ranked)
    members = pareto_front(feasible, objectives)
    rule = f"best: {selection_rule(objectives, constraints)}"
    best = next((t for t in ranked if t.name in members), None)
    if best is None:
        why = "no finished trial meets " + constraints.describe() if constraints and pareto_front(ranked, objectives) \
            else "no trial finished with every objective"
        return None, f"{rule}: none ({why})."
    return best, f"{rule}: trial {best.name}."


def mark_rows(rows: list[dict], trials, objectives: list[Objective], constraints: Constraints) -> list[dict]:
    """The leaderboard rows with a `pareto` column (yes for the front members) after `value`, and where there are
    constraints a `constraints` column (ok, or what the trial breaks)."""
    members = pareto_front(trials, objectives)
    by_name = {t.name: t for t in trials}
    marked = []
    for row in rows:
        new = {}
        for key, value in row.items():
            new[key] = value
            if key == "value":
                new["pareto"] = "yes" if row["trial"] in members else ""
                if constraints:
                    broken = constraints.violations(by_name[row["trial"]].metrics)
                    new["constraints"] = "; ".join(broken) if broken else "ok"
        marked.append(new)
    return marked
