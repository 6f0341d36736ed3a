"""``torch.optim``'s own optimizers and schedules, looked up by the names ``manual.optim`` uses."""
from __future__ import annotations

import inspect

import torch

from manual.optim import OPTIMIZERS
from manual.optim.lr_scheduler import SCHEDULERS


def make_optimizer(name: str, params, **hyperparameters) -> torch.optim.Optimizer:
    """``torch.optim.<name>(params, **hyperparameters)``; ``name`` as in ``manual.optim.OPTIMIZERS``.

    The hyperparameters are first checked by ``manual.optim``'s optimizer of that name (same names, same
    rules), so a bad value gets the suite's message on both sides: ``lr=inf``, a NaN weight decay or Nesterov
    without momentum are refused here, not taken by torch or left to its own wording. torch-only options
    (``foreach``, ``fused``, ...) go to torch unchecked.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    manual_names = inspect.signature(OPTIMIZERS[name]).parameters
    OPTIMIZERS[name]({}, **{k: v for k, v in hyperparameters.items() if k in manual_names})
    return getattr(torch.optim, name)(params, **hyperparameters)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, **hyperparameters):
    """``torch.optim.lr_scheduler.<name>(optimizer, **hyperparameters)``."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULERS)}")
    return getattr(torch.optim.lr_scheduler, name)(optimizer, **hyperparameters)
