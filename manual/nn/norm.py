"""``BatchNorm1d``, as ``torch.nn.BatchNorm1d`` (the equations and the backward pass: ``manual.layers``)."""
from __future__ import annotations

import numpy as np

from manual import layers
from manual.nn.module import Module


class BatchNorm1d(Module):
    """x: (B, num_features), normalised per feature: training mode with the batch's statistics (updating the
    running estimates, ``momentum`` 0.1, unbiased variance, batches counted), eval mode with the running
    estimates. Parameters ``weight`` (γ = 1) and ``bias`` (β = 0); buffers ``running_mean`` (0),
    ``running_var`` (1) and ``num_batches_tracked`` (a 0-d int64 count), under torch's names."""

    def __init__(self, num_features: int, eps: float = layers.BN_EPS, momentum: float = layers.BN_MOMENTUM,
                 dtype=np.float64):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.register_parameter("weight", np.ones(self.num_features, dtype=dtype))
        self.register_parameter("bias", np.zeros(self.num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def reset_parameters(self, rng, init):
        """γ = 1 and β = 0 whatever the initialiser (torch's), drawing nothing from ``rng``."""
        self.weight[...], self.bias[...] = 1, 0

    # the forward/backward pair that normalises (BatchNorm2d has its own: per channel of an image)
    normalise, normalise_backward = staticmethod(layers.batchnorm_forward), staticmethod(layers.batchnorm_backward)

    def check_input(self, x) -> None:
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}) takes (batch, {self.num_features}) inputs, got "
                             f"shape {x.shape}")

    def forward(self, x):
        self.check_input(x)
        out, self.cache = self.normalise(
            x, self.weight, self.bias, training=self.training, running_mean=self.running_mean,
            running_var=self.running_var, num_batches_tracked=self.num_batches_tracked, momentum=self.momentum,
            eps=self.eps)
        return out

    def backward(self, dout, input_grad=True):
        grads = self.normalise_backward(dout, self.cache)
        self.grads = {"weight": grads["gamma"], "bias": grads["beta"]}
        return grads["x"] if input_grad else None

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.num_features,):
            raise ValueError(f"normalises {self.num_features} features, gets shape {tuple(input_shape)}")
        return tuple(input_shape)

    def torch_spec(self):
        return type(self).__name__, {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum}

    def extra_repr(self):
        return f"{self.num_features}"
