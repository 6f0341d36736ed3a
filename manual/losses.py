"""Losses averaged over the batch, each with its gradient with respect to the output layer.

Labels are integer class indices ``y`` of shape (B,). Each loss returns the
batch-mean loss and ∂E/∂z_L, the gradient with respect to the *pre-activation*
of the output layer, since that is where backpropagation starts.

- ``mse``: E = ½·Σ_k (a_k − y_k)² per sample with one-hot targets y and output
  units a = g(z) (sigmoid by default: the classic setup), so
  ∂E/∂z_k = (a_k − y_k)·g'(z_k), divided by B for the batch mean.
- ``cross_entropy``: softmax output, E = −log softmax(z)_y = logsumexp(z) − z_y,
  so ∂E/∂z = softmax(z) − onehot(y), divided by B. Computed via log-sum-exp,
  so E is finite even when a probability underflows to 0.

Your own loss is a ``Loss`` record, made usable by name with ``register_loss`` (see ``Loss``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, NamedTuple

import numpy as np

from . import registry

from .activations import Activation


def one_hot(y: np.ndarray, n_classes: int, dtype) -> np.ndarray:
    """(B,) integer labels → (B, n_classes) rows with a single 1."""
    out = np.zeros((y.shape[0], n_classes), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax along the last axis, via log-sum-exp: z − max − log Σ e^(z − max)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """softmax along the last axis; rows sum to 1 and nothing overflows."""
    return np.exp(log_softmax(z))


class LossResult(NamedTuple):
    loss: float
    dz: np.ndarray  # ∂E/∂z of the output layer, shape (B, n_classes)


def mse(z: np.ndarray, y: np.ndarray, output: Activation, a: np.ndarray | None = None) -> LossResult:
    """½·Σ_k (g(z_k) − onehot(y)_k)² per sample, averaged over the batch; ``a`` = g(z) if already known."""
    batch = z.shape[0]
    a = output.f(z) if a is None else a
    diff = a - one_hot(y, z.shape[1], z.dtype)
    loss = 0.5 * float(np.sum(diff * diff)) / batch
    return LossResult(loss, diff * output.derivative(z, a) / batch)


def cross_entropy(z: np.ndarray, y: np.ndarray, output: Activation, a: np.ndarray | None = None) -> LossResult:
    """−log softmax(g(z))_y averaged over the batch (g is the identity by default); ``a`` = g(z) if already known."""
    batch = z.shape[0]
    scores = output.f(z) if a is None else a
    logp = log_softmax(scores)
    loss = -float(np.sum(logp[np.arange(batch), y])) / batch
    d_scores = (np.exp(logp) - one_hot(y, z.shape[1], z.dtype)) / batch
    return LossResult(loss, d_scores * output.derivative(z, scores))


class Loss(NamedTuple):
    """A loss with its hand-written gradient: a built-in or your own.

    Args:
        name: the name it is registered and looked up under (``MLP(..., loss=name)``).
        fn: ``fn(z, y, output, a=None) -> LossResult(loss, dz)``: z the output layer's pre-activations (B, C),
            y the (B,) integer labels, ``output`` the output units' ``Activation`` and ``a`` = output.f(z) when
            the caller has it. Returns the batch-mean loss and dz = ∂E/∂z, the gradient with respect to the
            *pre-activation*, with ``output.derivative`` applied by hand (see ``mse``).
        torch_fn: ``torch_fn(out, y) -> scalar tensor``, the same loss on ``torch_ref``'s output activations
            (out = output.torch_fn(z)); autograd then gives its gradient. Optional (torch_ref needs it).
        output_activation: the output units' activation unless the network says otherwise.
    """

    name: str
    fn: Callable
    torch_fn: Callable | None = None
    output_activation: str = "identity"

    def __call__(self, z: np.ndarray, y: np.ndarray, output: Activation, a: np.ndarray | None = None) -> LossResult:
        loss, dz = self.fn(z, y, output, a)  # a plain (loss, dz) tuple is fine too
        return LossResult(loss, dz)


BUILTIN_LOSSES = {"mse": Loss("mse", mse, output_activation="sigmoid"),
                  "cross_entropy": Loss("cross_entropy", cross_entropy, output_activation="identity")}
# The registry: every name ``MLP``, ``torch_ref`` and the commands accept; ``register_loss`` adds to it.
LOSSES: dict[str, Loss] = dict(BUILTIN_LOSSES)


class _DefaultOutputs(Mapping):
    """loss name → the activation its output units get unless told otherwise (read from ``LOSSES``)."""

    def __getitem__(self, name):
        return LOSSES[name].output_activation

    def __iter__(self):
        return iter(LOSSES)

    def __len__(self):
        return len(LOSSES)


DEFAULT_OUTPUT_ACTIVATION = _DefaultOutputs()


def get_loss(name: str) -> Loss:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}")
    return LOSSES[name]


def register_loss(loss: Loss, override: bool = False) -> Loss:
    """Make ``loss`` usable by its name everywhere a built-in is; returns it.

    ``fn`` is first tried on a small batch (``validate_loss``). The same object twice is a no-op; a taken name
    is refused unless ``override`` (never for a built-in).
    """
    if not isinstance(loss, Loss):
        raise ValueError(f"register_loss() takes a manual.losses.Loss, got {type(loss).__name__}")
    return registry.register(LOSSES, BUILTIN_LOSSES, loss, "loss", validate_loss, override)


def unregister_loss(name: str) -> None:
    """Remove a registered plug-in loss (built-ins stay)."""
    registry.unregister(LOSSES, BUILTIN_LOSSES, name, "loss")


def validate_loss(loss: Loss) -> None:
    """Refuse a loss whose ``fn`` breaks the contract on a small batch: raises ValueError saying how."""
    from .activations import get_activation

    if not callable(loss.fn) or (loss.torch_fn is not None and not callable(loss.torch_fn)):
        raise ValueError(f"loss {loss.name!r}: fn (and torch_fn, if given) must be functions")
    output = get_activation(loss.output_activation)
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((3, 4)), np.array([0, 3, 1])
    with np.errstate(all="ignore"):
        try:
            value, dz = loss.fn(z, y, output, None)
        except Exception as err:  # the user's code: any exception is theirs to see
            raise ValueError(f"loss {loss.name!r}: fn(z, y, output) raised {type(err).__name__}: {err}") from err
    if np.ndim(value) != 0 or not np.isfinite(value):
        raise ValueError(f"loss {loss.name!r}: fn must return a finite scalar loss first, got {value!r}")
    if np.shape(dz) != z.shape:
        raise ValueError(f"loss {loss.name!r}: fn's gradient dz must have z's shape {z.shape}, got shape "
                         f"{np.shape(dz)}")
    bad = ~np.isfinite(dz)
    if bad.any():
        raise ValueError(f"loss {loss.name!r}: fn's gradient dz is {dz[bad][0]} at index "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}; it must be finite")
