"""``manual.optim``: every optimizer trains, first steps follow the textbook rules, schedules give the right lr."""
import math

import numpy as np
import pytest

import manual
from manual.optim import SGD, Adagrad, Adam, AdamW, RMSprop, get_optimizer
from manual.optim.lr_scheduler import CosineAnnealingLR, StepLR

# test id → (optimizer, hyperparameters), with learning rates that suit a tiny tanh network
CONFIGS = {
    "SGD": ("SGD", dict(lr=0.5)),
    "SGD momentum": ("SGD", dict(lr=0.1, momentum=0.9)),
    "SGD nesterov": ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    "SGD weight_decay": ("SGD", dict(lr=0.5, weight_decay=1e-3)),
    "Adagrad": ("Adagrad", dict(lr=0.1)),
    "RMSprop": ("RMSprop", dict(lr=0.01)),
    "RMSprop momentum": ("RMSprop", dict(lr=0.01, momentum=0.9)),
    "RMSprop centered": ("RMSprop", dict(lr=0.01, centered=True)),
    "Adam": ("Adam", dict(lr=0.05)),
    "Adam amsgrad weight_decay": ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=1e-3)),
    "AdamW": ("AdamW", dict(lr=0.05)),
}


def tiny_problem():
    """A [4, 6, 3] tanh network and a fixed batch of 16 labelled points."""
    rng = np.random.default_rng(0)
    net = manual.MLP([4, 6, 3], "tanh", "cross_entropy", seed=0)
    return net, rng.standard_normal((16, 4)), rng.integers(0, 3, 16)


@pytest.mark.parametrize("name, hyperparameters", CONFIGS.values(), ids=CONFIGS.keys())
def test_optimizer_reduces_the_loss(name, hyperparameters):
    net, X, y = tiny_problem()
    opt = get_optimizer(name)(net.params, **hyperparameters)
    initial = net.loss(X, y)
    for _ in range(50):
        opt.step(net.loss_and_grads(X, y)[1])
    assert net.loss(X, y) < 0.25 * initial


def random_params_and_grads():
    rng = np.random.default_rng(1)
    return {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}, {"w": rng.standard_normal((3, 2)),
                                                                            "b": rng.standard_normal(3)}


def test_sgd_step_is_minus_lr_times_gradient():
    params, grads = random_params_and_grads()
    before = {k: v.copy() for k, v in params.items()}
    SGD(params, lr=0.3).step(grads)
    for k in params:
        np.testing.assert_allclose(params[k], before[k] - 0.3 * grads[k], rtol=1e-15)


def test_momentum_accumulates_the_gradient():
    """Two steps with the same gradient g: θ₂ = θ₀ − η·g − η·(μ·g + g)."""
    params, grads = random_params_and_grads()
    before = {k: v.copy() for k, v in params.items()}
    opt = SGD(params, lr=0.1, momentum=0.9)
    opt.step(grads)
    opt.step(grads)
    for k in params:
        np.testing.assert_allclose(params[k], before[k] - 0.1 * grads[k] * (1 + 1.9), rtol=1e-14)


def test_adam_first_step_moves_every_parameter_by_about_lr():
    """After one step m̂ = g and v̂ = g², so Δθ = −η·g / (|g| + ε)."""
    params, grads = random_params_and_grads()
    before = {k: v.copy() for k, v in params.items()}
    Adam(params, lr=0.01).step(grads)
    for k in params:
        step = params[k] - before[k]
        np.testing.assert_allclose(step, -0.01 * grads[k] / (np.abs(grads[k]) + 1e-8), rtol=1e-12)


def test_adamw_decays_weights_decoupled_from_the_gradient():
    """With a zero gradient AdamW only shrinks θ by (1 − ηλ); Adam's L2 term moves θ by ≈ η·sign(θ)."""
    zero = {"w": np.zeros(4)}
    theta = np.array([1.0, -2.0, 3.0, -4.0])
    adamw = {"w": theta.copy()}
    AdamW(adamw, lr=0.1, weight_decay=0.5).step(zero)
    np.testing.assert_allclose(adamw["w"], theta * (1 - 0.1 * 0.5), rtol=1e-15)
    adam = {"w": theta.copy()}
    Adam(adam, lr=0.1, weight_decay=0.5).step(zero)
    np.testing.assert_allclose(adam["w"], theta - 0.1 * np.sign(theta), rtol=1e-7)


def lr_sequence(schedule_class, steps, **kwargs):
    """The learning rate in force at epochs 0 … steps (the schedule stepped once per epoch)."""
    opt = SGD({"w": np.zeros(1)}, lr=1.1)
    schedule = schedule_class(opt, **kwargs)
    lrs = [opt.lr]
    for _ in range(steps):
        schedule.step()
        assert schedule.get_last_lr() == opt.lr
        lrs.append(opt.lr)
    return lrs


def test_step_lr_sequence():
    """η₀ = 1.1 halved every 3 epochs."""
    assert lr_sequence(StepLR, 7, step_size=3, gamma=0.5) == pytest.approx(
        [1.1, 1.1, 1.1, 0.55, 0.55, 0.55, 0.275, 0.275], rel=1e-15)


def test_cosine_annealing_lr_sequence():
    """η₀ = 1.1 down to η_min = 0.1 over T_max = 4 epochs: 0.1 + 1.0·(1 + cos(πt/4))/2."""
    half_sqrt2 = math.sqrt(2) / 2
    assert lr_sequence(CosineAnnealingLR, 4, T_max=4, eta_min=0.1) == pytest.approx(
        [1.1, 0.1 + (1 + half_sqrt2) / 2, 0.6, 0.1 + (1 - half_sqrt2) / 2, 0.1], rel=1e-15)


@pytest.mark.parametrize("make, message", [
    (lambda p: SGD(p, lr=0.0), r"lr \(the learning rate\) must be a finite number > 0, got 0.0"),
    (lambda p: SGD(p, lr=math.inf), "lr .* must be a finite number > 0, got inf"),
    (lambda p: Adam(p, lr=math.nan), "lr .* must be a finite number > 0, got nan"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov needs a momentum > 0 and dampening 0, got momentum 0.0"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening 0, got .* dampening 0.1"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "momentum must be a finite number ≥ 0, got -0.5"),
    (lambda p: SGD(p, lr=0.1, momentum=math.nan), "momentum must be a finite number ≥ 0, got nan"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=-0.1), "dampening must be a finite number ≥ 0, got -0.1"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1e-4), "weight_decay must be a finite number ≥ 0, got -0.0001"),
    (lambda p: SGD(p, lr=0.1, weight_decay=math.nan), "weight_decay must be a finite number ≥ 0, got nan"),
    (lambda p: AdamW(p, weight_decay=math.inf), "weight_decay must be a finite number ≥ 0, got inf"),
    (lambda p: RMSprop(p, momentum=-0.9), "momentum must be a finite number ≥ 0"),
    (lambda p: RMSprop(p, eps=math.nan), "eps must be a finite number ≥ 0"),
    (lambda p: Adagrad(p, lr_decay=-1.0), "lr_decay must be a finite number ≥ 0"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), r"betas must both lie in \[0, 1\), got \(0.9, 1.0\)"),
    (lambda p: Adam(p, betas=(math.nan, 0.999)), r"betas must both lie in \[0, 1\)"),
    (lambda p: StepLR(SGD(p, lr=0.1), step_size=0), "step_size must be a positive integer"),
    (lambda p: StepLR(SGD(p, lr=0.1), step_size=1, gamma=math.nan), "gamma must be a finite number > 0, got nan"),
    (lambda p: CosineAnnealingLR(SGD(p, lr=0.1), T_max=0), "T_max must be a positive integer"),
    (lambda p: CosineAnnealingLR(SGD(p, lr=0.1), T_max=3, eta_min=-1.0), "eta_min must be a finite number ≥ 0"),
])
def test_bad_hyperparameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make({"w": np.zeros(2)})


def test_step_refuses_gradients_for_other_parameters():
    with pytest.raises(ValueError, match="grads have keys"):
        SGD({"w": np.zeros(2)}, lr=0.1).step({"v": np.zeros(2)})
