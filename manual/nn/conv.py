"""``Conv2d``, ``MaxPool2d``, ``AvgPool2d`` and ``BatchNorm2d``, as torch's (the equations and backward passes:
``manual.conv``, whose vectorised functions these modules train with).

Inputs are (N, C, H, W); a per-example shape for ``output_shape`` is (C, H, W). Kernel sizes, strides and
paddings are an int or a pair (height, width), stored as pairs, as torch stores them.
"""
from __future__ import annotations

import math

import numpy as np

from manual import conv
from manual.init import draw_weight_bias
from manual.nn.init import default_generator
from manual.nn.module import Module
from manual.nn.norm import BatchNorm1d


def image_shape(layer: str, input_shape, channels: int | None = None) -> tuple[int, int, int]:
    """One example's (C, H, W), or a ValueError naming ``layer`` if it is not an image (of ``channels`` channels)."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(f"{layer} takes (channels, height, width) images, gets shape {shape}")
    if channels is not None and shape[0] != channels:
        raise ValueError(f"{layer} takes {channels} input channel(s), gets shape {shape}")
    return shape


def check_batch(layer: str, x, channels: int | None = None) -> None:
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        what = f"{channels}" if channels is not None else "C"
        raise ValueError(f"{layer} takes (batch, {what}, height, width) inputs, got shape {x.shape}")


class Conv2d(Module):
    """x (N, in_channels, H, W) → (N, out_channels, Ho, Wo), as ``nn.Conv2d`` (cross-correlation, zero padding).

    ``weight`` (out_channels, in_channels, kh, kw) and ``bias`` (out_channels,), drawn at construction with
    ``nn.Conv2d``'s default, U(±1/√fan_in) with fan_in = in_channels·kh·kw, from ``manual.nn.init``'s generator;
    ``reset_parameters(rng, init)`` redraws them with fan_in = in_channels·kh·kw and fan_out = out_channels·kh·kw
    (torch's convention for a kernel's fans). ``bias=False``: no bias (before batch normalisation).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True,
                 dtype=np.float64):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"Conv2d needs in_channels and out_channels ≥ 1, got {in_channels} and {out_channels}")
        self.kernel_size = conv.pair(kernel_size, "kernel_size")
        self.stride = conv.pair(stride, "stride")
        self.padding = conv.pair(padding, "padding", minimum=0)
        self.has_bias = bool(bias)
        self.register_parameter("weight", np.zeros((self.out_channels, self.in_channels, *self.kernel_size),
                                                   dtype=dtype))
        if self.has_bias:
            self.register_parameter("bias", np.zeros(self.out_channels, dtype=dtype))
        self.reset_parameters(default_generator(), "pytorch")

    def reset_parameters(self, rng, init):
        area = self.kernel_size[0] * self.kernel_size[1]
        weight, bias = draw_weight_bias(rng, self.weight.shape, self.in_channels * area, self.out_channels * area,
                                        init)
        self.weight[...] = weight
        if self.has_bias:
            self.bias[...] = bias

    def forward(self, x):
        check_batch(repr(self), x, self.in_channels)
        out, self.cache = conv.conv_forward(x, self.weight, self.bias if self.has_bias else None,
                                            stride=self.stride, padding=self.padding)
        return out

    def backward(self, dout, input_grad=True):
        grads = conv.conv_backward(dout, self.cache, input_grad=input_grad)
        self.grads = {"weight": grads["w"], **({"bias": grads["b"]} if self.has_bias else {})}
        return grads.get("x")

    def output_shape(self, input_shape):
        _, H, W = image_shape(repr(self), input_shape, self.in_channels)
        return (self.out_channels, *conv.output_size(H, W, self.kernel_size, self.stride, self.padding, repr(self)))

    def torch_spec(self):
        return "Conv2d", {"in_channels": self.in_channels, "out_channels": self.out_channels,
                          "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                          "bias": self.has_bias}

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        return text + ("" if self.has_bias else ", bias=False")


class _Pool(Module):
    """What the poolings share: kernel, stride (the kernel when None, torch's default) and no parameters."""

    padding = (0, 0)

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = conv.pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else conv.pair(stride, "stride")

    def output_shape(self, input_shape):
        C, H, W = image_shape(repr(self), input_shape)
        return (C, *conv.output_size(H, W, self.kernel_size, self.stride, self.padding, repr(self)))


class MaxPool2d(_Pool):
    """x (N, C, H, W) → (N, C, Ho, Wo): the maximum of each window, as ``nn.MaxPool2d`` (padding with −∞, windows
    that do not fit dropped; on a tie the gradient goes to the first maximum in row-major order, as torch's)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride)
        self.padding = conv.pair(padding, "padding", minimum=0)
        conv.check_pool_padding(self.kernel_size, self.padding, "MaxPool2d")

    def forward(self, x):
        check_batch(repr(self), x)
        out, self.cache = conv.maxpool_forward(x, kernel_size=self.kernel_size, stride=self.stride,
                                               padding=self.padding)
        return out

    def backward(self, dout, input_grad=True):
        self.grads = {}
        return conv.maxpool_backward(dout, self.cache)["x"] if input_grad else None

    def torch_spec(self):
        return "MaxPool2d", {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_Pool):
    """x (N, C, H, W) → (N, C, Ho, Wo): the mean of each window, as ``nn.AvgPool2d`` without padding."""

    def forward(self, x):
        check_batch(repr(self), x)
        out, self.cache = conv.avgpool_forward(x, kernel_size=self.kernel_size, stride=self.stride)
        return out

    def backward(self, dout, input_grad=True):
        self.grads = {}
        return conv.avgpool_backward(dout, self.cache)["x"] if input_grad else None

    def torch_spec(self):
        return "AvgPool2d", {"kernel_size": self.kernel_size, "stride": self.stride}

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class BatchNorm2d(BatchNorm1d):
    """x (N, num_features, H, W), normalised per channel over the batch and both spatial axes, as
    ``nn.BatchNorm2d`` (``manual.conv.batchnorm2d_forward`` says why that is ``BatchNorm1d`` on (N·H·W, C) rows).
    The same parameters and buffers as ``BatchNorm1d``, under torch's names; eval mode uses the running estimates."""

    normalise, normalise_backward = staticmethod(conv.batchnorm2d_forward), staticmethod(conv.batchnorm2d_backward)

    def check_input(self, x) -> None:
        check_batch(f"BatchNorm2d({self.num_features})", x, self.num_features)
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] < 2:
            raise ValueError(f"BatchNorm2d in training mode needs more than one value per channel, got input shape "
                             f"{x.shape} (as torch): use a larger batch or image, or eval mode")

    def output_shape(self, input_shape):
        image_shape(f"BatchNorm2d({self.num_features})", input_shape, self.num_features)
        return tuple(input_shape)


# ------------------------------------------------------------------------------ the architecture as data
def _arriving_image(what: str, shape) -> tuple[int, int, int]:
    """The (C, H, W) arriving at a layer written as data, or the ValueError that says which 'unflatten' fits."""
    shape = tuple(shape)
    if len(shape) != 3:
        side = math.isqrt(shape[0]) if len(shape) == 1 else 0  # a flat square image: 1 × side × side
        sizes = f"1 {side} {side}" if side > 0 and side * side == shape[0] else "C H W"
        raise ValueError(f"{what} takes (channels, height, width) images, gets shape {shape}: put "
                         f"'unflatten {sizes}' before it")
    return shape


def make_conv(shape, out_channels, kernel_size, stride=1, padding=0, bias=True) -> Conv2d:
    """'conv OUT KERNEL [stride=S] [padding=P] [bias=false]': ``Conv2d`` with in_channels from the shape arriving."""
    return Conv2d(_arriving_image("a convolution", shape)[0], out_channels, kernel_size, stride, padding, bias)


def make_maxpool(shape, kernel_size, stride=None, padding=0) -> MaxPool2d:
    """'maxpool K [stride=S] [padding=P]'."""
    _arriving_image("max pooling", shape)
    return MaxPool2d(kernel_size, stride, padding)


def make_avgpool(shape, kernel_size, stride=None) -> AvgPool2d:
    """'avgpool K [stride=S]'."""
    _arriving_image("average pooling", shape)
    return AvgPool2d(kernel_size, stride)
