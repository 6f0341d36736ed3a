"""The studies: what each one trains, and the commands ``activations``, ``optimizers`` and ``backends``.

A study compares *arms* (an activation on a given depth, an optimizer, a
backend). The two ablations share one procedure, ``tune_then_rerun``:

1. tune: every arm is trained with seed 0 at each learning rate of its grid, and
   the rate with the best final validation accuracy is chosen (``choose_lr``:
   diverged runs never win; ties go to the smaller rate);
2. seeds: every arm is trained with each seed at its chosen rate. The seed-0 run
   at the chosen rate has the same config, hence the same key, as its tuning run,
   so it is reused, not retrained.

Whatever is missing from the study's folder is trained by ``train_pending``: one
run after another with ``training.train`` on the CPU; on a CUDA GPU, configs
that differ only in seed and learning rate are trained together as one batched
model by ``experiments.stacked.train_stacked``. Every finished run lands in the
folder at once (``experiments.store``), so an interrupted study resumes where it
stopped; ``--force`` retrains.

``plan.csv`` records which run plays which part (study, group, arm, phase, key),
so that ``experiments.report`` rebuilds every table and plot from the CSV files.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from manual.activations import ACTIVATIONS

from experiments.runs import training
from experiments.cli import positive_int
from experiments.data import DEFAULT_ROOT, N_TRAIN, load_mnist
from experiments.store import Store
from experiments.execute import ExecOptions, add_executor_options, options_from_args, train_pending
from experiments.runs.training import RunConfig, resolve_device

SHALLOW = (784, 128, 128, 10)  # 2 hidden layers
DEEP = (784,) + (64,) * 8 + (10,)  # 8 hidden layers
DEPTHS = (SHALLOW, DEEP)
TUNE_SEED = 0


@dataclass(frozen=True)
class Grid:
    """The size of a study; ``--quick`` and the full default differ only here."""

    epochs: int
    seeds: int
    train_subset: int | None
    arms: tuple  # the activations / optimizers compared
    lrs: tuple = ()  # the activation study's learning-rate grid (each optimizer has its own)


# Activation study: SGD with momentum 0.9 and Xavier init for every activation, so that only the
# activation differs (He init is derived for ReLU and would favour it; Xavier is neutral). With
# momentum 0.9 the effective step is 10× the rate: the grid goes from cautious to unstable.
ACTIVATION_BASE = RunConfig(init="xavier", optimizer="SGD", momentum=0.9, batch_size=128)
ACTIVATION_GRIDS = {
    "full": Grid(epochs=4, seeds=3, train_subset=None, arms=tuple(ACTIVATIONS),
                 lrs=(0.01, 0.03, 0.1, 0.3, 1.0)),
    "quick": Grid(epochs=3, seeds=3, train_subset=10_000, arms=("sigmoid", "tanh", "relu", "elu", "gelu"),
                  lrs=(0.03, 0.1, 0.3)),
}

# Optimizer study: 784-128-128-10 ReLU with He init; each optimizer's grid spans its usual range
# in half-decade steps (--quick keeps every other point: decade steps).
OPTIMIZER_BASE = RunConfig(layer_sizes=SHALLOW, activation="relu", init="he", batch_size=128)
OPTIMIZERS = {  # name → (RunConfig fields, learning-rate grid)
    "SGD": ({"optimizer": "SGD"}, (0.01, 0.03, 0.1, 0.3, 1.0)),
    "SGD+momentum": ({"optimizer": "SGD", "momentum": 0.9}, (0.001, 0.003, 0.01, 0.03, 0.1)),
    "Nesterov": ({"optimizer": "SGD", "momentum": 0.9, "nesterov": True}, (0.001, 0.003, 0.01, 0.03, 0.1)),
    "Adagrad": ({"optimizer": "Adagrad"}, (0.001, 0.003, 0.01, 0.03, 0.1)),
    "RMSprop": ({"optimizer": "RMSprop"}, (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
    "Adam": ({"optimizer": "Adam"}, (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
    "AdamW": ({"optimizer": "AdamW"}, (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
}
OPTIMIZER_GRIDS = {
    "full": Grid(epochs=4, seeds=3, train_subset=None, arms=tuple(OPTIMIZERS)),
    "quick": Grid(epochs=3, seeds=3, train_subset=10_000, arms=tuple(OPTIMIZERS)),
}

# Backends side by side: the same float64 run by the hand-written NumPy network and by PyTorch.
BACKEND_BASE = RunConfig(layer_sizes=SHALLOW, activation="relu", init="he", optimizer="SGD", momentum=0.9,
                         lr=0.03, dtype="float64")
BACKEND_GRIDS = {
    "full": Grid(epochs=3, seeds=1, train_subset=None, arms=("manual", "torch")),
    "quick": Grid(epochs=3, seeds=1, train_subset=5000, arms=("manual", "torch")),
}


@dataclass(frozen=True)
class Arm:
    """One compared thing: its panel (``group``), its name, its config but for lr and seed, its lr grid."""

    group: str
    name: str
    base: RunConfig
    lrs: tuple

    def config(self, lr: float, seed: int) -> RunConfig:
        return dataclasses.replace(self.base, lr=lr, seed=seed)


def depth_label(layer_sizes) -> str:
    """``8 hidden (784-64×8-10)``: the number of hidden layers and the widths, repeats folded."""
    parts, i = [], 0
    while i < len(layer_sizes):
        j = i
        while j + 1 < len(layer_sizes) and layer_sizes[j + 1] == layer_sizes[i]:
            j += 1
        count = j - i + 1
        parts += [f"{layer_sizes[i]}×{count}"] if count > 2 else [str(layer_sizes[i])] * count
        i = j + 1
    return f"{len(layer_sizes) - 2} hidden ({'-'.join(parts)})"


def activation_arms(grid: Grid) -> list[Arm]:
    base = dataclasses.replace(ACTIVATION_BASE, epochs=grid.epochs, train_subset=grid.train_subset)
    return [Arm(depth_label(sizes), act, dataclasses.replace(base, layer_sizes=sizes, activation=act), grid.lrs)
            for sizes in DEPTHS for act in grid.arms]


def optimizer_arms(grid: Grid, quick: bool) -> list[Arm]:
    base = dataclasses.replace(OPTIMIZER_BASE, epochs=grid.epochs, train_subset=grid.train_subset)
    group = f"{depth_label(base.layer_sizes)} {base.activation}"
    arms = []
    for name in grid.arms:
        fields, lrs = OPTIMIZERS[name]
        arms.append(Arm(group, name, dataclasses.replace(base, **fields), lrs[::2] if quick else lrs))
    return arms


def choose_lr(runs: pd.DataFrame, configs: list[RunConfig]) -> float:
    """The lr of the config whose run reached the best final validation accuracy; diverged (or missing) runs
    never win, ties go to the first config (the smaller rate: grids are ascending)."""
    rows = runs.set_index("key").reindex([c.key() for c in configs])
    acc = rows["final_val_acc"].where(rows["status"] == "ok").to_numpy(dtype=float)
    if np.isnan(acc).all():  # every run diverged: the smallest rate is the least bad guess
        return min(c.lr for c in configs)
    return configs[int(np.nanargmax(acc))].lr


def plan_rows(study: str, arm: Arm, phase: str, configs) -> list[dict]:
    return [{"study": study, "group": arm.group, "arm": arm.name, "phase": phase, "key": c.key()} for c in configs]


def tune_then_rerun(study: str, arms: list[Arm], seeds, data, device: str, store: Store, force: bool = False,
                    progress: bool = True, options: ExecOptions | None = None) -> dict:
    """Tune each arm's lr on validation with seed 0, rerun the seeds at the chosen lr; return arm → lr.
    ``options`` (how to execute; default: one after another here) overrides ``device``, ``force``, ``progress``."""
    tune = {arm: [arm.config(lr, TUNE_SEED) for lr in arm.lrs] for arm in arms}
    plan = [row for arm in arms for row in plan_rows(study, arm, "tune", tune[arm])]
    store.save("plan", pd.DataFrame(plan))
    options = options or ExecOptions(device=device, force=force, progress=progress)
    train_pending([c for configs in tune.values() for c in configs], data, store, options)

    chosen = {arm: choose_lr(store.tables.runs, tune[arm]) for arm in arms}
    final = {arm: [arm.config(chosen[arm], seed) for seed in seeds] for arm in arms}
    plan += [row for arm in arms for row in plan_rows(study, arm, "seeds", final[arm])]
    store.save("plan", pd.DataFrame(plan))
    train_pending([c for configs in final.values() for c in configs], data, store, options)
    return chosen


def environment(device: str) -> pd.DataFrame:
    """Where a study ran: device, library versions, CPU count (saved as ``environment.csv``)."""
    import matplotlib
    import numpy
    import torch
    import torchvision

    rows = {"device": device, "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "numpy": numpy.__version__,
            "torch": torch.__version__, "torchvision": torchvision.__version__, "pandas": pd.__version__,
            "matplotlib": matplotlib.__version__}
    if device == "cuda":
        rows["gpu"] = torch.cuda.get_device_name()
    return pd.DataFrame({"name": list(rows), "value": [str(v) for v in rows.values()]})


# --------------------------------------------------------------------------- commands
def resolve_grid(args, grids: dict) -> Grid:
    """The study's grid (``--quick`` or full) with the options given on the command line applied."""
    grid = grids["quick" if args.quick else "full"]
    overrides = {name: getattr(args, name) for name in ("epochs", "seeds", "arms", "lrs")
                 if getattr(args, name, None) is not None}
    if args.train_subset is not None:
        overrides["train_subset"] = None if args.train_subset == N_TRAIN else args.train_subset
    return dataclasses.replace(grid, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


def default_folder(name: str, quick: bool) -> str:
    """Where a study writes unless told: ``results/<name>``, or ``results/quick/<name>`` with ``--quick``
    (so that the README's quick run never mixes into the committed reference run)."""
    return os.path.join("results", "quick", name) if quick else os.path.join("results", name)


def open_study(args, grid: Grid):
    """Device, data and store of a study command, with its environment recorded."""
    device = use_device(args)
    data = load_mnist(Path(args.data_dir), grid.train_subset)
    store = Store(args.out or default_folder(args.command, args.quick))
    store.save("environment", environment(device))
    return device, data, store


def finish_study(store: Store) -> int:
    """Rebuild the study's report and say what was done."""
    from experiments import report

    path = report.write_study_report(store.folder)
    runs = store.tables.runs
    diverged = int((runs["status"] == "diverged").sum()) if len(runs) else 0
    print(f"trained {len(store.added)} new run(s); {len(runs)} run(s) in {store.folder} ({diverged} diverged); "
          f"report: {path}")
    return 0


def run_activations(args) -> int:
    grid = resolve_grid(args, ACTIVATION_GRIDS)
    device, data, store = open_study(args, grid)
    tune_then_rerun("activations", activation_arms(grid), range(grid.seeds), data, device, store,
                    options=options_from_args(args, device))
    return finish_study(store)


def run_optimizers(args) -> int:
    grid = resolve_grid(args, OPTIMIZER_GRIDS)
    device, data, store = open_study(args, grid)
    tune_then_rerun("optimizers", optimizer_arms(grid, args.quick), range(grid.seeds), data, device, store,
                    options=options_from_args(args, device))
    return finish_study(store)


def run_backends(args) -> int:
    grid = resolve_grid(args, BACKEND_GRIDS)
    device, data, store = open_study(args, grid)
    base = dataclasses.replace(BACKEND_BASE, epochs=grid.epochs, train_subset=grid.train_subset)
    arms = [Arm(depth_label(base.layer_sizes), name, dataclasses.replace(base, backend=name), (base.lr,))
            for name in grid.arms]
    configs = {arm: [arm.config(base.lr, seed) for seed in range(grid.seeds)] for arm in arms}
    store.save("plan", pd.DataFrame([row for arm in arms for row in plan_rows("backends", arm, "seeds",
                                                                              configs[arm])]))
    train_pending([c for cs in configs.values() for c in cs], data, store, options_from_args(args, device))
    return finish_study(store)


def use_device(args) -> str:
    """The device ``--device`` names (auto: CUDA when present), with torch's CPU threads set to ``--threads``."""
    import torch

    torch.set_num_threads(args.threads)
    return resolve_device(args.device)


def add_device_options(p: argparse.ArgumentParser) -> None:
    """--device, --threads and --data-dir, shared by every command that trains."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the torch backend trains: auto = CUDA when a GPU is present (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="CPU threads for torch (default: %(default)s: these small networks gain little from more, "
                        "and a second thread competing with another busy process slowed runs 10-80× when measured "
                        "on a 2-core machine)")
    p.add_argument("--data-dir", default=str(DEFAULT_ROOT), metavar="DIR",
                   help="folder holding MNIST/raw/ with the four MNIST .gz files (default: the project's data/)")


def add_study_options(p: argparse.ArgumentParser, name: str, grids: dict) -> None:
    full, quick = grids["full"], grids["quick"]
    p.add_argument("--quick", action="store_true",
                   help=f"the small grid: {quick.train_subset} training images, {quick.epochs} epochs, "
                        f"{quick.seeds} seeds")
    p.add_argument("--epochs", type=positive_int, help=f"epochs per run (default: {full.epochs}; quick: "
                                                        f"{quick.epochs})")
    p.add_argument("--seeds", type=positive_int, help=f"seeds per arm, 0..N-1 (default: {full.seeds}; quick: "
                                                       f"{quick.seeds})")
    p.add_argument("--train-subset", type=positive_int, metavar="N",
                   help=f"train on the first N of the 50,000 training images (default: all; quick: "
                        f"{quick.train_subset})")
    add_device_options(p)
    add_executor_options(p)
    p.add_argument("--out", metavar="DIR",
                   help=f"the study's folder: CSV files, plots, REPORT.md (default: {default_folder(name, False)}; "
                        f"with --quick: {default_folder(name, True)})")
    p.set_defaults(command=name)
    p.add_argument("--force", action="store_true", help="retrain runs already in --out instead of skipping them")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


CUDA_NOTE = ("On a CUDA GPU (--device auto finds one), the runs that differ only in seed and learning rate are "
             "trained together as one batched model.")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "activations", help="ablation of every activation on a shallow and a deep net, lr tuned per activation",
        description="Every activation of manual.ACTIVATIONS on a 2-hidden-layer (784-128-128-10) and an "
                    "8-hidden-layer (784-64×8-10) network, trained by the torch backend with SGD (momentum 0.9), "
                    "Xavier init for all so that only the activation differs. Phase 1 trains seed 0 at each "
                    "learning rate of the grid and picks, per activation and depth, the one with the best final "
                    "validation accuracy; phase 2 trains the other seeds at that rate. Finished runs are kept in "
                    "--out and skipped when the command is run again; the report (plots, REPORT.md) is rebuilt at "
                    "the end. " + CUDA_NOTE)
    add_study_options(p, "activations", ACTIVATION_GRIDS)
    p.add_argument("--activations", dest="arms", nargs="+", choices=list(ACTIVATIONS), metavar="NAME",
                   help=f"activations to compare (default: all; quick: {' '.join(ACTIVATION_GRIDS['quick'].arms)}"
                        f"; valid: {', '.join(ACTIVATIONS)})")
    p.add_argument("--lrs", nargs="+", type=float, metavar="LR",
                   help=f"learning-rate grid (default: {' '.join(map(str, ACTIVATION_GRIDS['full'].lrs))})")
    p.set_defaults(run=run_activations)

    p = subparsers.add_parser(
        "optimizers", help="SGD, momentum, Nesterov, Adagrad, RMSprop, Adam, AdamW, each with its lr tuned",
        description="Each optimizer trains 784-128-128-10 ReLU (He init) at every learning rate of its own log "
                    "grid with seed 0 (5 points in half-decade steps around its usual range; --quick: 3 points "
                    "in decade steps); the rate with the best final validation accuracy is then rerun with every "
                    "seed. Finished runs are kept in --out and skipped when the command is run again; the report "
                    "is rebuilt at the end. " + CUDA_NOTE)
    add_study_options(p, "optimizers", OPTIMIZER_GRIDS)
    p.add_argument("--optimizers", dest="arms", nargs="+", choices=list(OPTIMIZERS), metavar="NAME",
                   help=f"optimizers to compare (default: all: {', '.join(OPTIMIZERS)})")
    p.set_defaults(run=run_optimizers)

    p = subparsers.add_parser(
        "backends", help="the NumPy and the PyTorch implementation side by side on MNIST (float64)",
        description="The same float64 run (784-128-128-10 ReLU, He init, SGD momentum 0.9, lr 0.03, same seed "
                    "and batch order) trained by the hand-written NumPy backend and by the PyTorch one; the "
                    "report overlays their learning curves and gives the largest difference between them.")
    add_study_options(p, "backends", BACKEND_GRIDS)
    p.set_defaults(run=run_backends)
