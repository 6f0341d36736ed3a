"""``python -m experiments <command>``: the suite's command-line programs.

Each command lives in its own module, which provides ``add_parser(subparsers)``
(registering its options and its ``--help``) and ``run(args) -> int`` (the exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name → module under ``experiments``
COMMANDS = {
    "gradcheck": "gradcheck",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="The backpropagation reference suite: verify hand-written gradients against autograd "
                    "and run MNIST ablations of activations and optimizers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(f"experiments.{module}").add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished runs are saved, rerun the same command to resume", file=sys.stderr)
        return 130
