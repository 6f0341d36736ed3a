"""The network's layers as forward/backward pairs with a cache (the convention of CS231n's ``layers.py``).

    out, cache = <layer>_forward(**inputs)          # inputs: NumPy arrays (and keyword-only options)
    grads      = <layer>_backward(dout, cache)      # {input name: ∂E/∂input}, for every array input

``dout`` is ∂E/∂out, the gradient arriving from above; each backward returns the gradient with
respect to every array its forward took, in the same shape. Options that are not inputs (an
activation function, batch normalisation's mode and running estimates) are keyword-only, so a
layer can be checked on its own with ``functools.partial`` binding them, e.g.
``check_backward(partial(batchnorm_forward, training=True), batchnorm_backward, inputs)``.

Shapes: B rows in the mini-batch, n input features, m output features.
"""
from __future__ import annotations

import numpy as np

BN_EPS = 1e-5  # nn.BatchNorm1d's defaults
BN_MOMENTUM = 0.1


# ------------------------------------------------------------------------------------------ linear
def linear_forward(x, W, b=None):
    """z = x·Wᵀ + b.   x: (B, n), W: (m, n) (``nn.Linear``'s (out, in) layout), b: (m,) or None (no bias)  →  z: (B, m)."""
    z = x @ W.T
    if b is not None:
        z += b
    return z, (x, W, b is not None)


def linear_backward(dout, cache, *, input_grad: bool = True) -> dict:
    """dout = ∂E/∂z (B, m) → {"x", "W", "b"} ("b" only if there was one); z_j = Σ_i x_i·W_ji + b_j per row, so

        ∂E/∂x = dout·W            (B, n)   each input feeds every output unit
        ∂E/∂W = doutᵀ·x           (m, n)   the sum over the batch is the matrix product
        ∂E/∂b = Σ_batch dout      (m,)

    ``input_grad=False`` leaves out ∂E/∂x (a network's input needs none: one matrix product saved).
    """
    x, W, has_bias = cache
    grads = {"W": dout.T @ x}
    if has_bias:
        grads["b"] = dout.sum(axis=0)
    if input_grad:
        grads["x"] = dout @ W
    return grads


# -------------------------------------------------------------------------------------- activation
def activation_forward(x, *, activation):
    """a = f(x) element-wise.   x: (B, m) → a: (B, m); ``activation``: a ``manual.activations`` entry."""
    a = activation.f(x)
    return a, (x, a, activation)


def activation_backward(dout, cache) -> dict:
    """∂E/∂x = dout ⊙ f′(x)   (B, m); f′ from a = f(x) where that is cheaper (σ′ = σ(1 − σ))."""
    x, a, activation = cache
    return {"x": dout * activation.derivative(x, a)}


# ----------------------------------------------------------------------------- batch normalisation
def check_training_batch(batch: int) -> None:
    """Training-mode batch normalisation needs two rows or more (``torch_ref`` raises this same error)."""
    if batch < 2:
        raise ValueError(f"batch normalisation in training mode needs at least 2 rows per batch, got {batch} "
                         "(the variance of one value is 0; PyTorch refuses it too): use a larger batch, or "
                         "eval mode for single rows")


def batchnorm_forward(x, gamma, beta, *, training: bool = True, running_mean=None, running_var=None,
                      num_batches_tracked=None, momentum: float = BN_MOMENTUM, eps: float = BN_EPS):
    """Batch normalisation (Ioffe & Szegedy 2015), as ``nn.BatchNorm1d``.  x: (B, m), gamma, beta: (m,).

    Training mode normalises each feature with the batch's own mean and *biased* variance,

        μ = (1/B)·Σ x,   σ² = (1/B)·Σ (x − μ)²,   x̂ = (x − μ)/√(σ² + ε),   out = γ·x̂ + β,

    and, when given the running estimates (arrays of shape (m,)), updates them in place with PyTorch's
    momentum convention, the variance *unbiased* (× B/(B − 1)), and counts the batch:

        running_mean ← (1 − momentum)·running_mean + momentum·μ
        running_var  ← (1 − momentum)·running_var  + momentum·σ²·B/(B − 1)
        num_batches_tracked ← num_batches_tracked + 1      (a 0-d integer array)

    Evaluation mode (``training=False``) normalises with the running estimates instead, so each row's
    output depends on that row alone: x̂ = (x − running_mean)/√(running_var + ε).
    """
    if training:
        batch = x.shape[0]
        check_training_batch(batch)
        mean = x.mean(axis=0)
        centred = x - mean
        var = (centred * centred).mean(axis=0)  # biased: divided by B
        inv_std = 1 / np.sqrt(var + eps)
        x_hat = centred * inv_std
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        if running_var is not None:
            running_var[...] = (1 - momentum) * running_var + momentum * var * (batch / (batch - 1))
        if num_batches_tracked is not None:
            num_batches_tracked += 1
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch normalisation in eval mode needs running_mean and running_var")
        inv_std = 1 / np.sqrt(running_var + eps)
        x_hat = (x - running_mean) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std, training)


def batchnorm_backward(dout, cache) -> dict:
    """dout = ∂E/∂out (B, m) → {"x": (B, m), "gamma": (m,), "beta": (m,)}, per feature (column):

        ∂E/∂β = Σ dout                 ∂E/∂γ = Σ dout·x̂                (sums over the batch)

    Evaluation mode: x̂ is affine in x, so ∂E/∂x = dout·γ/σ with σ = √(running_var + ε).

    Training mode: μ and σ depend on every row, so each x_i reaches E through all the x̂_j. With
    ∂μ/∂x_i = 1/B and ∂σ/∂x_i = (x_i − μ)/(B·σ) = x̂_i/B (σ = √(σ² + ε) here),

        ∂x̂_j/∂x_i = (δ_ij − 1/B)/σ − (x_j − μ)/σ² · x̂_i/B = (1/σ)·(δ_ij − 1/B − x̂_i·x̂_j/B),

    and summing dx̂_j = dout_j·γ against it gives the compact form (one pass, no B×B Jacobian):

        ∂E/∂x_i = Σ_j dx̂_j·∂x̂_j/∂x_i = (γ/(B·σ))·(B·dout_i − Σ_j dout_j − x̂_i·Σ_j dout_j·x̂_j)
                = (γ/(B·σ))·(B·dout_i − ∂E/∂β − x̂_i·∂E/∂γ).

    The two subtracted terms remove what shifting every row, or scaling every row about μ, would do
    (normalisation undoes both): Σ_i ∂E/∂x_i = 0, and Σ_i ∂E/∂x_i·x̂_i = 0 up to the ε in σ.
    """
    x_hat, gamma, inv_std, training = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    if training:
        batch = dout.shape[0]
        dx = (gamma * inv_std / batch) * (batch * dout - dbeta - x_hat * dgamma)
    else:
        dx = dout * (gamma * inv_std)
    return {"x": dx, "gamma": dgamma, "beta": dbeta}
