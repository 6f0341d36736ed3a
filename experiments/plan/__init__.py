"""From a spec to the runs of a study: arms, tuning per arm on fresh seeds, final seeds, plan rows.

1. **Arms**: the cross product of the spec's ``[grid]``; the ``compare`` axis names the arm, the other
   axes name its *group* (the report compares arms within a group).
2. **Tune** (when the spec has a ``[tune]`` table or a bundle has its own): every arm is trained at each
   candidate with each tuning seed; the candidate with the best **mean** final validation accuracy over
   the tuning seeds wins (``choose``: a candidate with a diverged seed never wins; ties go to the first
   candidate listed; if every candidate diverged, the first is kept as the least bad guess).
3. **Final seeds**: every arm is trained at its chosen candidate with the final seeds, which are disjoint
   from the tuning seeds (``experiments.spec`` makes sure), so the test accuracy reported for an arm carries
   no selection bias from the tuning.

Runs are trained by ``experiments.execute.train_pending`` (which skips what the store already holds and
decides how to execute them); ``plan.csv`` records which run plays which part (study, group, arm, phase,
key) and accumulates over reruns, so a rerun with more arms adds them to the report. ``spec.json`` keeps
the resolved spec beside the results, for the report's wording.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.files import write_atomically
from experiments.config import RunConfig

PLAN_COLUMNS = ["study", "group", "arm", "phase", "key"]
TUNE, FINAL = "tune", "seeds"  # the plan's phases


@dataclass(frozen=True)
class Arm:
    """One compared thing within its group: the RunConfig fields it sets (all but seed and the tuned keys),
    the spec path that set each (for errors) and the tuning candidates (dicts of tuned fields)."""

    group: str
    name: str
    fields: dict = field(hash=False)
    paths: dict = field(hash=False, default_factory=dict)
    candidates: tuple = field(hash=False, default=())

    def config(self, candidate: dict, seed: int) -> RunConfig:
        return RunConfig(**{**self.fields, **candidate}, seed=seed)


def make_arms(spec) -> list[Arm]:
    """The arms of ``spec`` (an ``experiments.spec.Spec``), group by group in the grid's order."""
    compare = next(a for a in spec.axes if a.name == spec.compare)
    axes = list(spec.group_axes) + [compare]
    arms = []
    for choice in itertools.product(*(range(len(a.values)) for a in axes)):
        fields = dict(spec.base)
        paths = {k: f"base.{k}" for k in spec.base}
        tune = dict(spec.tune)
        for axis, i in zip(axes, choice):
            fields.update(axis.values[i])
            bundle = len(axis.values[i]) != 1 or axis.name not in axis.values[i]
            paths.update({k: f"grid.{axis.name}[{i}].{k}" if bundle else f"grid.{axis.name}"
                          for k in axis.values[i]})
            tune.update(axis.tunes[i])
        group = ", ".join(axis.labels[i] for axis, i in zip(axes[:-1], choice)) or spec.name
        candidates = tuple(dict(zip(tune, values)) for values in itertools.product(*tune.values())) if tune else ()
        arms.append(Arm(group, compare.labels[choice[-1]], fields, paths, candidates))
    return arms


def tune_configs(arm: Arm, seeds) -> list[RunConfig]:
    return [arm.config(candidate, seed) for candidate in arm.candidates for seed in seeds]


def choose(runs: pd.DataFrame, arm: Arm, seeds) -> dict:
    """The candidate with the best mean final validation accuracy over the tuning ``seeds``; a candidate
    with a diverged (or missing) seed never wins; ties go to the first listed."""
    if not arm.candidates:
        return {}
    rows = runs.set_index("key") if len(runs) else pd.DataFrame(columns=["status", "final_val_acc"])
    scores = []
    for candidate in arm.candidates:
        keys = [arm.config(candidate, seed).key() for seed in seeds]
        got = rows.reindex(keys)
        ok = (got["status"] == "ok").all()
        scores.append(float(got["final_val_acc"].astype(float).mean()) if ok else np.nan)
    scores = np.asarray(scores, dtype=float)
    if np.isnan(scores).all():
        return dict(arm.candidates[0])
    return dict(arm.candidates[int(np.nanargmax(scores))])  # nanargmax: the first of equal maxima


def final_configs(arm: Arm, chosen: dict, seeds) -> list[RunConfig]:
    return [arm.config(chosen, seed) for seed in seeds]


def plan_rows(study: str, arm: Arm, phase: str, configs) -> list[dict]:
    return [{"study": study, "group": arm.group, "arm": arm.name, "phase": phase, "key": c.key()} for c in configs]


def record_plan(store, rows: list[dict]) -> None:
    """Add ``rows`` to the study's plan; the store keeps every earlier row (a rerun with other arms adds to it)."""
    store.save("plan", pd.DataFrame(rows, columns=PLAN_COLUMNS))


def write_spec(spec, folder) -> None:
    """``spec.json``: the resolved spec, read back by the report for its wording."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(spec.to_dict(), indent=2, default=str) + "\n"
    write_atomically(folder / "spec.json", lambda tmp: tmp.write_text(text))


def train(configs, load_data, store, options) -> None:
    """``train_pending`` for ``configs``, once per training-set size (the data must match each config)."""
    from experiments.execute import train_pending

    by_subset: dict = {}
    for config in configs:
        by_subset.setdefault(config.train_subset, []).append(config)
    for subset, group in by_subset.items():
        train_pending(group, load_data(subset), store, options)


def run_study(spec, load_data, store, options) -> dict:
    """Tune every arm, then train its final seeds; return arm → chosen candidate.

    ``load_data(train_subset)`` returns the MNIST splits for that training-set size (cached by the caller).
    """
    arms = make_arms(spec)
    write_spec(spec, store.folder)
    tuning = {arm: tune_configs(arm, spec.tune_seeds) for arm in arms}
    if any(tuning.values()):
        record_plan(store, [row for arm in arms for row in plan_rows(spec.name, arm, TUNE, tuning[arm])])
        train([c for configs in tuning.values() for c in configs], load_data, store, options)
    chosen = {arm: choose(store.tables.runs, arm, spec.tune_seeds) for arm in arms}
    final = {arm: final_configs(arm, chosen[arm], spec.seeds) for arm in arms}
    record_plan(store, [row for arm in arms for row in plan_rows(spec.name, arm, FINAL, final[arm])])
    train([c for configs in final.values() for c in configs], load_data, store, options)
    return chosen
