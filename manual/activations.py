"""Activation functions and their hand-derived derivatives.

Each activation is a pair ``f(z)`` / ``df(z)`` of element-wise NumPy functions,
where ``df`` is the derivative ∂a/∂z written out by hand (never by autograd).
Every function is numerically stable: no overflow warning and no NaN for
|z| up to 1e4 in float32 and float64.

The names and constants match PyTorch's modules so that ``torch_ref`` can
mirror them exactly: ``leaky_relu`` has slope 0.01 (``nn.LeakyReLU()``),
``elu`` has α = 1 (``nn.ELU()``), ``swish`` is ``nn.SiLU``, ``gelu`` is
``nn.GELU(approximate="tanh")`` and ``softplus`` is ``nn.Softplus()`` with
β = 1 and its linear regime above z = 20.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
SOFTPLUS_THRESHOLD = 20.0
_GELU_C = math.sqrt(2.0 / math.pi)  # √(2/π) of the tanh approximation
_GELU_K = 0.044715


class Activation(NamedTuple):
    """An element-wise activation ``f`` with its derivative ``df`` = f'(z).

    ``df_from_output``, where given, is the same derivative written in terms of
    the output a = f(z) (σ' = σ·(1 − σ), tanh' = 1 − tanh²): backpropagation
    already holds a from the forward pass, so it need not evaluate f again.
    """

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    df: Callable[[np.ndarray], np.ndarray]
    max_slope: float  # sup |f'(z)|
    df_from_output: Callable[[np.ndarray], np.ndarray] | None = None
    # ``saturated(a)``: the mask of outputs a = f(z) in the activation's flat tails, where f' ≈ 0 and learning
    # stalls (Glorot & Bengio 2010); None for an activation without such tails (ReLU's flat side is "dead").
    saturated: Callable[[np.ndarray], np.ndarray] | None = None

    def derivative(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        """f'(z) given also a = f(z): the same numbers as ``df(z)``, from ``a`` when that is cheaper."""
        return self.df(z) if self.df_from_output is None else self.df_from_output(a)


def sigmoid(z):
    """σ(z) = 1 / (1 + e^(−z)), evaluated without ever exponentiating a large positive number."""
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.where(z >= 0, 1.0, e) / (1.0 + e)  # 1/(1 + e^(−z)) for z ≥ 0, e^z/(1 + e^z) for z < 0


def d_sigmoid_from_output(s):
    """σ' = σ·(1 − σ), from s = σ(z)."""
    return s * (1 - s)


def d_sigmoid(z):
    """σ'(z) = σ(z)·(1 − σ(z))."""
    return d_sigmoid_from_output(sigmoid(z))


SATURATION_MARGIN = 0.03  # an output within 3% of its range's end is in a flat tail (Glorot & Bengio 2010)


def sigmoid_saturated(s):
    """σ within 0.03 of 0 or 1: σ' = σ(1 − σ) < 0.03 there, under 12% of its peak ¼."""
    return (s < SATURATION_MARGIN) | (s > 1 - SATURATION_MARGIN)


def tanh_saturated(t):
    """|tanh| > 0.97: tanh' = 1 − tanh² < 0.06 there."""
    return np.abs(t) > 1 - SATURATION_MARGIN


def tanh(z):
    return np.tanh(z)


def d_tanh_from_output(t):
    """tanh' = 1 − tanh², from t = tanh(z)."""
    return 1 - t * t


def d_tanh(z):
    """tanh'(z) = 1 − tanh²(z)."""
    return d_tanh_from_output(np.tanh(z))


def relu(z):
    return np.maximum(z, 0)


def d_relu(z):
    """relu'(z) = 1 for z > 0, else 0 (PyTorch's choice at the kink z = 0)."""
    return (z > 0).astype(z.dtype)


def leaky_relu(z):
    return np.where(z > 0, z, LEAKY_SLOPE * z).astype(z.dtype, copy=False)


def d_leaky_relu(z):
    """1 for z > 0, else the slope 0.01."""
    return np.where(z > 0, 1.0, LEAKY_SLOPE).astype(z.dtype, copy=False)


def elu(z):
    """z for z > 0, α·(e^z − 1) otherwise; expm1 of min(z, 0) so e^z never overflows."""
    return np.where(z > 0, z, ELU_ALPHA * np.expm1(np.minimum(z, 0))).astype(z.dtype, copy=False)


def d_elu(z):
    """1 for z > 0, α·e^z otherwise."""
    return np.where(z > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(z, 0))).astype(z.dtype, copy=False)


def swish(z):
    """swish(z) = z·σ(z) (PyTorch's SiLU)."""
    return z * sigmoid(z)


def d_swish(z):
    """(z·σ)' = σ + z·σ·(1 − σ) by the product rule."""
    s = sigmoid(z)
    return s + z * s * (1 - s)


def gelu(z):
    """GELU, tanh approximation: ½·z·(1 + tanh(u)), u = √(2/π)·(z + 0.044715·z³).

    For |z| large the cube overflows float32 to ±inf; tanh(±inf) = ±1 is then
    still the right limit, so we clip z first only to keep NumPy from warning.
    """
    zc = np.clip(z, -100, 100)
    u = _GELU_C * (zc + _GELU_K * zc**3)
    return 0.5 * z * (1 + np.tanh(u))


def d_gelu(z):
    """½·(1 + tanh u) + ½·z·(1 − tanh² u)·u',  u' = √(2/π)·(1 + 3·0.044715·z²)."""
    zc = np.clip(z, -100, 100)
    t = np.tanh(_GELU_C * (zc + _GELU_K * zc**3))
    du = _GELU_C * (1 + 3 * _GELU_K * zc * zc)
    return 0.5 * (1 + t) + 0.5 * zc * (1 - t * t) * du


def softplus(z):
    """log(1 + e^z) = max(z, 0) + log1p(e^(−|z|)); linear (= z) above 20 as in PyTorch."""
    soft = np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    return np.where(z > SOFTPLUS_THRESHOLD, z, soft).astype(z.dtype, copy=False)


def d_softplus(z):
    """softplus'(z) = σ(z) (and exactly 1 in the linear regime above 20)."""
    return np.where(z > SOFTPLUS_THRESHOLD, 1.0, sigmoid(z)).astype(z.dtype, copy=False)


def identity(z):
    return z


def d_identity(z):
    return np.ones_like(z)


# sup |f'|: σ' peaks at ¼; GELU' peaks just above 1 (at z ≈ 2.1); the others at 1.
ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("sigmoid", sigmoid, d_sigmoid, 0.25, d_sigmoid_from_output, sigmoid_saturated),
        Activation("tanh", tanh, d_tanh, 1.0, d_tanh_from_output, tanh_saturated),
        Activation("relu", relu, d_relu, 1.0),
        Activation("leaky_relu", leaky_relu, d_leaky_relu, 1.0),
        Activation("elu", elu, d_elu, 1.0),
        Activation("swish", swish, d_swish, 1.0998),
        Activation("gelu", gelu, d_gelu, 1.1289),
        Activation("softplus", softplus, d_softplus, 1.0),
        Activation("identity", identity, d_identity, 1.0),
    ]
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name, with an error that lists the valid names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid activations: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]
