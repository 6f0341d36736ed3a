"""``manual.optim``: every optimizer trains a tiny network, and first steps on random parameters follow the textbook
rules (the schedules, the exact first steps and the refusals are in ``test_facts_optim.py``)."""
import numpy as np
import pytest

import manual
from manual.optim import SGD, Adam, AdamW, get_optimizer

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
