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

Your own activation is an ``Activation`` too: ``register(Activation("mish", f, df, torch_fn))``
makes its name valid everywhere a built-in's is (``examples/mish.py``).
"""
from __future__ import annotations

import math

import numpy as np

from . import registry

LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
SOFTPLUS_THRESHOLD = 20.0
_GELU_C = math.sqrt(2.0 / math.pi)  # √(2/π) of the tanh approximation
_GELU_K = 0.044715


class Activation:
    """An element-wise activation ``f`` with its hand-written derivative ``df`` = f'(z): a built-in or your own.

    Args:
        name: the name it is registered and looked up under (``MLP(..., activation=name)``).
        f, df: NumPy functions of the pre-activation ``z``, element-wise, for any shape, returning an array of
            ``z``'s shape and dtype; ``df`` is the derivative written by hand (the thing the suite checks).
        torch_fn: the same ``f`` on tensors, used by ``torch_ref`` (autograd then supplies its derivative, an
            independent reference for ``df``). Only stored here: ``manual`` never imports torch.
        max_slope: sup |f'(z)|; measured on a dense grid of z in [−50, 50] when not given.
        df_from_output: the same derivative written in terms of the output a = f(z) (σ' = σ·(1 − σ),
            tanh' = 1 − tanh²): backpropagation already holds a from the forward pass, so it need not
            evaluate f again.
        saturated: ``saturated(a)``, the mask of outputs a = f(z) in the activation's flat tails, where
            f' ≈ 0 and learning stalls (Glorot & Bengio 2010); None for an activation without such tails
            (ReLU's flat side is "dead", not saturated).
        kinks: the z where f is not differentiable (ReLU's 0) or switches formula (softplus's 20): the
            gradient checks treat a finite difference across one as a kink, not an error.

    ``register(act)`` makes it usable by name everywhere a built-in is.
    """

    __slots__ = ("name", "f", "df", "torch_fn", "max_slope", "df_from_output", "saturated", "kinks")

    def __init__(self, name: str, f, df, torch_fn=None, *, max_slope: float | None = None, df_from_output=None,
                 saturated=None, kinks=()):
        if not isinstance(name, str) or not name:
            raise ValueError(f"an activation's name must be a non-empty string, got {name!r}")
        for what, fn in (("f", f), ("df", df)):
            if not callable(fn):
                raise ValueError(f"activation {name!r}: {what} must be a function of z, got {fn!r}")
        for what, fn in (("torch_fn", torch_fn), ("df_from_output", df_from_output), ("saturated", saturated)):
            if fn is not None and not callable(fn):
                raise ValueError(f"activation {name!r}: {what} must be a function or None, got {fn!r}")
        self.name, self.f, self.df, self.torch_fn = name, f, df, torch_fn
        self.df_from_output, self.saturated = df_from_output, saturated
        self.kinks = tuple(float(k) for k in kinks)
        self.max_slope = float(max_slope) if max_slope is not None else measure_max_slope(df)

    def derivative(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        """f'(z) given also a = f(z): the same numbers as ``df(z)``, from ``a`` when that is cheaper."""
        return self.df(z) if self.df_from_output is None else self.df_from_output(a)

    def __repr__(self) -> str:
        return f"Activation({self.name!r}, max_slope={self.max_slope:.6g}, kinks={self.kinks})"


def measure_max_slope(df) -> float:
    """sup |df(z)| over z in [−50, 50]: a grid of step 1e-3, then a grid 1000× finer around its maximum."""
    with np.errstate(all="ignore"):
        z = np.linspace(-50.0, 50.0, 100_001)
        peak = None
        try:
            slope = np.abs(np.asarray(df(z), dtype=np.float64))
            if slope.shape == z.shape and np.any(np.isfinite(slope)):
                peak = z[np.nanargmax(slope)]
                fine = np.clip(np.linspace(peak - 1e-3, peak + 1e-3, 2001), -50.0, 50.0)
                fine_slope = np.abs(np.asarray(df(fine), dtype=np.float64))
        except Exception:  # the user's df: register() calls it again and reports the error
            return math.nan
        if peak is None or fine_slope.shape != fine.shape:
            return math.nan  # a df this broken is refused by register(), which says why
        return float(max(np.nanmax(slope), np.nanmax(fine_slope)))


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
# Kinks: relu, leaky_relu and elu are not differentiable at 0; softplus switches to z above 20.
BUILTINS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("sigmoid", sigmoid, d_sigmoid, max_slope=0.25, df_from_output=d_sigmoid_from_output,
                   saturated=sigmoid_saturated),
        Activation("tanh", tanh, d_tanh, max_slope=1.0, df_from_output=d_tanh_from_output, saturated=tanh_saturated),
        Activation("relu", relu, d_relu, max_slope=1.0, kinks=(0.0,)),
        Activation("leaky_relu", leaky_relu, d_leaky_relu, max_slope=1.0, kinks=(0.0,)),
        Activation("elu", elu, d_elu, max_slope=1.0, kinks=(0.0,)),
        Activation("swish", swish, d_swish, max_slope=1.0998),
        Activation("gelu", gelu, d_gelu, max_slope=1.1289),
        Activation("softplus", softplus, d_softplus, max_slope=1.0, kinks=(SOFTPLUS_THRESHOLD,)),
        Activation("identity", identity, d_identity, max_slope=1.0),
    ]
}
# The registry: every name ``MLP``, ``torch_ref``, the commands and the studies accept; ``register`` adds to it.
ACTIVATIONS: dict[str, Activation] = dict(BUILTINS)


def get_activation(name: str) -> Activation:
    """Look an activation up by name, with an error that lists the valid names."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid activations: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def register(act: Activation, override: bool = False) -> Activation:
    """Make ``act`` usable by its name everywhere a built-in is; returns it.

    ``f`` and ``df`` are first tried on a small grid of z in float32 and float64 (``validate``).
    Registering the same object twice is a no-op; another activation under a taken name is refused
    unless ``override`` (which never replaces a built-in: their numbers are the suite's reference).
    """
    if not isinstance(act, Activation):
        raise ValueError(f"register() takes a manual.activations.Activation, got {type(act).__name__}")
    return registry.register(ACTIVATIONS, BUILTINS, act, "activation", validate, override)


def unregister(name: str) -> None:
    """Remove a registered plug-in (built-ins stay)."""
    registry.unregister(ACTIVATIONS, BUILTINS, name, "activation")


def validate(act: Activation) -> None:
    """Refuse an ``f`` or ``df`` that breaks the contract on a small grid of z: raises ValueError saying how.

    The contract: element-wise, the shape and dtype of z in and out, finite values for moderate z. (The
    full check of the derivative, with the location of any error, is ``experiments.gradcheck.check_activation``.)
    """
    grid = np.concatenate([np.linspace(-6.0, 6.0, 13), [-30.0, -0.5, 0.5, 1e-3, 30.0]]).reshape(3, 2, 3)
    with np.errstate(all="ignore"):
        for dtype in (np.float64, np.float32):
            z = grid.astype(dtype)
            for what, fn in (("f", act.f), ("df", act.df)):
                try:
                    out = fn(z.copy())
                except Exception as err:  # the user's code: any exception is their error to see
                    raise ValueError(f"activation {act.name!r}: {what}(z) raised {type(err).__name__}: {err} "
                                     f"(z of shape {z.shape}, {np.dtype(dtype).name})") from err
                if not isinstance(out, np.ndarray) or out.shape != z.shape:
                    shape = getattr(out, "shape", type(out).__name__)
                    raise ValueError(f"activation {act.name!r}: {what}(z) returned shape {shape} for z of shape "
                                     f"{z.shape}; it must work element-wise and keep z's shape")
                if out.dtype != z.dtype:
                    raise ValueError(f"activation {act.name!r}: {what}(z) returned {out.dtype} for {z.dtype} z; "
                                     "keep z's dtype (e.g. .astype(z.dtype, copy=False))")
                bad = ~np.isfinite(out)
                if bad.any():
                    raise ValueError(f"activation {act.name!r}: {what}(z) is {out[bad][0]} at z = "
                                     f"{z[bad][0]:g} ({np.dtype(dtype).name}); it must be finite")
    if not (math.isfinite(act.max_slope) and act.max_slope > 0):
        raise ValueError(f"activation {act.name!r}: max_slope (sup |f'|) must be a positive number, got "
                         f"{act.max_slope}")
