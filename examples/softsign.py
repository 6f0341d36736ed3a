"""Softsign, z / (1 + |z|): a rational activation, with a kink in its *second* derivative, as a plug-in.

    python -m experiments gradcheck --plugin examples/softsign.py --activations softsign

Like tanh it maps onto (−1, 1), but its tails approach ±1 polynomially (as 1/|z|), not exponentially, so
it saturates far more slowly. This file also shows the optional fields of ``Activation``:

- ``df_from_output``: the derivative from the output a = f(z), which backpropagation already holds
  (here f'(z) = 1/(1 + |z|)² = (1 − |a|)², since 1 − |a| = 1/(1 + |z|));
- ``saturated``: which outputs count as saturated in the training diagnostics (``saturated_frac``);
- ``max_slope``: sup |f'| = 1 at z = 0, given here instead of measured.
"""
import numpy as np

from manual.activations import Activation


def softsign(z):
    return z / (1 + np.abs(z))


def d_softsign(z):
    """Quotient rule on each side of 0: d/dz z/(1 + |z|) = 1/(1 + |z|)² (continuous at 0, where it is 1)."""
    return 1 / (1 + np.abs(z)) ** 2


def d_softsign_from_output(a):
    return (1 - np.abs(a)) ** 2


def softsign_saturated(a):
    """|a| > 0.97 as for tanh: f' = (1 − |a|)² < 1e-3 there."""
    return np.abs(a) > 0.97


def softsign_torch(z):
    import torch

    return z / (1 + torch.abs(z))


softsign_activation = Activation("softsign", softsign, d_softsign, torch_fn=softsign_torch, max_slope=1.0,
                                 df_from_output=d_softsign_from_output, saturated=softsign_saturated)
