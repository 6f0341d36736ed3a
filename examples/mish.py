"""Mish, mish(z) = z·tanh(softplus(z)) (Misra 2019), as a plug-in: copy this file and change the functions.

Use it with any command:

    python -m experiments gradcheck --plugin examples/mish.py --activations mish
    python -m experiments train --plugin examples/mish.py --activation mish --epochs 1

or from Python: ``manual.activations.register(mish)`` (``experiments.plugins.load_plugins(["examples/mish.py"])``
does that for every Activation in the file), then ``manual.MLP([...], activation="mish")``.

The contract (``manual.activations.Activation``): ``f`` and ``df`` take the pre-activation z, a NumPy array of
any shape, and return an array of the same shape and dtype; ``df`` is f'(z) derived by hand; ``torch_fn`` is ``f``
written with torch operations, so that autograd (not your derivation) gives torch_ref its gradient.
Everything must stay finite and silent (no overflow warning) for |z| up to 1e4 in float32 and float64.
"""
import numpy as np

from manual.activations import Activation, sigmoid


def softplus(z):
    """log(1 + e^z) without overflow: logaddexp(0, z) computes max(0, z) + log1p(e^(−|z|))."""
    return np.logaddexp(0, z)


def mish(z):
    """z·tanh(softplus(z)); tanh saturates to ±1 quietly, so no clipping is needed."""
    return z * np.tanh(softplus(z))


def d_mish(z):
    """Product and chain rules, with t = tanh(softplus(z)) and softplus'(z) = σ(z):

        mish'(z) = t + z·(1 − t²)·σ(z)

    For z → −∞ both terms go to 0 (t ≈ e^z); for z → +∞, t → 1 and the second term vanishes.
    """
    t = np.tanh(softplus(z))
    return t + z * (1 - t * t) * sigmoid(z)


def mish_torch(z):
    """The same function on tensors; autograd differentiates it (torch imported here only: manual needs no torch)."""
    import torch
    import torch.nn.functional as F

    return z * torch.tanh(F.softplus(z))


# Everything the suite needs; max_slope (sup |mish'| ≈ 1.0885, at z ≈ 1.49) is measured when not given.
mish_activation = Activation("mish", mish, d_mish, torch_fn=mish_torch)
