"""The study commands: ``study SPEC.toml`` and the built-in specs' names ``activations``, ``optimizers``,
``backends`` (and any other ``experiments/specs/<name>.toml``).

A command reads the spec (``experiments.spec``), applies ``--quick`` (the spec's ``[quick]`` table) and the
``--set`` overrides, then either prints the plan with an estimated time (``--dry-run``,
``experiments.plan.estimate``) or runs it (``experiments.plan.run_study``: tune, final seeds, every run
through ``experiments.execute.train_pending``) and rebuilds the study's report.
"""
from __future__ import annotations

import argparse
import os
import platform
from importlib import resources
from pathlib import Path

import pandas as pd

from experiments.cli import positive_float, positive_int, training_images
from experiments.files import check_output_folder
from experiments.data import DEFAULT_ROOT, N_TRAIN, ensure_mnist_files, load_mnist
from experiments.execute import (add_executor_options, check_executor, default_workers, options_from_args,
                                 ray_session, start_pool_server)
from experiments.spec import EXAMPLE, load_spec

BUILTIN = ("activations", "optimizers", "backends")  # the built-in specs that have a command of their own


def builtin_spec(name: str) -> Path:
    """The path of the built-in spec ``experiments/specs/<name>.toml`` (package data)."""
    return Path(str(resources.files("experiments") / "specs" / f"{name}.toml"))


def environment(device: str, options=None) -> pd.DataFrame:
    """Where and how a study ran: device, executor and workers, library versions, CPU count (``environment.csv``)."""
    import matplotlib
    import numpy
    import scipy
    import torch
    import torchvision

    rows = {"device": device, "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pandas": pd.__version__, "matplotlib": matplotlib.__version__}
    if options is not None:
        rows.update(executor=options.executor, workers=options.workers, stacking="on" if options.stack else "off")
    if device == "cuda":
        rows["gpu"] = torch.cuda.get_device_name()
    return pd.DataFrame({"name": list(rows), "value": [str(v) for v in rows.values()]})


def default_folder(name: str, quick: bool) -> str:
    """Where a study writes unless told: ``results/<name>``, or ``results/quick/<name>`` with ``--quick``
    (so that a quick run never mixes into the committed reference run)."""
    return os.path.join("results", "quick", name) if quick else os.path.join("results", name)


def overrides(args) -> list[str]:
    """The ``--set`` assignments, after those the named commands' shorthand options stand for."""
    out = []
    if getattr(args, "epochs", None) is not None:
        out.append(f"base.epochs={args.epochs}")
    if getattr(args, "seeds", None) is not None:
        out.append(f"seeds={args.seeds}")
    if getattr(args, "train_subset", None) is not None:
        out.append(f"base.train_subset={args.train_subset}" if args.train_subset != N_TRAIN else "")
    if getattr(args, "arms", None):
        out.append(f"grid.{args.arms_axis}=[{', '.join(repr(a).replace(chr(39), chr(34)) for a in args.arms)}]")
    if getattr(args, "lrs", None):
        out.append(f"tune.lr=[{', '.join(map(str, args.lrs))}]")
    return [o for o in out if o] + list(args.set or [])


def run(args) -> int:
    spec_path = builtin_spec(args.command) if args.command != "study" else Path(args.spec)
    spec = load_spec(spec_path, overrides(args), quick=args.quick)
    folder = Path(args.out or default_folder(spec.name, args.quick))
    if args.dry_run:  # reads the study's folder (if any), writes nothing
        from experiments.plan.estimate import describe, estimate
        from experiments.store import load

        device = use_device(args)  # torch's threads as the runs will have them
        runs = load(folder).runs if folder.is_dir() else pd.DataFrame()
        print(describe(spec, estimate(spec, runs, options_from_args(args, device).workers)))
        return 0
    check_before_work(args)  # nothing is written before the executor and the data are known to be there
    # the pool's fork server boots (importing torch, ~2.5 s) while this process imports it too and loads
    # MNIST, so that the workers are ready when the first runs are
    start_pool_server(args.executor, args.workers or default_workers())
    from experiments.plan import run_study
    from experiments.store import Store

    with ray_session(args):  # with --executor ray, connected first: a refused token is said before anything is written
        store = Store(check_output_folder(folder if args.out is None else args.out))  # an empty --out is refused
        device = use_device(args)
        options = options_from_args(args, device, spec.plugins)
        store.save("environment", environment(device, options))
        root = Path(args.data_dir)
        run_study(spec, lambda subset: load_mnist(root, subset), store, options)
        keep_shown_models(store, args)
        return finish_study(store)


def keep_shown_models(store, args) -> None:
    """Train again and keep the runs whose report looks inside their network (``experiments.report.inside``)."""
    from experiments.report.inside import shown_runs
    from experiments.report.study import open_study
    from experiments.runs.snapshots import keep_models

    store.export()  # the study's tables on disk, as open_study reads them
    keep_models(store.folder, shown_runs(open_study(store.folder)), args.data_dir,
                workers=args.workers or default_workers(), progress=not args.no_progress)


def check_before_work(args) -> None:
    """What a study command needs besides its spec, checked before it writes anything: the executor (Ray
    installed, the cluster reachable) and the MNIST files under ``--data-dir``."""
    check_executor(args)
    ensure_mnist_files(args.data_dir)


def finish_study(store) -> int:
    """Rebuild the study's report and say what was done."""
    from experiments import report

    path = report.write_study_report(store.folder)
    runs = store.tables.runs
    diverged = int((runs["status"] == "diverged").sum()) if len(runs) else 0
    print(f"trained {len(store.added)} new run(s); {len(runs)} run(s) in {store.folder} ({diverged} diverged); "
          f"report: {path}")
    return 0


def use_device(args) -> str:
    """The device ``--device`` names (auto: CUDA when present), with torch's CPU threads set to ``--threads``."""
    import torch

    from experiments.runs.training import resolve_device

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


def add_study_options(p: argparse.ArgumentParser, name: str | None) -> None:
    """The options every study command shares."""
    where = f"results/{name}" if name else "results/<name>"
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec value, as TOML: seeds=3, base.epochs=2, grid.activation='[\"relu\", "
                        "\"gelu\"]', tune.lr=[0.01,0.1]; a bare RunConfig field means base.<field> (repeatable)")
    p.add_argument("--quick", action="store_true", help="the spec's [quick] variant (a few minutes), written to "
                                                        "results/quick/<name> unless --out is given")
    p.add_argument("--dry-run", action="store_true",
                   help="print the arms, the runs and an estimated time (from timing a few hundred training "
                        "steps of each architecture) without training")
    p.add_argument("--out", metavar="DIR",
                   help=f"the study's folder: CSV files, plots, REPORT.md (default: {where}; with --quick: "
                        f"{where.replace('results/', 'results/quick/')})")
    add_device_options(p)
    add_executor_options(p)
    p.add_argument("--force", action="store_true", help="retrain runs already in --out instead of skipping them")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(command=name or "study", run=run)


def add_shorthands(p: argparse.ArgumentParser, arms_axis: str | None, arms_help: str | None,
                   lrs: bool) -> None:
    """The named commands' options, each a shorthand for a --set."""
    p.add_argument("--epochs", type=positive_int, help="epochs per run (= --set base.epochs=N)")
    p.add_argument("--seeds", type=positive_int, help="final seeds per arm (= --set seeds=N)")
    p.add_argument("--train-subset", type=training_images, metavar="N",
                   help="train on the first N of the 50,000 training images (= --set base.train_subset=N)")
    if arms_axis:
        p.add_argument(f"--{arms_axis.replace('_', '-')}s", dest="arms", nargs="+", metavar="NAME",
                       help=f"{arms_help} (= --set grid.{arms_axis}=[...])")
    if lrs:
        p.add_argument("--lrs", nargs="+", type=positive_float, metavar="LR",
                       help="the learning-rate candidates (= --set tune.lr=[...])")
    p.set_defaults(arms_axis=arms_axis)


def spec_comments(name: str) -> str:
    """The first comment block of a built-in spec: what it compares and why (for --help)."""
    lines = []
    for line in builtin_spec(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return " ".join(lines)


class ExampleFormatter(argparse.RawDescriptionHelpFormatter):
    pass


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "study", help="run a study a spec file defines: arms, tuning on validation, paired statistics, report",
        formatter_class=ExampleFormatter,
        description="Runs the study SPEC.toml describes: the arms are the cross product of its [grid]; each arm's "
                    "[tune] values are chosen on the\nmean validation accuracy of the tuning seeds; the final seeds "
                    "(fresh, never a tuning seed) are then trained and compared\nper seed (paired t-test, Wilcoxon, "
                    "Holm correction) in the report. Finished runs are kept in --out and skipped when\nrun again. A "
                    "complete example spec:\n\n" + EXAMPLE)
    p.add_argument("spec", metavar="SPEC.toml", help="the study's spec file (see the example above)")
    add_study_options(p, None)

    helps = {"activations": ("activation", "activations to compare", True),
             "optimizers": ("optimizer", "optimizers to compare, by label", True),
             "backends": (None, None, False)}
    for name in BUILTIN:
        axis, arms_help, lrs = helps[name]
        p = subparsers.add_parser(
            name, help=f"the built-in study experiments/specs/{name}.toml (= study with that spec)",
            description=f"The built-in study experiments/specs/{name}.toml, run by the same code as `study`. "
                        + spec_comments(name))
        add_study_options(p, name)
        add_shorthands(p, axis, arms_help, lrs)
