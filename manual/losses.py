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
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import Activation

# The activation of the output units each loss expects unless told otherwise.
DEFAULT_OUTPUT_ACTIVATION = {"mse": "sigmoid", "cross_entropy": "identity"}
LOSSES = tuple(DEFAULT_OUTPUT_ACTIVATION)


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


LOSS_FUNCTIONS = {"mse": mse, "cross_entropy": cross_entropy}


def get_loss(name: str):
    if name not in LOSS_FUNCTIONS:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}")
    return LOSS_FUNCTIONS[name]
