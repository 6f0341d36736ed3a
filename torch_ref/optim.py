"""``torch.optim``'s own optimizers and schedules, looked up by the names ``manual.optim`` uses."""
from __future__ import annotations

import torch

from manual.optim import OPTIMIZERS
from manual.optim.lr_scheduler import SCHEDULERS


def make_optimizer(name: str, params, **hyperparameters) -> torch.optim.Optimizer:
    """``torch.optim.<name>(params, **hyperparameters)``; ``name`` as in ``manual.optim.OPTIMIZERS``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    return getattr(torch.optim, name)(params, **hyperparameters)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, **hyperparameters):
    """``torch.optim.lr_scheduler.<name>(optimizer, **hyperparameters)``."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown schedule {name!r}; valid schedules: {', '.join(SCHEDULERS)}")
    return getattr(torch.optim.lr_scheduler, name)(optimizer, **hyperparameters)
