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
with a built-in, an ``f`` or ``df`` that returns the wrong shape or NaN on a small grid of z, a ``torch_fn`` that
does so or that autograd cannot differentiate) is a ``PluginError`` whose one-line message names the plug-in and
the problem.

Layers for ``gradcheck --layer FILE.py:NAME`` follow CS231n's convention; the file defines

- ``NAME_forward(**inputs) -> (out, cache)``,
- ``NAME_backward(dout, cache) -> {input_name: gradient}`` for every array input,
- ``NAME_inputs(rng) -> {input_name: array}``, example inputs drawn from the ``numpy.random.Generator`` rng:
  NumPy arrays, the floating-point ones checked (``example_inputs`` refuses anything else).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from manual import activations, losses
from manual.activations import Activation
from manual.losses import Loss

from experiments.errors import UserError, one_line, raised

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
    refuse_broken_torch_fn(spec, after - before)
    names = sorted(n.removeprefix("loss:") for n in after - before)
    if not names and not found:
        raise PluginError(f"plugin {spec}: defines no Activation or Loss (and registers none)")
    _LOADED[spec] = names or [item.name for item in found]
    return _LOADED[spec]


def refuse_broken_torch_fn(spec: str, registered: set) -> None:
    """Try the ``torch_fn`` of each activation a spec has just registered (``registered``: its names, losses as
    ``loss:NAME``); if one is broken, unregister everything the spec registered and raise a ``PluginError``.

    ``register`` has tried ``f`` and ``df``; ``manual`` never imports torch, so ``torch_fn`` is tried here.
    """
    for name in sorted(registered):
        act = activations.ACTIVATIONS.get(name)  # None for a loss
        problem = torch_fn_problem(act.torch_fn) if act is not None and act.torch_fn is not None else None
        if problem:
            for added in registered:
                if added.startswith("loss:"):
                    losses.unregister_loss(added.removeprefix("loss:"))
                else:
                    activations.unregister(added)
            raise PluginError(f"plugin {spec}: activation {name!r}: {problem}")


def torch_fn_problem(torch_fn) -> str | None:
    """What is wrong with an activation's ``torch_fn`` on a small float64 tensor z of shape (3, 2, 3), or None:
    it must return a tensor of z's shape and dtype, finite, that autograd differentiates to finite values."""
    import torch  # here, not at the top: only a plug-in with a torch_fn needs it

    z = torch.tensor([-30.0, -6, -4, -2, -1, -0.5, -1e-3, 0, 1e-3, 0.5, 1, 2, 3, 4, 5, 6, 10, 30],
                     dtype=torch.float64).reshape(3, 2, 3).requires_grad_()
    try:
        out = torch_fn(z)
    except Exception as err:  # the user's code: any exception is theirs to see
        return f"torch_fn(z) raised {raised(err)} (z of shape (3, 2, 3), torch.float64)"
    if not isinstance(out, torch.Tensor):
        return f"torch_fn(z) returned a {type(out).__name__}, not a tensor; write it with torch operations on z"
    if out.shape != z.shape:
        return (f"torch_fn(z) returned shape {tuple(out.shape)} for z of shape (3, 2, 3); it must work element-wise "
                "and keep z's shape")
    if out.dtype != z.dtype:
        return f"torch_fn(z) returned {out.dtype} for torch.float64 z; keep z's dtype"
    try:
        (grad,) = torch.autograd.grad(out.sum(), z)
    except Exception as err:
        return (f"autograd cannot differentiate torch_fn(z) ({raised(err)}); write it with torch operations on z, "
                "without .detach(), .numpy() or .item()")
    for what, values in (("torch_fn(z)", out.detach()), ("autograd's derivative of torch_fn(z)", grad)):
        bad = ~torch.isfinite(values)
        if bad.any():
            return (f"{what} is {values[bad][0].item()} at z = {z.detach()[bad][0].item():g} (torch.float64); it "
                    "must be finite")
    return None


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
        if err.name is not None and (source == err.name or source.startswith(f"{err.name}.")):  # the one named
            raise PluginError(f"plugin {spec}: no module named {err.name!r} (give a FILE.py or an importable "
                              "MODULE[:ATTR])") from err
        raise PluginError(f"plugin {spec}: the plug-in's import of {err.name!r} failed ({one_line(err)}); install "
                          f"{err.name!r} or fix that import in {source}") from err
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
    message = one_line(err)
    return f"plugin {spec}: importing it raised {type(err).__name__}{line}: {message}"


# ------------------------------------------------------------------------------ layers
class Layer(NamedTuple):
    """A hand-written layer to check: CS231n's forward/backward pair and a maker of example inputs."""

    name: str
    forward: Callable
    backward: Callable
    make_inputs: Callable
    spec: str  # FILE.py:NAME or MODULE:NAME, as given


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
    return Layer(name, parts["forward"], parts["backward"], parts["inputs"], spec)


def example_inputs(layer: Layer, rng) -> dict:
    """``NAME_inputs(rng)``, refused with a ``PluginError`` unless it is a dict {input name: NumPy array} with at
    least one floating-point array (the inputs whose gradients are checked; integer arrays such as labels pass)."""
    call = f"layer {layer.spec}: {layer.name}_inputs(rng)"
    try:
        inputs = layer.make_inputs(rng)
    except Exception as err:  # the user's code: any exception is theirs to see
        raise PluginError(f"{call} raised {raised(err)}") from err
    if not isinstance(inputs, dict):
        raise PluginError(f"{call} returned a {type(inputs).__name__}; return a dict {{input name: NumPy array}}")
    for key, value in inputs.items():
        if not isinstance(value, np.ndarray):
            raise PluginError(f"{call} returned a {type(value).__name__} for input {key!r}; return NumPy arrays "
                              "(np.asarray(value, dtype=float)) and bind options with functools.partial")
    if not any(np.issubdtype(value.dtype, np.floating) for value in inputs.values()):
        dtypes = ", ".join(f"{key} {value.dtype}" for key, value in inputs.items()) or "no inputs"
        raise PluginError(f"{call} returned no floating-point array ({dtypes}); the inputs whose gradients are "
                          "checked must be float arrays, e.g. rng.standard_normal(shape)")
    return inputs
