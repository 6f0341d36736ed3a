"""Layers that only reshape: ``Flatten`` and ``Unflatten``, as torch's (no parameters; backward reshapes back)."""
from __future__ import annotations

import math

from manual.nn.module import Module


class Flatten(Module):
    """(B, d₁, d₂, …) → (B, d₁·d₂·…), as ``nn.Flatten()``; ∂E/∂x is dout reshaped to x's shape."""

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout, input_grad=True):
        self.grads = {}
        return dout.reshape(self.shape) if input_grad else None

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def torch_spec(self):
        return "Flatten", {}


class Unflatten(Module):
    """(B, n) → (B, *shape) with prod(shape) = n, as ``nn.Unflatten(1, shape)``: MNIST's 784 pixels as a
    (1, 28, 28) image for a convolution, or as 28 time steps of 28 pixels for a recurrent layer."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(int(n) for n in shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"Unflatten needs positive sizes, got {self.shape}")

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != math.prod(self.shape):
            raise ValueError(f"Unflatten{self.shape} takes (batch, {math.prod(self.shape)}) inputs, got shape "
                             f"{x.shape}")
        return x.reshape(x.shape[0], *self.shape)

    def backward(self, dout, input_grad=True):
        self.grads = {}
        return dout.reshape(dout.shape[0], -1) if input_grad else None

    def output_shape(self, input_shape):
        if tuple(input_shape) != (math.prod(self.shape),):
            raise ValueError(f"needs {math.prod(self.shape)} features per example to make {self.shape}, gets "
                             f"shape {tuple(input_shape)}")
        return self.shape

    def torch_spec(self):
        return "Unflatten", {"dim": 1, "unflattened_size": self.shape}

    def extra_repr(self):
        return f"shape={self.shape}"
