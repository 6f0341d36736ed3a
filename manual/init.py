"""Seeded parameter initialisers.

Weights have ``nn.Linear``'s layout (out_features, in_features). All draws come
from one ``np.random.default_rng(seed)`` in a fixed order (layer by layer,
weight then bias), so the same seed always gives the same parameters — and
``torch_ref`` builds its initial parameters with this same function, so both
implementations start from identical numbers.

- ``normal``: W, b ~ N(0, 1), the classic teaching default (Nielsen's ``network.py``).
- ``xavier``: W ~ U(−a, a), a = √(6 / (fan_in + fan_out)) (Glorot & Bengio 2010); b = 0.
- ``he``: W ~ N(0, 2 / fan_in) (Kaiming He et al. 2015); b = 0.
- ``pytorch``: W, b ~ U(−1/√fan_in, 1/√fan_in), what ``nn.Linear`` does by default.
"""
from __future__ import annotations

import numpy as np

INITS = ("normal", "xavier", "he", "pytorch")


def draw_weight_bias(rng: np.random.Generator, shape: tuple, fan_in: int, fan_out: int, init: str):
    """A weight of ``shape`` and a bias of ``shape[0]`` entries (one per output unit or channel), in float64.

    ``fan_in`` and ``fan_out`` are the numbers of inputs and outputs each weight connects: a linear layer's
    in and out features, a convolution's in and out channels times its kernel's area (torch's convention).
    The weight is drawn first, then the bias, from ``rng``.
    """
    shape, units = tuple(shape), shape[0]
    if init == "normal":
        return rng.standard_normal(shape), rng.standard_normal(units)
    if init == "xavier":
        a = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-a, a, shape), np.zeros(units)
    if init == "he":
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in), np.zeros(units)
    if init == "pytorch":
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape), rng.uniform(-bound, bound, units)
    raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")


def init_layer(rng: np.random.Generator, fan_in: int, fan_out: int, init: str):
    """One linear layer's (weight of shape (fan_out, fan_in), bias of shape (fan_out,)) in float64."""
    return draw_weight_bias(rng, (fan_out, fan_in), fan_in, fan_out, init)


def init_params(layer_sizes, init: str = "normal", seed: int = 0, dtype=np.float64) -> dict:
    """All parameters of an MLP as a dict ``layers.{i}.weight`` / ``layers.{i}.bias`` → array."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        w, b = init_layer(rng, fan_in, fan_out, init)
        params[f"layers.{i}.weight"] = w.astype(dtype)
        params[f"layers.{i}.bias"] = b.astype(dtype)
    return params
