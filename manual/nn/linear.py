"""``Linear``: z = x·Wᵀ + b, as ``torch.nn.Linear`` (the equations and the backward pass: ``manual.layers``)."""
from __future__ import annotations

import numpy as np

from manual import layers
from manual.init import draw_weight_bias
from manual.nn.init import default_generator
from manual.nn.module import Module


class Linear(Module):
    """x: (B, in_features) → z: (B, out_features); ``weight`` (out_features, in_features), ``bias`` (out_features,).

    ``bias=False``: no bias (before batch norm, whose β takes its place). Its parameters are drawn at
    construction with ``nn.Linear``'s default (U(±1/√in_features)) from ``manual.nn.init``'s generator;
    ``reset_parameters(rng, init)`` redraws them (a bias is drawn even when there is none, so that a network's
    weights do not depend on whether its biases exist).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float64):
        super().__init__()
        self.in_features, self.out_features, self.has_bias = int(in_features), int(out_features), bool(bias)
        self.register_parameter("weight", np.zeros((self.out_features, self.in_features), dtype=dtype))
        if self.has_bias:
            self.register_parameter("bias", np.zeros(self.out_features, dtype=dtype))
        self.reset_parameters(default_generator(), "pytorch")

    def reset_parameters(self, rng, init):
        weight, bias = draw_weight_bias(rng, self.weight.shape, self.in_features, self.out_features, init)
        self.weight[...] = weight
        if self.has_bias:
            self.bias[...] = bias

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}) takes (batch, {self.in_features}) "
                             f"inputs, got shape {x.shape}")
        z, self.cache = layers.linear_forward(x, self.weight, self.bias if self.has_bias else None)
        return z

    def backward(self, dout, input_grad=True):
        grads = layers.linear_backward(dout, self.cache, input_grad=input_grad)
        self.grads = {"weight": grads["W"], **({"bias": grads["b"]} if self.has_bias else {})}
        return grads.get("x")

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"takes {self.in_features} features per example, gets shape {tuple(input_shape)}")
        return (self.out_features,)

    def torch_spec(self):
        return "Linear", {"in_features": self.in_features, "out_features": self.out_features, "bias": self.has_bias}

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}"
