"""``python -m experiments <command>``: the suite's command-line programs.

Each command lives in a module, which provides ``add_parser(subparsers)``
(registering its options and its ``--help``) and ``run(args) -> int`` (the exit code).
A module may register several related commands (``studies``: activations,
optimizers, backends); it is then listed once per command and loaded once.
Every command also takes ``--plugin`` (``experiments.plugins``): the plug-ins are
loaded before the command line is parsed, so their names are valid choices.

``main`` is the one place where errors become what the user sees. Commands never
print-and-return on a mistake; they raise, and ``main`` turns the exception into one
line on stderr and an exit code:

- a usage error found by argparse (unknown option, bad number): ``error: <message> (see ... --help)``, exit 2;
- ``UserError`` (and its subclasses: ``DataError``, ``OutputError``, ``PluginError``, ...) or a ``ValueError`` from the
  library (a bad value rejected where it entered): ``error: <message>``, exit 2;
- ``OSError`` (a disk that fills up, a file that vanishes): ``error: <file>: <reason>``, exit 1;
- Ctrl-C: a line saying that finished runs are kept and how to resume, exit 130;
- anything else is a bug of the suite: one line asking for ``--debug`` and a report, exit 1.

``--debug`` (before or after the command name) prints the traceback as well.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
import traceback

from experiments.data import N_TRAIN
from experiments.errors import UserError, one_line
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

USAGE_ERROR, FAILURE, INTERRUPTED = 2, 1, 130
DEBUG_HELP = "on an error, print the full traceback too (for reporting a bug)"


class Parser(argparse.ArgumentParser):
    """``argparse``'s parser, with a usage error on one line that points at ``--help`` (instead of the usage
    block, which for a command with thirty options is twenty lines above the one that matters)."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"error: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def number_type(convert, ok, allowed: str):
    """An ``argparse`` type: ``convert(text)`` when ``ok`` of it, else a usage error saying what is ``allowed``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value
    return parse


positive_int = number_type(int, lambda v: v >= 1, "a positive integer")
non_negative_int = number_type(int, lambda v: v >= 0, "an integer ≥ 0")  # a seed
positive_float = number_type(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")  # not nan, not inf
# --train-subset: how many of the training images
training_images = number_type(int, lambda v: 1 <= v <= N_TRAIN, f"between 1 and {N_TRAIN:,} (the training split)")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or (``only``) of the module that provides that one command.

    Building only the command that was asked for spares importing torch for the other commands'
    options: a mistake on the command line is answered in well under a second.
    """
    parser = Parser(
        prog="python -m experiments",
        description="The backpropagation reference suite: verify hand-written gradients against autograd "
                    "and run MNIST ablations of activations and optimizers.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    modules = [COMMANDS[only]] if only in COMMANDS else dict.fromkeys(COMMANDS.values())
    for module in modules:
        importlib.import_module(f"experiments.{module}").add_parser(sub)
    for command in sub.choices.values():  # options every command takes, declared in one place
        add_plugin_option(command)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    parser.commands = sub.choices  # name → the command's own parser
    return parser


def command_name(argv: list[str]) -> str | None:
    """The command in ``argv`` (its first word that is not an option), if it is one of ``COMMANDS``."""
    words = [a for a in argv if not a.startswith("-")]
    return words[0] if words and words[0] in COMMANDS else None


def report_error(err: Exception, debug: bool = False) -> int:
    """Print ``err`` as ``error: ...`` on stderr (with its traceback when ``debug``); return the exit code."""
    if debug:
        traceback.print_exception(err)
    if isinstance(err, (UserError, ValueError)):
        code, message = USAGE_ERROR, one_line(err)
    elif isinstance(err, OSError):
        code, message = FAILURE, one_line(err)
    else:
        code = FAILURE
        message = (f"internal error ({type(err).__name__}: {one_line(err)}); this is a bug of the suite: rerun "
                   f"with --debug and report the traceback")
    print(f"error: {message}", file=sys.stderr)
    return code


def run_command(args) -> int:
    """``args.run(args)`` with its errors reported as one line (Ctrl-C still stops the program)."""
    try:
        return int(args.run(args) or 0)
    except Exception as err:  # noqa: BLE001 — every error is reported, see the module docstring
        return report_error(err, getattr(args, "debug", False))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            load_plugins(plugins_in_argv(argv))  # first: a plug-in's names are then valid choices
            parser = build_parser(command_name(argv))
            args, unknown = parser.parse_known_args(argv)
            if unknown:  # said by the command's own parser, so that the hint names its --help
                parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
            load_plugins(args.plugins)  # a no-op unless --plugin was abbreviated
        except Exception as err:  # noqa: BLE001 — a plug-in that fails to load, reported like any error
            return report_error(err, "--debug" in argv)
        return run_command(args)
    except KeyboardInterrupt as interrupt:
        kept = str(interrupt) or "finished runs are saved"  # a study says how many (errors.Interrupted)
        print(f"interrupted: {kept}; rerun the same command to resume (it skips them)", file=sys.stderr)
        return INTERRUPTED
