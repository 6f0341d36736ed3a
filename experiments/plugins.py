"""Plug-ins: your own activations, losses and layers, brought in without editing the suite.

A plug-in is ordinary Python that defines ``manual.activations.Activation`` or ``manual.losses.Loss``
records (see ``examples/``). Every command takes ``--plugin SPEC`` (repeatable), where SPEC is

- ``path/to/file.py``: the file is imported and every ``Activation`` and ``Loss`` at its top level is
  registered (a file may also call ``register`` itself);
- ``package.module``: the same for an importable module;
- ``file.py:attr`` or ``package.module:attr``: only ``attr`` is registered (an ``Activation``, a ``Loss``, or a
  list of them).

Loading is idempotent: a spec already loaded in this process is not imported again, so workers and repeated
commands may call ``load_plugins`` freely. Anything wrong (a missing file, a syntax error, a name that clashes
with a built-in, an ``f`` or ``df`` that returns the wrong shape or NaN on a small grid of z) is a
``PluginError`` whose one-line message names the plug-in and the problem.

Layers for ``gradcheck --layer FILE.py:NAME`` follow CS231n's convention; the file defines

- ``NAME_forward(**inputs) -> (out, cache)``,
- ``NAME_backward(dout, cache) -> {input_name: gradient}`` for every array input,
- ``NAME_inputs(rng) -> {input_name: array}``, example inputs drawn from the ``numpy.random.Generator`` rng.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Callable, NamedTuple

from manual import activations, losses
from manual.activations import Activation
from manual.losses import Loss

from experiments.errors import UserError

PLUGIN_HELP = ("load your own activations and losses from FILE.py or MODULE[:ATTR] first (repeatable); their "
               "names then work wherever a built-in's does")

_LOADED: dict[str, list[str]] = {}  # spec → the names it registered, so a second load is a no-op


class PluginError(UserError):
    """A plug-in that cannot be loaded, or that breaks the contract of an activation, loss or layer."""


def add_plugin_option(p) -> None:
    """``--plugin SPEC`` (repeatable) on a command's parser, into ``args.plugins``."""
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="FILE.py|MODULE[:ATTR]",
                   help=PLUGIN_HELP)


def plugins_in_argv(argv) -> list[str]:
    """The ``--plugin`` values of a command line, found before it is parsed: the plug-ins must be loaded first
    so that their names are valid choices of options such as ``--activation``."""
    specs = []
    for i, token in enumerate(argv):
        if token == "--plugin" and i + 1 < len(argv):
            specs.append(argv[i + 1])
        elif token.startswith("--plugin="):
            specs.append(token.split("=", 1)[1])
    return specs


def load_plugins(specs) -> list[str]:
    """Load each spec (see the module's docstring) once per process; return the names they registered."""
    names = []
    for spec in specs:
        names += load_plugin(spec)
    return list(dict.fromkeys(names))


def load_plugin(spec: str) -> list[str]:
    if spec in _LOADED:
        return _LOADED[spec]
    source, _, attr = spec.partition(":")
    before = set(activations.ACTIVATIONS) | {f"loss:{n}" for n in losses.LOSSES}
    module = import_source(source, spec)
    if attr:
        if not hasattr(module, attr):
            raise PluginError(f"plugin {spec}: {source} defines no {attr!r}")
        value = getattr(module, attr)
        found = list(value) if isinstance(value, (list, tuple)) and not isinstance(value, Loss) else [value]
        wrong = [v for v in found if not isinstance(v, (Activation, Loss))]
        if wrong:
            raise PluginError(f"plugin {spec}: {attr} is a {type(wrong[0]).__name__}, not a "
                              "manual.activations.Activation or manual.losses.Loss")
    else:
        found = [v for v in vars(module).values() if isinstance(v, (Activation, Loss))]
    for item in found:
        try:
            (activations.register if isinstance(item, Activation) else losses.register_loss)(item)
        except ValueError as err:
            raise PluginError(f"plugin {spec}: {err}") from err
    after = set(activations.ACTIVATIONS) | {f"loss:{n}" for n in losses.LOSSES}
    names = sorted(n.removeprefix("loss:") for n in after - before)
    if not names and not found:
        raise PluginError(f"plugin {spec}: defines no Activation or Loss (and registers none)")
    _LOADED[spec] = names or [item.name for item in found]
    return _LOADED[spec]


def import_source(source: str, spec: str):
    """The module a spec names: a ``.py`` file (imported once per process) or an importable module."""
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plugin {spec}: no such file {source}")
        # one module name per file, the same in every process (so a pool's workers unpickle its functions)
        name = f"_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException as err:
            del sys.modules[name]
            if isinstance(err, KeyboardInterrupt):
                raise
            raise PluginError(describe_failure(spec, path, err)) from err
        return module
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as err:
        raise PluginError(f"plugin {spec}: no module named {err.name!r} (give a FILE.py or an importable "
                          "MODULE[:ATTR])") from err
    except Exception as err:
        raise PluginError(describe_failure(spec, None, err)) from err


def describe_failure(spec: str, path: Path | None, err: BaseException) -> str:
    """One line: where in the plug-in its import failed, and why."""
    if isinstance(err, SyntaxError):
        return f"plugin {spec}: syntax error at line {err.lineno}: {err.msg}"
    line = ""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [f for f in frames if path is not None and Path(f.filename).resolve() == path]
    if mine:
        line = f" (line {mine[-1].lineno})"
    message = " ".join(str(err).split()) or type(err).__name__
    return f"plugin {spec}: importing it raised {type(err).__name__}{line}: {message}"


# ------------------------------------------------------------------------------ layers
class Layer(NamedTuple):
    """A hand-written layer to check: CS231n's forward/backward pair and a maker of example inputs."""

    name: str
    forward: Callable
    backward: Callable
    make_inputs: Callable


def load_layer(spec: str) -> Layer:
    """``FILE.py:NAME`` or ``MODULE:NAME`` → the file's ``NAME_forward``, ``NAME_backward`` and ``NAME_inputs``."""
    source, _, name = spec.partition(":")
    if not name:
        raise PluginError(f"layer {spec}: name the layer after a colon, e.g. {source or 'my_layer.py'}:affine_relu")
    module = import_source(source, spec)
    parts = {part: getattr(module, f"{name}_{part}", None) for part in ("forward", "backward", "inputs")}
    missing = [f"{name}_{part}" for part, fn in parts.items() if not callable(fn)]
    if missing:
        raise PluginError(f"layer {spec}: {source} defines no {', '.join(missing)} (a layer NAME needs "
                          "NAME_forward(**inputs) -> (out, cache), NAME_backward(dout, cache) -> {input: grad} "
                          "and NAME_inputs(rng) -> {input: array})")
    return Layer(name, parts["forward"], parts["backward"], parts["inputs"])
