"""Training what a study's store lacks: the runs go to an executor, their results come back to the parent.

``train_pending(configs, data, store, options)`` is the one entry point every study uses. Only the parent
process writes the store: each result lands (``store.add``) as soon as it comes back, so a killed study
loses at most the runs in flight.

Today's executor is sequential in-process (``options.executor == "local"`` with one worker); on a CUDA
device the runs that differ only in seed and learning rate are trained together as one stacked model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from experiments.data import N_TRAIN
from experiments.runs import training
from experiments.runs.training import RunConfig


@dataclass(frozen=True)
class ExecOptions:
    """How a study's runs are executed; none of these changes a run's numbers."""

    device: str = "cpu"  # resolved: "cpu" or "cuda"
    executor: str = "local"  # "local" (a process pool of ``workers``) or "ray"
    workers: int = 1
    address: str | None = None  # Ray cluster address; None = a local Ray instance
    stack: bool = True  # stack runs that differ only in seed and lr where the fixed rule says it pays
    force: bool = False  # retrain runs that are already in the store (each once per process)
    progress: bool = True
    plugins: tuple = field(default_factory=tuple)  # plug-in specs every worker loads before training


def add_executor_options(p) -> None:
    """--workers, --executor, --address and --no-stack, shared by every command that runs a study."""
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="runs trained at once by a local process pool (default: %(default)s)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: this machine's process pool; ray: Ray tasks (default: %(default)s)")
    p.add_argument("--address", metavar="ADDR", help="with --executor ray: an existing Ray cluster's address")
    p.add_argument("--no-stack", action="store_true", help="never train several runs as one stacked model")


def options_from_args(args, device: str, plugins=()) -> ExecOptions:
    """The ``ExecOptions`` a command's parsed arguments ask for."""
    return ExecOptions(device=device, executor=args.executor, workers=args.workers, address=args.address,
                       stack=not args.no_stack, force=getattr(args, "force", False),
                       progress=not getattr(args, "no_progress", False), plugins=tuple(plugins))


def pending_configs(configs, store, force: bool = False) -> list[RunConfig]:
    """The configs ``store`` lacks (all of them once with ``force``), each key once, in order."""
    pending = {}
    for config in configs:
        key = config.key()
        if key not in pending and (not store.has(key) or (force and key not in store.added)):
            pending[key] = config
    return list(pending.values())


def train_pending(configs, data, store, options: ExecOptions = ExecOptions()) -> int:
    """Train the configs that ``store`` lacks and add each result as it comes back; return how many trained."""
    from tqdm.auto import tqdm

    pending = pending_configs(configs, store, options.force)
    n_train = len(data.train)
    for config in pending:
        if (config.train_subset or N_TRAIN) != n_train:
            raise ValueError(f"config wants train_subset={config.train_subset} but the data has {n_train} "
                             f"training images")
    bar = tqdm(total=len(pending), desc=f"runs → {store.folder}", unit="run", disable=not options.progress)
    sequential = pending
    if options.device == "cuda":
        from experiments.runs.stacked import stack_group_key, train_stacked

        groups: dict = {}
        for config in [c for c in sequential if c.backend == "torch"]:
            groups.setdefault(stack_group_key(config), []).append(config)
        sequential = [c for c in sequential if c.backend != "torch"]
        for group in groups.values():
            for result in train_stacked(group, data, options.device, options.progress):
                store.add(result)
                bar.update()
    for config in sequential:
        store.add(training.train(config, data, options.device, options.progress))
        bar.update()
    bar.close()
    return len(pending)
