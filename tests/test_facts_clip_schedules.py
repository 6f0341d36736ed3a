"""Gradient clipping, the learning-rate schedules and the optimizers' options: absolute facts, torch-free —
exact factors and return values, boundaries accepted and refused, the whole messages.
"""
import math

import numpy as np
import pytest

from manual.optim import RMSprop, SGD, clip_grad_norm_, clip_grad_value_
from manual.optim.lr_scheduler import CosineAnnealingLR, StepLR


def message(call, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as err:
        call(*args, **kwargs)
    return str(err.value)


def sgd(lr=0.1):
    return SGD({"w": np.zeros(2)}, lr=lr)


# ------------------------------------------------------------------ clip_grad_norm_
def test_clip_grad_norm_scales_by_max_norm_over_norm_plus_1e_6_and_returns_the_norm_before():
    """‖(3, 4), (12,)‖ = √(9 + 16 + 144) = 13; max_norm 1 → every entry times 1 / (13 + 10⁻⁶)."""
    grads = {"w": np.array([[3.0, 4.0]]), "b": np.array([12.0])}
    assert clip_grad_norm_(grads, 1.0) == 13.0
    c = 1.0 / (13.0 + 1e-6)
    np.testing.assert_array_equal(grads["w"], np.array([[3.0, 4.0]]) * c)
    np.testing.assert_array_equal(grads["b"], np.array([12.0]) * c)
    assert math.sqrt(sum(float(np.sum(g * g)) for g in grads.values())) == pytest.approx(1.0 - 1e-6 / 13, rel=1e-12)


def test_gradients_are_scaled_only_when_max_norm_is_below_the_norm_plus_1e_6():
    for max_norm in (13.0, 13.0 + 1e-6, 100.0):  # scale = max_norm / (13 + 10⁻⁶) ≥ 1 only from 13 + 10⁻⁶
        grads = {"w": np.array([5.0, 12.0])}
        assert clip_grad_norm_(grads, max_norm) == 13.0
        expected = [5.0, 12.0] if max_norm >= 13.0 + 1e-6 else np.array([5.0, 12.0]) * (13.0 / (13.0 + 1e-6))
        np.testing.assert_array_equal(grads["w"], expected)


def test_clip_grad_norm_of_zero_gradients_is_zero_and_changes_nothing():
    grads = {"w": np.zeros((2, 2)), "b": np.zeros(0)}
    assert clip_grad_norm_(grads, 0.5) == 0.0
    np.testing.assert_array_equal(grads["w"], np.zeros((2, 2)))


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_max_norm_must_be_positive(bad):
    assert message(clip_grad_norm_, {"w": np.ones(2)}, bad) == f"max_norm must be positive, got {bad}"


# ------------------------------------------------------------------ clip_grad_value_
def test_clip_grad_value_clamps_each_entry_and_returns_the_largest_before():
    grads = {"w": np.array([[-3.0, 0.25], [0.5, 2.0]]), "b": np.array([-0.75])}
    assert clip_grad_value_(grads, 0.5) == 3.0
    np.testing.assert_array_equal(grads["w"], [[-0.5, 0.25], [0.5, 0.5]])
    np.testing.assert_array_equal(grads["b"], [-0.5])


def test_clip_grad_value_with_no_gradients_returns_zero():
    largest = clip_grad_value_({}, 1.0)
    assert largest == 0.0 and type(largest) is float


def test_clip_grad_value_skips_empty_gradients():
    """A zero-size gradient has no entries: the largest entry is the others' (0.0 if all are empty)."""
    grads = {"w": np.zeros((0, 3)), "b": np.array([-2.0, 0.5])}
    assert clip_grad_value_(grads, 1.0) == 2.0
    np.testing.assert_array_equal(grads["b"], [-1.0, 0.5])
    assert grads["w"].shape == (0, 3)
    assert clip_grad_value_({"w": np.zeros(0), "v": np.zeros((2, 0))}, 1.0) == 0.0


@pytest.mark.parametrize("bad", [0.0, -0.5, math.nan])
def test_clip_value_must_be_positive(bad):
    assert message(clip_grad_value_, {"w": np.ones(2)}, bad) == f"clip_value must be positive, got {bad}"


# ------------------------------------------------------------------ schedules
@pytest.mark.parametrize("gamma", [0.0, -0.5, math.inf, -math.inf, math.nan])
def test_step_lr_gamma_must_be_finite_and_positive(gamma):
    assert message(StepLR, sgd(), step_size=1, gamma=gamma) == f"gamma must be a finite number > 0, got {gamma!r}"


def test_step_lr_accepts_the_smallest_gamma_and_step_size_and_follows_its_formula():
    opt = sgd(lr=0.5)
    sched = StepLR(opt, step_size=1, gamma=1e-300)
    sched.step()
    assert opt.lr == 0.5e-300 and sched.get_last_lr() == 0.5e-300
    opt = sgd(lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        sched.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]  # η₀ · γ^⌊t/2⌋ for t = 1 … 5


@pytest.mark.parametrize("step_size", [0, -1])
def test_step_lr_step_size_must_be_positive(step_size):
    assert message(StepLR, sgd(), step_size=step_size) == f"step_size must be a positive integer, got {step_size}"


def test_cosine_annealing_boundaries_and_values():
    assert message(CosineAnnealingLR, sgd(), T_max=0) == "T_max must be a positive integer, got 0"
    assert message(CosineAnnealingLR, sgd(), T_max=4, eta_min=-1e-9) == "eta_min must be a finite number ≥ 0, got -1e-09"
    opt = sgd(lr=1.0)
    sched = CosineAnnealingLR(opt, T_max=2, eta_min=0.0)  # eta_min = 0 is the boundary accepted
    sched.step()
    assert opt.lr == pytest.approx(0.5, abs=1e-15)
    sched.step()
    assert opt.lr == 0.0


# ------------------------------------------------------------------ RMSprop without momentum
def test_rmsprop_without_momentum_steps_by_g_over_root_v_and_keeps_no_momentum():
    """θ ← θ − η·g/(√v + ε), v ← αv + (1 − α)g²; with momentum 0 nothing is accumulated in momentum_buffer."""
    p = np.array([1.0, -2.0, 0.5])
    opt = RMSprop({"w": p}, lr=0.01, alpha=0.9, eps=1e-8)
    v, theta = np.zeros(3), p.copy()
    for g in (np.array([0.5, -1.0, 2.0]), np.array([-0.25, 3.0, 0.0])):
        opt.step({"w": g.copy()})
        v = 0.9 * v + 0.1 * g * g
        theta = theta - 0.01 * g / (np.sqrt(v) + 1e-8)
        np.testing.assert_allclose(p, theta, rtol=1e-15, atol=0)
        np.testing.assert_array_equal(opt.state["w"]["momentum_buffer"], np.zeros(3))
