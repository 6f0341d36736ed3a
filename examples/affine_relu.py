"""A hand-written layer for ``python -m experiments gradcheck --layer examples/affine_relu.py:affine_relu``.

The convention (CS231n's ``layers.py``) for a layer NAME:

- ``NAME_forward(**inputs) -> (out, cache)``: the inputs are NumPy arrays passed by keyword;
- ``NAME_backward(dout, cache) -> {input_name: gradient}``: dout = ∂L/∂out has out's shape, and every array
  input gets a gradient of its own shape;
- ``NAME_inputs(rng) -> {input_name: array}``: small example inputs drawn from ``rng``, a
  ``numpy.random.Generator`` (the check casts them to ``--dtype`` and draws dout itself).

Non-array options (a momentum, a mode) are bound with ``functools.partial`` or fixed inside the file.
"""
import numpy as np


def affine_relu_forward(x, W, b):
    """out = relu(x·Wᵀ + b).  x: (N, D), W: (M, D) as nn.Linear's, b: (M,) → out: (N, M)."""
    z = x @ W.T + b
    return np.maximum(z, 0), (x, W, z)


def affine_relu_backward(dout, cache):
    """dz = dout ⊙ [z > 0]; then dx = dz·W, dW = dzᵀ·x and db = Σ_batch dz (the sum over the batch: each
    example's contribution to the loss depends on the shared W and b)."""
    x, W, z = cache
    dz = dout * (z > 0)
    return {"x": dz @ W, "W": dz.T @ x, "b": dz.sum(axis=0)}


def affine_relu_inputs(rng):
    """A batch of 4 examples with 5 features into 3 units."""
    return {"x": rng.standard_normal((4, 5)), "W": rng.standard_normal((3, 5)), "b": rng.standard_normal(3)}
