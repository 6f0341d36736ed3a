"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``, on a dict of gradients.

Both change the gradients in place (the trailing underscore, as in torch) between ``loss_and_grads``
and ``opt.step(grads)``:

- by norm: the gradients of all parameters as one vector g; if its L2 norm ‖g‖ exceeds ``max_norm``,
  every gradient is scaled by c = max_norm / (‖g‖ + 10⁻⁶) (torch's 10⁻⁶ keeps c finite at ‖g‖ = 0),
  so the direction is kept and the length becomes ≈ max_norm. The cure for exploding gradients
  (Pascanu, Mikolov & Bengio 2013).
- by value: each entry clamped to [−clip_value, clip_value] (the direction changes).
"""
from __future__ import annotations

import math

import numpy as np

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s


def clip_grad_norm_(grads: dict, max_norm: float) -> float:
    """Scale ``grads`` in place so that their global L2 norm is at most ``max_norm``; return the norm before.

    ‖g‖ = √(Σ_tensors ‖g_t‖²), the norm of the per-tensor norms as torch computes it; the scale
    c = max_norm / (‖g‖ + 10⁻⁶) is applied only where c < 1 (torch multiplies by min(c, 1)).
    A NaN or infinite norm makes every gradient NaN or 0, as in torch (whose ``error_if_nonfinite``
    is False by default); the training loop stops such a run as diverged.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    total = math.sqrt(sum(float(np.linalg.norm(g)) ** 2 for g in grads.values()))
    scale = max_norm / (total + CLIP_EPS)
    if not scale >= 1:  # also when the norm is NaN (then the scale is NaN, as in torch)
        for g in grads.values():
            g *= scale
    return total


def clip_grad_value_(grads: dict, clip_value: float) -> float:
    """Clamp every gradient entry to [−clip_value, clip_value] in place; return the largest |entry| before.

    (torch's ``clip_grad_value_`` returns None; the largest entry tells whether clipping changed anything.)
    """
    if not clip_value > 0:
        raise ValueError(f"clip_value must be positive, got {clip_value}")
    largest = max((float(np.max(np.abs(g), initial=0.0)) for g in grads.values()), default=0.0)
    for g in grads.values():
        np.clip(g, -clip_value, clip_value, out=g)
    return largest
