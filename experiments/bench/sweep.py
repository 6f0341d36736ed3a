"""The bench's sweep section: one fixed small study timed on every executor, side by side in one run.

The study is 32 runs (8 seeds × 4 stable learning rates) of 784-30-10 ReLU with SGD + momentum, batch 16, 2 epochs
on the whole 50,000-image training split, as the built-in studies train (``--quick``: 4 runs, 500 images, 1 epoch). It is trained from scratch
into a fresh folder by ``train_pending`` — the same code a study runs, store writes included — once per mode:

- ``sequential``: one run after another in this process (``--workers 1 --no-stack``);
- ``workers``: a process pool of ``--workers`` (default: every core), one thread each (``--no-stack``);
- ``stacked``: one process, the runs that differ only in seed and lr trained as stacked models (this
  configuration is small enough for the CPU stacking rule);
- ``workers + stacked``: both;
- ``ray``: one Ray task per run on a local Ray instance with ``--workers`` CPUs (``--no-stack``);

and, with no GPU here, the CUDA rows marked not measured. Each mode runs in a fresh Python process (no
pool, fork server or imported module left over from another mode), timed from its first line as a study
command runs: the pool's fork server started (``execute.start_pool_server``), torch imported, MNIST loaded,
every run trained into the store. Its figure is runs per minute of that wall time (the local Ray instance is started before the clock starts, and
its start-up is reported on its own) and the ratio to ``sequential``. The results are checked too: every
unstacked mode must reproduce the sequential runs exactly; stacked runs round differently in float32, and
how far that carries over a run is reported.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import execute
from experiments.bench import NOT_MEASURED
from experiments.errors import UserError
from experiments import store as results_store
from experiments.data import N_TRAIN, load_mnist
from experiments.execute import ExecOptions, train_pending
from experiments.runs import stacked
from experiments.runs.training import RunConfig

BASE = RunConfig(layer_sizes=(784, 30, 10), activation="relu", init="he", optimizer="SGD", momentum=0.9,
                 batch_size=16, epochs=2, train_subset=N_TRAIN)  # ~2.5 s a run
# (with 20,000 images, ~1 s a run, the ~3 s every study spends once importing torch and loading MNIST
# were a tenth of the sequential time, and held 2 workers to 1.75-1.83×: Amdahl's law, not the pool)
# stable rates: with momentum 0.9, lr 0.1 and above make this net's training chaotic, where any change of
# rounding (float32 vs float64, stacked vs single) grows into different final numbers
SEEDS, LRS = range(8), (0.001, 0.003, 0.01, 0.03)
QUICK = dict(train_subset=500, epochs=1)
QUICK_SEEDS, QUICK_LRS = range(2), (0.01, 0.03)
COLUMNS = ("mode", "device", "executor", "workers", "stack", "runs", "startup_s", "wall_s", "runs_per_min",
           "ratio_to_sequential", "runs_failed", "runs_differing", "max_test_acc_diff", "status")


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    executor: str
    workers: int
    stack: bool
    device: str = "cpu"


def modes(workers: int) -> list[Mode]:
    return [Mode("sequential", "local", 1, False), Mode("workers", "local", workers, False),
            Mode("stacked", "local", 1, True), Mode("workers + stacked", "local", workers, True),
            Mode("ray", "ray", workers, False),
            Mode("stacked", "local", 1, True, "cuda"), Mode("ray", "ray", workers, False, "cuda")]


def study(quick: bool) -> list[RunConfig]:
    base = dataclasses.replace(BASE, **QUICK) if quick else BASE
    seeds, lrs = (QUICK_SEEDS, QUICK_LRS) if quick else (SEEDS, LRS)
    return [dataclasses.replace(base, seed=s, lr=lr) for s in seeds for lr in lrs]


def results_of(folder: Path) -> pd.DataFrame:
    runs = results_store.load(folder).runs.set_index("key").sort_index()
    return runs[["final_train_loss", "final_val_loss", "test_loss", "test_acc"]].astype(float).assign(
        failed=(runs["status"] == "failed").astype(float))


def compare(results: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """How many runs differ from the reference's in any final number, and the largest test-accuracy gap."""
    same = (results == reference) | (results.isna() & reference.isna())
    return {"runs_failed": int(results["failed"].sum()), "runs_differing": int((~same.all(axis=1)).sum()),
            "max_test_acc_diff": float((results["test_acc"] - reference["test_acc"]).abs().max())}


# A mode is timed in a fresh process from its first line, as a study command runs: the pool's fork server
# started first (``experiments.execute`` imports no torch), then torch and this module imported, torch's threads
# set as the study command's ``--threads`` sets them, MNIST loaded, the runs trained (``timed``). The row comes
# back as JSON on the last line of stdout.
CHILD = """
import json, sys, time
started = time.perf_counter()
from experiments import execute
job = json.loads(sys.argv[1])
execute.start_pool_server(job["mode"]["executor"], job["mode"]["workers"])
import torch
torch.set_num_threads(job["threads"])
from experiments.bench.sweep import Mode, timed
print(json.dumps(timed(Mode(**job["mode"]), job["quick"], job["data_dir"], job["folder"], started)))
"""


def measure(mode: Mode, quick: bool, data_dir, folder: Path, cuda: bool, threads: int) -> dict:
    """``mode``'s row, timed in a fresh Python process (``CHILD``) that trains the study into ``folder`` with
    ``threads`` torch threads (a study command's ``--threads``; its workers use one each)."""
    row = {"mode": mode.name, "device": mode.device, "executor": mode.executor, "workers": mode.workers,
           "stack": mode.stack, "runs": len(study(quick))}
    if mode.device == "cuda" and not cuda:
        return {**row, "status": NOT_MEASURED}
    job = json.dumps({"mode": dataclasses.asdict(mode), "quick": quick, "data_dir": str(data_dir),
                      "folder": str(folder), "threads": threads})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (execute.project_root(),
                                                                  os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", CHILD, job], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"the sweep's {mode.name} ({mode.device}) mode failed: {last}")
    return {**row, **json.loads(done.stdout.strip().splitlines()[-1])}


def timed(mode: Mode, quick: bool, data_dir, folder, started: float) -> dict:
    """In the fresh process ``CHILD`` started at ``started``: MNIST loaded and the runs trained into ``folder``.
    A Ray instance's start-up is returned on its own and left out of the wall time."""
    configs = study(quick)
    options = ExecOptions(device=mode.device, executor=mode.executor, workers=mode.workers, stack=mode.stack,
                          progress=False)
    ray, connected, startup = None, False, 0.0
    if mode.executor == "ray":
        try:
            ray = execute.import_ray()
        except UserError:
            return {"status": "not measured (ray not installed: pip install -e '.[ray]')"}
        t0 = time.perf_counter()
        connected = execute.connect_ray(ray, options)
        startup = time.perf_counter() - t0
    try:
        data = load_mnist(data_dir, configs[0].train_subset)
        train_pending(configs, data, results_store.Store(Path(folder)), options)
        wall = time.perf_counter() - started - startup
    finally:
        if connected:
            ray.shutdown()
    return {"startup_s": startup, "wall_s": wall, "runs_per_min": len(configs) / wall * 60, "status": "measured"}


def run_sweep(workers: int, quick: bool, data_dir, cuda: bool, threads: int, progress=None) -> pd.DataFrame:
    """Every mode's row (see the module docstring), in the order of ``modes``, with ``threads`` torch threads."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for i, mode in enumerate(modes(workers)):
            folder = Path(tmp) / f"{i}"
            rows.append(measure(mode, quick, data_dir, folder, cuda, threads))
            if rows[-1]["status"] == "measured":
                rows[-1]["results"] = results_of(folder)
            if progress:
                progress(mode)
    base = rows[0]  # sequential
    reference = base.get("results")
    for row in rows:
        results = row.pop("results", None)
        if results is not None:
            row["ratio_to_sequential"] = row["runs_per_min"] / base["runs_per_min"]
            row.update(compare(results, reference))
            if row["runs_failed"]:  # a failed run takes no time: the figure would flatter the mode
                row["status"] = f"measured, but {row['runs_failed']} run(s) failed"
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(df: pd.DataFrame, info: dict) -> str:
    from experiments.report import md_table

    rows = []
    for r in df.itertuples():
        if r.status != "measured":  # not measured, or runs failed
            rows.append([r.mode, r.device, r.workers, "yes" if r.stack else "no", r.status, "—", "—", "—"])
            continue
        rows.append([r.mode, r.device, r.workers, "yes" if r.stack else "no", f"{r.wall_s:.1f} s",
                     f"{r.runs_per_min:.1f}", f"{r.ratio_to_sequential:.2f}×",
                     "identical" if r.runs_differing == 0 else
                     f"{int(r.runs_differing)} of {r.runs} differ, test accuracy by ≤ {100 * r.max_test_acc_diff:.2f} points"])
    ray = df[(df["mode"] == "ray") & (df.status == "measured")]
    ray_note = (f" The local Ray instance took {ray.startup_s.iloc[0]:.1f} s to start, before the clock started."
                if len(ray) else "")
    n = int(df.runs.iloc[0])
    base = BASE if n == len(SEEDS) * len(LRS) else dataclasses.replace(BASE, **QUICK)
    return f"""## Study throughput on every executor (sweep)

One fixed study of {n} runs ({base.layer_sizes[0]}-{base.layer_sizes[1]}-{base.layer_sizes[2]} {base.activation},
SGD momentum {base.momentum}, batch {base.batch_size}, {base.epochs} epoch(s) on {base.train_subset:,} training
images; seeds × learning rates), trained into a fresh folder by `train_pending` in each mode, on a machine with
{info.get('cpu_cores', '?')} cores (load average before: {', '.join(f'{x:.2f}' for x in info.get('load_average_before', ()))}).
Each mode runs in a fresh Python process, timed from its first line as `study` runs: the process pool's
fork server started (it imports torch while the study does), torch imported and given {info['threads']} thread(s) as a
study's `--threads` does (each worker has one), MNIST loaded, every run trained into the store.{ray_note} "Results" compares each run's final losses and test
accuracy with the sequential mode's: the unstacked modes must be identical; a stacked model does the same
arithmetic in another order, so its float32 rounding differs in the last digits (stacked results are pinned to
single ones in float64 by `tests/experiments/test_stacked.py`; at unstable learning rates such differences grow, which is
why the study keeps to stable ones).

{md_table(['mode', 'device', 'workers', 'stacked', 'wall time', 'runs/min', 'vs sequential', 'results'], rows)}
"""

