"""``python -m experiments <command>``: the suite's command-line programs.

Each command lives in a module, which provides ``add_parser(subparsers)``
(registering its options and its ``--help``) and ``run(args) -> int`` (the exit code).
A module may register several related commands (``studies``: activations,
optimizers, backends); it is then listed once per command and loaded once.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name → module under ``experiments``
COMMANDS = {
    "gradcheck": "gradcheck",
    "train": "commands.train",
    "study": "commands.studies",
    "activations": "commands.studies",
    "optimizers": "commands.studies",
    "backends": "commands.studies",
    "report": "report",
    "all": "commands.run_all",
    "bench": "bench",
}


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer ≥ 1, or a usage error that says so."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="The backpropagation reference suite: verify hand-written gradients against autograd "
                    "and run MNIST ablations of activations and optimizers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(f"experiments.{module}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished runs are saved, rerun the same command to resume", file=sys.stderr)
        return 130
