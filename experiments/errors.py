"""The suite's own errors: a user's mistake, told in one line.

Every error a user can cause (a bad option, a damaged file, a broken plug-in, a bad spec) is raised as a
``UserError`` (or a subclass) with a message that names the value and what is allowed; the command line
prints it as one line on stderr and exits non-zero, with no traceback unless ``--debug`` is given.
The library's constructors raise ``ValueError`` for bad arguments, as NumPy and PyTorch do; the command
line treats those the same way.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave the suite; ``str()`` is the whole message."""


class OutputError(UserError):
    """An output location the suite cannot write (checked before any work starts)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a study, with what was kept: ``str()`` says how many runs finished and where they are."""


def one_line(err: BaseException) -> str:
    """The error's message on one line (a message never spans lines on the terminal)."""
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
    return text or type(err).__name__


def raised(err: BaseException) -> str:
    """What a user's function raised, on one line: ``TypeError: message`` (the type alone if it has none)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
