"""``python -m experiments <command>``: the suite's command-line programs.

Each command lives in a module, which provides ``add_parser(subparsers)``
(registering its options and its ``--help``) and ``run(args) -> int`` (the exit code).
A module may register several related commands (``studies``: activations,
optimizers, backends); it is then listed once per command and loaded once.
Every command also takes ``--plugin`` (``experiments.plugins``): the plug-ins are
loaded before the command line is parsed, so their names are valid choices.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from experiments.errors import UserError
from experiments.plugins import add_plugin_option, load_plugins, plugins_in_argv

# command name → module under ``experiments``
COMMANDS = {
    "gradcheck": "commands.gradcheck",
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
    for command in sub.choices.values():  # every command takes --plugin, declared in one place
        add_plugin_option(command)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        load_plugins(plugins_in_argv(argv))  # first: a plug-in's names are then valid choices
        args = build_parser().parse_args(argv)
        load_plugins(args.plugins)  # a no-op unless --plugin was abbreviated
        return int(args.run(args) or 0)
    except (UserError, ValueError) as err:  # a user's mistake: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished runs are saved, rerun the same command to resume", file=sys.stderr)
        return 130
