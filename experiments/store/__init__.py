"""The results of one study: tidy CSV files in one folder, joined by the ``key`` column.

- ``runs.csv``: one row per run — the full config, final metrics, status, wall time;
- ``epochs.csv``: one row per run × epoch;
- ``layers.csv``: one row per run × epoch (0 = at initialisation) × layer;
- ``plan.csv`` (studies only): which run plays which part — study, group, arm, phase, key;
- ``environment.csv`` (studies only): where the runs were trained — name, value.

A run is identified by ``RunConfig.key()``. Adding a run rewrites ``epochs.csv``,
``layers.csv`` and then ``runs.csv``, each through a temporary file and
``os.replace``: a run counts as finished only once its ``runs.csv`` row has landed,
and rows of ``epochs.csv`` / ``layers.csv`` whose key is not in ``runs.csv`` (left by a
run killed between the writes) are dropped when the folder is loaded. Killing a
sweep therefore loses at most the run in flight.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from experiments.files import write_csv
from experiments.runs.training import RunResult

RUN_TABLES = ("epochs", "layers", "runs")  # the order of the writes: runs.csv last
OTHER_TABLES = ("plan", "environment")


def read_csv(path: Path) -> pd.DataFrame:
    """A table of the store (``key`` kept as text), or an empty frame when the file does not exist."""
    if not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path, dtype={"key": str})


@dataclass
class Tables:
    runs: pd.DataFrame
    epochs: pd.DataFrame
    layers: pd.DataFrame
    plan: pd.DataFrame
    environment: pd.DataFrame


def load(folder: Path | str) -> Tables:
    """Every table of ``folder``, without the orphan epoch/layer rows of an unfinished run."""
    folder = Path(folder)
    tables = {name: read_csv(folder / f"{name}.csv") for name in RUN_TABLES + OTHER_TABLES}
    finished = set(tables["runs"]["key"]) if len(tables["runs"]) else set()
    for name in ("epochs", "layers"):
        if len(tables[name]):
            tables[name] = tables[name][tables[name]["key"].isin(finished)].reset_index(drop=True)
    return Tables(**tables)


class Store:
    """A study folder open for adding runs; ``has(key)`` tells which runs are already finished."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.tables = load(self.folder)
        self.added: set[str] = set()  # keys trained by this process (so --force retrains each run once)

    def has(self, key: str) -> bool:
        return len(self.tables.runs) > 0 and key in set(self.tables.runs["key"])

    def add(self, result: RunResult) -> None:
        """Record a finished run, replacing any earlier rows of the same key (a forced rerun)."""
        key = result.run["key"]
        for name, rows in (("epochs", result.epochs), ("layers", result.layers), ("runs", [result.run])):
            old = getattr(self.tables, name)
            new = pd.DataFrame(rows)
            if len(old):
                new = pd.concat([old[old["key"] != key], new], ignore_index=True)
            setattr(self.tables, name, new)
            write_csv(new, self.folder / f"{name}.csv")
        self.added.add(key)

    def save(self, name: str, df: pd.DataFrame) -> None:
        """Replace one of the study's other tables (``plan``, ``environment``)."""
        if name not in OTHER_TABLES:
            raise ValueError(f"{name!r} is not one of {OTHER_TABLES}; runs are recorded with add()")
        setattr(self.tables, name, df)
        write_csv(df, self.folder / f"{name}.csv")
