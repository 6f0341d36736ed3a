"""The trained networks a study's report looks inside: one run per arm trained again, its parameters kept.

A study records its runs' numbers (``runs.csv``, ``epochs.csv``, ``layers.csv``), not their parameters. For the
figures that need a trained network — a convolutional layer's filters and feature maps, a recurrent layer's
gradient over time steps (``experiments.report.inside``) — the runs the report shows are trained once more, one
by one, from their configs with this code (``training.fit``), and their parameters land in
``models/<key>.npz`` beside the study's CSV files, written atomically; a study run again trains only the
missing ones. ``models/models.csv`` gives each one's test accuracy beside the study's own: equal to float32
noise when the study trained the run one by one, close (within seed-to-seed spread) when it trained it in a
stack, whose float32 sums run in another order.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.config import config_of
from experiments.files import write_atomically, write_csv

MODELS = "models"  # the folder, beside the study's CSV files
TABLE = "models.csv"  # its columns: COLUMNS
COLUMNS = ["key", "group", "arm", "seed", "study_test_acc", "retrained_test_acc"]


def model_path(folder: Path | str, key: str) -> Path:
    return Path(folder) / MODELS / f"{key}.npz"


def load_model(folder: Path | str, key: str) -> dict | None:
    """The kept parameters of run ``key`` (state-dict keys → arrays), or None when there are none."""
    path = model_path(folder, key)
    if not path.exists():
        return None
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def retrain(row: dict, data_dir: str) -> tuple[dict, dict]:
    """Train the run of ``row`` (a row of ``runs.csv``) again → (its parameters, its run row)."""
    from experiments.data import load_mnist
    from experiments.execute import setup_worker
    from experiments.runs.training import fit

    setup_worker()  # one torch and one BLAS thread, as every study worker has
    config = config_of(row)
    result, state = fit(config, load_mnist(data_dir, config.train_subset), device="cpu")
    return state, result.run


def save_npz(path: Path, state: dict) -> Path:
    """``state`` as an ``.npz`` file at ``path``, written atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a temporary file's name
            np.savez(f, **state)

    return write_atomically(path, write)


def kept_table(folder: Path | str) -> pd.DataFrame:
    """``models/models.csv``: one row per kept model (empty when there is none)."""
    path = Path(folder) / MODELS / TABLE
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=COLUMNS)


def keep_models(folder: Path | str, runs: pd.DataFrame, data_dir: str, workers: int = 1,
                progress: bool = True) -> int:
    """Train again and keep each of ``runs`` (rows of a study's final runs, with their group and arm) that has
    no model yet; returns how many were trained. Each model lands with its row of ``models.csv``."""
    from tqdm.auto import tqdm

    from experiments.execute import pool_context

    folder = Path(folder)
    table = kept_table(folder)
    missing = [row for row in runs.to_dict("records")
               if not (model_path(folder, row["key"]).exists() and (table["key"] == row["key"]).any())]
    if not missing:
        return 0
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(missing))), mp_context=pool_context()) as pool:
        jobs = [pool.submit(retrain, row, str(data_dir)) for row in missing]
        for row, job in tqdm(zip(missing, jobs), total=len(jobs), desc=f"models → {folder}", unit="run",
                             disable=not progress):
            state, run = job.result()
            save_npz(model_path(folder, row["key"]), state)
            new = {"key": row["key"], "group": row["group"], "arm": row["arm"], "seed": row["seed"],
                   "study_test_acc": row["test_acc"], "retrained_test_acc": run["test_acc"]}
            table = pd.concat([table[table["key"] != row["key"]], pd.DataFrame([new])], ignore_index=True)
            write_csv(table, folder / MODELS / TABLE)
    return len(missing)
