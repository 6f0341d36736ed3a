"""``python -m experiments all``: gradcheck, every built-in study, report — in sequence.

The studies are the spec files shipped in ``experiments/specs/`` (activations, optimizers, backends, and any
spec added there later): each runs as ``python -m experiments <name>`` when it has a command of its own,
else as ``study <spec>``, with its defaults (or its ``[quick]`` variant) and its folder under ``--results``.
A failing step does not stop the others; the exit code is the first non-zero one.
"""
from __future__ import annotations

import os
import time


def studies() -> list:
    """The built-in specs' names: those with a command first, then the others alphabetically."""
    from importlib import resources

    from experiments.commands.studies import BUILTIN

    found = sorted(p.name[:-5] for p in (resources.files("experiments") / "specs").iterdir()
                   if p.name.endswith(".toml"))
    return [n for n in BUILTIN if n in found] + [n for n in found if n not in BUILTIN]


def results_folder(args) -> str:
    """``--results``, else ``results`` (``results/quick`` with ``--quick``, apart from the reference run)."""
    if args.results is not None:
        return args.results
    return os.path.join("results", "quick") if args.quick else "results"


def steps(args) -> list:
    """The argument lists of the commands ``all`` runs."""
    results = results_folder(args)
    from experiments.commands.studies import BUILTIN, builtin_spec

    plugins = [token for spec in getattr(args, "plugins", ()) for token in ("--plugin", spec)]
    out = [["gradcheck", "--out", os.path.join(results, "gradcheck")] + plugins]
    shared = ["--device", args.device, "--threads", str(args.threads), "--data-dir", args.data_dir] + plugins
    shared += ["--quick"] * args.quick + ["--force"] * args.force + ["--no-progress"] * args.no_progress
    executor, workers, address = (getattr(args, name, None) for name in ("executor", "workers", "address"))
    shared += ["--executor", executor] * bool(executor) + ["--workers", str(workers)] * bool(workers)
    shared += ["--address", address] * bool(address) + ["--no-stack"] * getattr(args, "no_stack", False)
    for study in studies():
        command = [study] if study in BUILTIN else ["study", str(builtin_spec(study))]
        out.append(command + ["--out", os.path.join(results, study)] + shared)
    return out + [["report", "--results", results]]


def run(args) -> int:
    from experiments.cli import build_parser, run_command
    from experiments.files import check_output_folder

    from experiments.commands.studies import check_before_work

    check_output_folder(results_folder(args), "--results")
    check_before_work(args)  # a missing data folder or an unreachable cluster is said once, before any step
    parser = build_parser()
    code, start = 0, time.perf_counter()
    for argv in steps(args):
        print(f"\n=== python -m experiments {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        step_args = parser.parse_args(argv + ["--debug"] * args.debug)
        result = run_command(step_args)  # an error is reported and the next step runs
        print(f"=== {argv[0]}: exit {result}, {time.perf_counter() - t0:.0f} s", flush=True)
        code = code or result
    print(f"\nall done in {time.perf_counter() - start:.0f} s; overview: {os.path.join(results_folder(args), 'REPORT.md')}")
    return code


def add_parser(subparsers) -> None:
    from experiments.commands.studies import add_device_options
    from experiments.execute import add_executor_options

    p = subparsers.add_parser(
        "all", help="everything in sequence: gradcheck, every built-in study (activations, optimizers, backends, "
                    "...), report",
        description="Runs gradcheck, every study of experiments/specs/ (activations, optimizers, backends, and any "
                    "spec added there) and the report, each into its folder under --results. With --quick every "
                    "study runs its spec's [quick] variant (a subset of MNIST, fewer epochs, seeds and arms): a few "
                    "minutes on a 2-core CPU. Finished runs are kept and skipped when run again.")
    p.add_argument("--quick", action="store_true", help="the studies' small grids (the README's main job)")
    add_device_options(p)
    add_executor_options(p)
    p.add_argument("--results", metavar="DIR",
                   help="parent folder of the study folders (default: results; with --quick: results/quick)")
    p.add_argument("--force", action="store_true", help="retrain runs that are already recorded")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=run)
