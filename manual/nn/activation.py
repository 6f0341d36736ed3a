"""Every activation as a module: a = f(x) element-wise, ∂E/∂x = dout ⊙ f′(x) (``manual.layers``, ``manual.activations``).

The classes carry torch's names (``ReLU``, ``Sigmoid``, ``Tanh``, ``LeakyReLU``, ``ELU``, ``SiLU``, ``GELU``,
``Softplus``, ``Identity``) and constants (slope 0.01, α = 1, the tanh-approximate GELU, softplus linear
above 20); ``Activation(name)`` is the module of any registered activation, a plug-in included.
"""
from __future__ import annotations

from manual import layers
from manual.activations import BUILTINS, ELU_ALPHA, LEAKY_SLOPE, get_activation
from manual.nn.module import Module

# built-in name → (torch.nn class, its arguments): the module torch_ref.mirror builds
TORCH_ACTIVATIONS = {
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "relu": ("ReLU", {}),
    "leaky_relu": ("LeakyReLU", {"negative_slope": LEAKY_SLOPE}),
    "elu": ("ELU", {"alpha": ELU_ALPHA}),
    "swish": ("SiLU", {}),
    "gelu": ("GELU", {"approximate": "tanh"}),
    "softplus": ("Softplus", {}),
    "identity": ("Identity", {}),
}
PLUGIN = "plugin"  # torch_spec's class name for a plug-in: torch_ref builds it from the activation's torch_fn


class Activation(Module):
    """The activation registered as ``name`` (``manual.activations``) applied element-wise to any shape."""

    def __init__(self, name: str):
        super().__init__()
        self.activation = get_activation(name)

    @property
    def name(self) -> str:
        return self.activation.name

    def forward(self, x):
        a, self.cache = layers.activation_forward(x, activation=self.activation)
        return a

    def backward(self, dout, input_grad=True):
        self.grads = {}
        return layers.activation_backward(dout, self.cache)["x"] if input_grad else None

    def torch_spec(self):
        if self.name in BUILTINS:
            return TORCH_ACTIVATIONS[self.name]
        return PLUGIN, {"name": self.name}

    def extra_repr(self):
        return "" if type(self) is not Activation else repr(self.name)


class Sigmoid(Activation):
    """σ(x) = 1/(1 + e^(−x)); σ′ = σ(1 − σ). ``nn.Sigmoid``."""

    def __init__(self):
        super().__init__("sigmoid")


class Tanh(Activation):
    """tanh(x); tanh′ = 1 − tanh². ``nn.Tanh``."""

    def __init__(self):
        super().__init__("tanh")


class ReLU(Activation):
    """max(x, 0); ReLU′ = 1 for x > 0, else 0. ``nn.ReLU``."""

    def __init__(self):
        super().__init__("relu")


class LeakyReLU(Activation):
    """x for x > 0, else 0.01·x. ``nn.LeakyReLU(0.01)``."""

    def __init__(self):
        super().__init__("leaky_relu")


class ELU(Activation):
    """x for x > 0, else eˣ − 1. ``nn.ELU(alpha=1.0)``."""

    def __init__(self):
        super().__init__("elu")


class SiLU(Activation):
    """x·σ(x) (swish). ``nn.SiLU``."""

    def __init__(self):
        super().__init__("swish")


class Softplus(Activation):
    """log(1 + eˣ), linear above 20. ``nn.Softplus()``."""

    def __init__(self):
        super().__init__("softplus")


class Identity(Activation):
    """x. ``nn.Identity``."""

    def __init__(self):
        super().__init__("identity")


class GELU(Activation):
    """GELU in its tanh approximation, ``nn.GELU(approximate="tanh")`` (the exact erf form is not derived here)."""

    def __init__(self, approximate: str = "tanh"):
        if approximate != "tanh":
            raise ValueError(f"manual.nn.GELU derives only approximate='tanh' by hand, got {approximate!r}")
        super().__init__("gelu")


# built-in name → its class, so that a network built from data prints as torch's would (``ReLU()``)
CLASSES = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU, "leaky_relu": LeakyReLU, "elu": ELU, "swish": SiLU,
           "gelu": GELU, "softplus": Softplus, "identity": Identity}


def activation_module(name: str) -> Activation:
    """The module of the activation registered as ``name``: torch's class name for a built-in, else ``Activation``."""
    return CLASSES[name]() if name in CLASSES else Activation(name)
