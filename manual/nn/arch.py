"""The architecture as data: a network written as a list of layer strings, which TOML, JSON and a command line carry.

    ["linear 128", "batchnorm", "relu", "linear 10"]
    ["unflatten 1 28 28", "conv 6 5 padding=2", "relu", "maxpool 2", "flatten", "linear 10"]
    ["unflatten 28 28", "lstm 128", "last", "linear 10"]

Each string is ``KIND [ARG …] [NAME=VALUE …]``: the layer's kind, its positional arguments and its options
(values are integers, numbers, ``true``/``false``, ``AxB`` for a pair such as a 5×3 kernel, or words). What a
layer takes from its input (a linear layer's in_features, a convolution's in_channels) is inferred from the
shape arriving at it, so only what the designer chooses is written. ``activation`` stands for the run's
activation (``build(..., activation="gelu")``): one list then serves every arm of a study that compares
activations. The kinds, with their arguments, are ``KINDS``; ``usage()`` lists them.

``build(layers, input_shape, init=, seed=, dtype=)`` makes the ``manual.nn.Sequential`` (children "0", "1", …,
so the state-dict keys are torch's), every parameter drawn from one generator of ``seed``, layer by layer, in
order; ``torch_ref.build`` mirrors that very network, so both backends start from the same numbers.
``expand(layer_sizes, activation, batch_norm)`` is the short form of an MLP written out.
"""
from __future__ import annotations

import math
import re
from functools import partial
from typing import Callable, NamedTuple

import numpy as np

from manual.activations import ACTIVATIONS
from manual.init import INITS
from manual.nn.activation import activation_module
from manual.nn.conv import BatchNorm2d, make_avgpool, make_conv, make_maxpool
from manual.nn.linear import Linear
from manual.nn.module import Sequential
from manual.nn.norm import BatchNorm1d
from manual.nn.recurrent import GRU, LSTM, RNN, LastStep
from manual.nn.shape import Flatten, Unflatten

ACTIVATION = "activation"  # the placeholder for the run's activation


class LayerSpec(NamedTuple):
    kind: str
    args: tuple
    options: dict
    text: str


class Kind(NamedTuple):
    """How to make a layer of one kind: ``make(input_shape, *args, **options) -> Module``, and its usage line."""

    make: Callable
    usage: str


def _linear(shape, out_features, bias=True):
    if len(shape) != 1:
        raise ValueError(f"a linear layer takes a flat vector of features, gets shape {shape}: put 'flatten' "
                         "before it")
    return Linear(shape[0], out_features, bias=bias)


def _batchnorm(shape):
    if len(shape) == 1:
        return BatchNorm1d(shape[0])
    if len(shape) == 3:  # (channels, height, width): per-channel statistics over the batch and the image
        return BatchNorm2d(shape[0])
    raise ValueError(f"batch normalisation takes (features,) inputs (BatchNorm1d) or (channels, height, width) "
                     f"images (BatchNorm2d); gets shape {shape}")


def _recurrent(cls, shape, hidden_size, **options):
    """A recurrent layer of class ``cls``: input_size from a (time steps, features) shape, the options passed on."""
    if len(shape) != 2:
        side = math.isqrt(shape[0]) if len(shape) == 1 else 0  # a square image read row by row: side × side
        sizes = f"{side} {side}" if side > 0 and side * side == shape[0] else "T F"
        raise ValueError(f"a recurrent layer takes (time steps, features) per example, gets shape {shape}: put "
                         f"'unflatten {sizes}' before it")
    return cls(shape[1], hidden_size, **options)


# kind → how to make it. Layers of other modules add themselves here (conv, pooling, recurrent).
KINDS: dict[str, Kind] = {
    "linear": Kind(_linear, "linear OUT [bias=false]: nn.Linear(in inferred, OUT)"),
    "batchnorm": Kind(_batchnorm, "batchnorm: nn.BatchNorm1d over the features (or channels) arriving"),
    "flatten": Kind(lambda shape: Flatten(), "flatten: nn.Flatten(), (B, d1, d2, …) → (B, d1·d2·…)"),
    "unflatten": Kind(lambda shape, *sizes: Unflatten(sizes),
                      "unflatten D1 [D2 …]: nn.Unflatten(1, (D1, D2, …)), e.g. 'unflatten 1 28 28' for an image"),
    "conv": Kind(make_conv, "conv OUT KERNEL [stride=S] [padding=P] [bias=false]: nn.Conv2d(C inferred, OUT, KERNEL) "
                            "on (C, H, W) images; KERNEL, S, P an integer or HxW such as 5x3"),
    "maxpool": Kind(make_maxpool, "maxpool K [stride=S] [padding=P]: nn.MaxPool2d(K, S (default K), P)"),
    "avgpool": Kind(make_avgpool, "avgpool K [stride=S]: nn.AvgPool2d(K, S (default K))"),
    "rnn": Kind(partial(_recurrent, RNN), "rnn HIDDEN [nonlinearity=relu] [num_layers=N]: nn.RNN(F inferred, "
                                          "HIDDEN) on (T, F) per example, output (T, HIDDEN)"),
    "lstm": Kind(partial(_recurrent, LSTM),
                 "lstm HIDDEN [num_layers=N]: nn.LSTM(F inferred, HIDDEN), output (T, HIDDEN)"),
    "gru": Kind(partial(_recurrent, GRU), "gru HIDDEN [num_layers=N]: nn.GRU(F inferred, HIDDEN), output (T, HIDDEN)"),
    "last": Kind(lambda shape: LastStep(), "last: the last time step of a recurrent layer's output, (T, H) → (H,)"),
}


def usage() -> str:
    """Every kind with its arguments, and the activations, one line each (for --help and errors)."""
    lines = [kind.usage for kind in KINDS.values()]
    lines.append(f"{ACTIVATION}: the run's activation; or an activation by name: {', '.join(ACTIVATIONS)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ parsing
def parse_value(text: str):
    """'12' → 12, '0.5' → 0.5, 'true' → True, '5x3' → (5, 3), anything else the word itself."""
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"\d+x\d+", text):
        return tuple(int(v) for v in text.split("x"))
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse(layer: str) -> LayerSpec:
    """One layer string as its kind, positional arguments and options; a ValueError if it is not one."""
    if not isinstance(layer, str) or not layer.strip():
        raise ValueError(f"a layer is a string such as 'linear 128' or 'relu', got {layer!r}")
    words = layer.split()
    kind, args, options = words[0].lower(), [], {}
    for word in words[1:]:
        if "=" in word:
            name, _, value = word.partition("=")
            options[name] = parse_value(value)
        elif options:
            raise ValueError(f"positional argument {word!r} after an option; write options (name=value) last")
        else:
            args.append(parse_value(word))
    if kind not in KINDS and kind != ACTIVATION and kind not in ACTIVATIONS:
        raise ValueError(f"unknown layer kind {kind!r}; valid kinds: {', '.join([*KINDS, ACTIVATION])} or an "
                         f"activation ({', '.join(ACTIVATIONS)})")
    return LayerSpec(kind, tuple(args), options, layer)


def make(spec: LayerSpec, shape: tuple, activation: str | None):
    """The module ``spec`` describes for an input of (per-example) ``shape``."""
    if spec.kind == ACTIVATION or spec.kind in ACTIVATIONS:
        if spec.args or spec.options:
            raise ValueError("an activation takes no arguments")
        if spec.kind == ACTIVATION and activation is None:
            raise ValueError(f"'{ACTIVATION}' stands for the run's activation, and none was given")
        return activation_module(activation if spec.kind == ACTIVATION else spec.kind)
    try:
        return KINDS[spec.kind].make(shape, *spec.args, **spec.options)
    except TypeError as err:  # wrong number of arguments or an unknown option
        raise ValueError(f"bad arguments ({err}); usage: {KINDS[spec.kind].usage}") from None


def check_layers(layers) -> tuple[str, ...]:
    """``layers`` as a tuple of layer strings, each parsed once (a ValueError names the first bad one)."""
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"layers must be a non-empty list of layer strings such as ['linear 128', 'relu', "
                         f"'linear 10'], got {layers!r}")
    for i, layer in enumerate(layers):
        try:
            parse(layer)
        except ValueError as err:
            raise ValueError(f"layers[{i}] {layer!r}: {err}") from None
    return tuple(layers)


def build(layers, input_shape, *, activation: str | None = None, init: str = "pytorch", seed: int = 0,
          dtype=np.float64) -> Sequential:
    """The ``manual.nn.Sequential`` that ``layers`` describes for inputs of shape (B, *input_shape).

    Every parameter is drawn from ``np.random.default_rng(seed)`` with ``init`` (``manual.init``), layer by
    layer in order, in float64, then cast to ``dtype``: the same seed gives the same network on both backends.
    A layer that does not fit the shape arriving at it is a ValueError naming it, e.g.
    ``layers[1] 'linear 10': a linear layer takes a flat vector of features, gets shape (1, 28, 28): …``.
    """
    from manual.network import as_dtype

    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}")
    dtype = as_dtype(dtype)
    shape, modules = tuple(int(n) for n in np.atleast_1d(input_shape)), []
    for i, layer in enumerate(check_layers(layers)):
        try:
            module = make(parse(layer), shape, activation)
            shape = module.output_shape(shape)
        except ValueError as err:
            raise ValueError(f"layers[{i}] {layer!r}: {err}") from None
        modules.append(module)
    model = Sequential(*modules)
    rng = np.random.default_rng(seed)
    for module in modules:
        module.reset_parameters(rng, init)
    return model.to(dtype)


def output_shape(layers, input_shape, activation: str | None = None) -> tuple:
    """The per-example output shape of the network ``layers`` describes (its parameters are not drawn)."""
    return build(layers, input_shape, activation=activation).output_shape(tuple(np.atleast_1d(input_shape)))


def expand(layer_sizes, activation: str = ACTIVATION, batch_norm: bool = False) -> tuple[str, ...]:
    """The short form of an MLP written out: ``[784, 128, 10]`` → ``("linear 128", activation, "linear 10")``;
    with batch norm each hidden linear layer has no bias and is followed by ``batchnorm`` (before its
    activation, the original paper's order)."""
    layers = []
    for width in layer_sizes[1:-1]:
        layers += [f"linear {width} bias=false", "batchnorm"] if batch_norm else [f"linear {width}"]
        layers.append(activation)
    layers.append(f"linear {layer_sizes[-1]}")
    return tuple(layers)
