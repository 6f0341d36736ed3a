"""Optimizers written by hand with ``torch.optim``'s exact update rules and defaults.

Each optimizer holds the network's parameter dict (updated in place) and a
state dict per parameter, like ``torch.optim``; ``step(grads)`` takes the
gradients keyed like the parameters. The learning rate is the attribute ``lr``,
which the schedules in ``manual.optim.lr_scheduler`` set.

The rules (g is the gradient, λ the weight decay, t the step count):

- SGD:      g ← g + λθ;  b ← μb + (1−τ)g (b = g at t = 1);  g ← g + μb (Nesterov) or b;  θ ← θ − ηg
- Adagrad:  g ← g + λθ;  s ← s + g²;  θ ← θ − η/(1 + (t−1)·decay) · g/(√s + ε)
- RMSprop:  g ← g + λθ;  v ← αv + (1−α)g²;  θ ← θ − η·g/(√v + ε)  (with momentum: b ← μb + g/(√v+ε), θ ← θ − ηb)
- Adam:     g ← g + λθ;  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  θ ← θ − η/(1−β₁ᵗ) · m/(√v/√(1−β₂ᵗ) + ε)
- AdamW:    θ ← θ(1 − ηλ), then Adam with no λ in g (decoupled weight decay)
"""
from __future__ import annotations

import math

import numpy as np


class Optimizer:
    """Base class: keeps the parameters, the learning rate and a state dict per parameter."""

    def __init__(self, params: dict, lr: float):
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr (the learning rate) must be a finite number > 0, got {lr!r}")
        self.params = params
        self.lr = lr
        self.state = {name: {} for name in params}

    def step(self, grads: dict) -> None:
        if grads.keys() != self.params.keys():
            raise ValueError(f"grads have keys {sorted(grads)} but the optimizer holds {sorted(self.params)}")
        for name, p in self.params.items():
            self.update(p, grads[name], self.state[name])

    def update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:
        raise NotImplementedError


def _check_nonnegative(**values):
    """Each hyperparameter a finite number ≥ 0 (NaN and inf are caught here, not deep in a step)."""
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        _check_nonnegative(momentum=momentum, dampening=dampening, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"nesterov needs a momentum > 0 and dampening 0, got momentum {momentum!r} and "
                             f"dampening {dampening!r}")
        self.momentum, self.dampening, self.weight_decay, self.nesterov = momentum, dampening, weight_decay, nesterov

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.copy()  # b = g on the first step
            else:
                buf = state["momentum_buffer"]
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            buf = state["momentum_buffer"]
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, lr)
        _check_nonnegative(lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                           initial_accumulator_value=initial_accumulator_value)
        self.lr_decay, self.weight_decay, self.eps = lr_decay, weight_decay, eps
        for name, p in params.items():
            self.state[name] = {"step": 0, "sum": np.full_like(p, initial_accumulator_value)}

    def update(self, p, g, state):
        state["step"] += 1
        if self.weight_decay:
            g = g + self.weight_decay * p
        clr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
        state["sum"] += g * g
        p -= clr * (g / (np.sqrt(state["sum"]) + self.eps))


class RMSprop(Optimizer):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, lr)
        _check_nonnegative(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        self.alpha, self.eps, self.weight_decay, self.momentum, self.centered = alpha, eps, weight_decay, momentum, centered

    def update(self, p, g, state):
        if not state:
            state.update(square_avg=np.zeros_like(p), grad_avg=np.zeros_like(p), momentum_buffer=np.zeros_like(p))
        if self.weight_decay:
            g = g + self.weight_decay * p
        v = state["square_avg"]
        v *= self.alpha
        v += (1 - self.alpha) * g * g
        if self.centered:  # subtract the squared running mean: a variance estimate
            m = state["grad_avg"]
            m += (1 - self.alpha) * (g - m)
            avg = np.sqrt(v - m * m) + self.eps
        else:
            avg = np.sqrt(v) + self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += g / avg
            p -= self.lr * buf
        else:
            p -= self.lr * (g / avg)


class Adam(Optimizer):
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, lr)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):  # NaN fails these comparisons too
            raise ValueError(f"betas must both lie in [0, 1), got {tuple(betas)}")
        _check_nonnegative(eps=eps, weight_decay=weight_decay)
        self.betas, self.eps, self.weight_decay, self.amsgrad = tuple(betas), eps, weight_decay, amsgrad

    def update(self, p, g, state):
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p), max_exp_avg_sq=np.zeros_like(p))
        beta1, beta2 = self.betas
        state["step"] += 1
        t = state["step"]
        if self.decoupled_weight_decay:
            p *= 1 - self.lr * self.weight_decay
        elif self.weight_decay:
            g = g + self.weight_decay * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (g - m)  # m ← β₁m + (1−β₁)g, written as torch's lerp
        v *= beta2
        v += (1 - beta2) * g * g
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = self.lr / (1 - beta1**t)
        denom = np.sqrt(v) / (1 - beta2**t) ** 0.5 + self.eps
        p -= step_size * (m / denom)


class AdamW(Adam):
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adagrad, RMSprop, Adam, AdamW)}


def get_optimizer(name: str):
    """The optimizer class called ``name`` (as in ``torch.optim``), with an error listing the valid names."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]
from . import lr_scheduler  # noqa: E402  (manual.optim.lr_scheduler.StepLR, as in torch)
from .clip import clip_grad_norm_, clip_grad_value_  # noqa: E402  (torch.nn.utils' names)
