"""The loss at the top of a network: ``loss_and_grads(model, X, y, loss)`` is one step's forward and backward pass.

The model maps X to the output layer's pre-activations z (B, n_classes); the loss (``manual.losses``) applies
its output activation g and returns the batch-mean loss with δ = ∂E/∂z, and ``model.backward(δ)`` carries δ
down through every layer. ½Σ squared error gets sigmoid outputs and cross-entropy a softmax (via log-sum-exp),
unless ``output_activation`` names another.
"""
from __future__ import annotations

import numpy as np

from manual.activations import get_activation
from manual.losses import get_loss


def output_activation(loss: str, name: str | None = None):
    """The output units' activation: ``name``, or the loss's default (sigmoid for mse, identity for cross-entropy)."""
    return get_activation(name or get_loss(loss).output_activation)


def loss_value(model, X, y, loss: str = "cross_entropy", output: str | None = None) -> float:
    """The batch-mean loss of ``model`` on (X, y), forward pass only."""
    act = output_activation(loss, output)
    z = model.forward(X)
    return get_loss(loss)(z, np.asarray(y), act).loss


def loss_and_grads(model, X, y, loss: str = "cross_entropy", output: str | None = None) -> tuple[float, dict]:
    """(batch-mean loss, {state-dict key: ∂E/∂θ}) of ``model`` on (X, y); labels are integer class indices.

    The forward pass keeps each layer's cache, the loss gives δ = ∂E/∂z, and ``model.backward(δ)`` is the chain
    rule, last layer first (the first layer skips ∂E/∂X: the data needs no gradient).
    """
    act = output_activation(loss, output)
    z = model.forward(X)
    value, delta = get_loss(loss)(z, np.asarray(y), act)
    model.backward(delta, input_grad=False)
    return value, model.named_grads()
