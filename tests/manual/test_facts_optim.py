"""Textbook first and second steps of every optimizer, computed by hand from the update equations.

No torch: each expected θ below is worked out from the rule in the comment above it (torch.optim's
documented algorithms), with numbers chosen so that most steps come out round. θ₀ = 1 and the gradients are
given (g₁, g₂, …), so each test is a few lines of arithmetic that a reader can redo on paper. At the end:
gradient clipping and the schedules' exact factors and boundaries.
"""
import math

import numpy as np
import pytest

from manual.optim import OPTIMIZERS, SGD, Adagrad, Adam, AdamW, RMSprop, clip_grad_norm_, clip_grad_value_, get_optimizer
from manual.optim.lr_scheduler import SCHEDULERS, CosineAnnealingLR, StepLR, get_scheduler

from tests.helpers import message

pytestmark = pytest.mark.facts  # absolute facts, stated by hand (tests/conftest.py)

EPS = 1e-8  # Adam's and RMSprop's default ε
ADAGRAD_EPS = 1e-10


def trajectory(optimizer, grads, theta0=1.0, **hyperparameters):
    """θ after each step of ``optimizer`` fed the gradients ``grads`` (scalars), starting from θ₀."""
    params = {"w": np.array([theta0])}
    opt = optimizer(params, **hyperparameters)
    thetas = []
    for g in grads:
        opt.step({"w": np.array([g], dtype=float)})
        thetas.append(float(params["w"][0]))
    return thetas


def check(thetas, expected, rel=1e-12):
    assert thetas == pytest.approx(expected, rel=rel, abs=0)


# --------------------------------------------------------------------------- SGD, η = 0.1, g = 0.5, −0.25
def test_sgd_plain():
    # θ ← θ − ηg: 1 − 0.05, 0.95 + 0.025
    check(trajectory(SGD, [0.5, -0.25], lr=0.1), [0.95, 0.975])


def test_sgd_default_lr_is_a_thousandth():
    check(trajectory(SGD, [0.5]), [1 - 0.0005])


def test_sgd_momentum():
    # b₁ = g₁ = 0.5 → θ₁ = 0.95;  b₂ = 0.9·0.5 − 0.25 = 0.2 → θ₂ = 0.93;  b₃ = 0.9·0.2 + 0.5 = 0.68 → θ₃ = 0.862
    check(trajectory(SGD, [0.5, -0.25, 0.5], lr=0.1, momentum=0.9), [0.95, 0.93, 0.862])


def test_sgd_nesterov_looks_ahead():
    # b₁ = 0.5, step g₁ + μb₁ = 0.95 → θ₁ = 0.905;  b₂ = 0.2, step −0.25 + 0.18 = −0.07 → θ₂ = 0.912
    check(trajectory(SGD, [0.5, -0.25], lr=0.1, momentum=0.9, nesterov=True), [0.905, 0.912])


def test_sgd_dampening_spares_the_first_step():
    # b₁ = g₁ (no dampening on the first step) → θ₁ = 0.95;  b₂ = 0.9·0.5 + (1 − 0.5)·(−0.25) = 0.325 → 0.9175
    check(trajectory(SGD, [0.5, -0.25], lr=0.1, momentum=0.9, dampening=0.5), [0.95, 0.9175])


def test_sgd_weight_decay():
    # g₁ = 0.5 + 0.1·1 = 0.6 → θ₁ = 0.94;  g₂ = −0.25 + 0.1·0.94 = −0.156 → θ₂ = 0.9556
    check(trajectory(SGD, [0.5, -0.25], lr=0.1, weight_decay=0.1), [0.94, 0.9556])


def test_sgd_weight_decay_momentum_nesterov_together():
    # g₁ = 0.6, b₁ = 0.6, step 0.6 + 0.54 = 1.14 → θ₁ = 0.886
    # g₂ = −0.25 + 0.0886 = −0.1614, b₂ = 0.54 − 0.1614 = 0.3786, step −0.1614 + 0.34074 = 0.17934 → θ₂ = 0.868066
    check(trajectory(SGD, [0.5, -0.25], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1), [0.886, 0.868066])


def test_every_parameter_keeps_its_own_state():
    """Two parameters fed opposite gradients move in mirror image (momentum buffers are not shared)."""
    params = {"a": np.array([1.0]), "b": np.array([1.0])}
    opt = SGD(params, lr=0.1, momentum=0.9)
    for g in (0.5, -0.25, 0.5):
        opt.step({"a": np.array([g]), "b": np.array([-g])})
    check([params["a"][0], params["b"][0]], [0.862, 1.138])


# --------------------------------------------------------------------------- Adagrad
def test_adagrad_with_lr_decay_and_initial_accumulator():
    # s₀ = 0.75. t=1: s = 0.75 + 0.25 = 1, η₁ = 0.1 → θ₁ = 1 − 0.1·0.5/1 = 0.95
    # t=2: s = 1 + 0.5625 = 1.5625 (√ = 1.25), η₂ = 0.1/(1 + 0.5) → θ₂ = 0.95 + (0.1/1.5)·0.75/1.25 = 0.99
    # (exactly: ε = 1e−10 is added to each root)
    check(trajectory(Adagrad, [0.5, -0.75], lr=0.1, lr_decay=0.5, initial_accumulator_value=0.75),
          [0.95, 0.99], rel=1e-10)
    theta1 = 1 - 0.05 / (1 + ADAGRAD_EPS)
    check(trajectory(Adagrad, [0.5, -0.75], lr=0.1, lr_decay=0.5, initial_accumulator_value=0.75),
          [theta1, theta1 + (0.1 / 1.5) * 0.75 / (1.25 + ADAGRAD_EPS)], rel=1e-15)


def test_adagrad_defaults():
    # lr 0.01, s₀ = 0, ε = 1e−10: θ₁ = 1 − 0.01·0.5/(0.5 + ε);  s₂ = 0.25 + 0.5625 = 0.8125
    theta1 = 1 - 0.01 * 0.5 / (0.5 + ADAGRAD_EPS)
    check(trajectory(Adagrad, [0.5, -0.75]), [theta1, theta1 + 0.01 * 0.75 / (math.sqrt(0.8125) + ADAGRAD_EPS)],
          rel=1e-15)


def test_adagrad_weight_decay_and_eps():
    # λ = 0.5: g₁ = 0.5 + 0.5 = 1, s = 1 → θ₁ = 0.9;  g₂ = −0.75 + 0.45 = −0.3, s = 1.09 → θ₂ = 0.9 + 0.03/√1.09
    theta1 = 1 - 0.1 / (1 + ADAGRAD_EPS)
    g2 = -0.75 + 0.5 * theta1
    check(trajectory(Adagrad, [0.5, -0.75], lr=0.1, weight_decay=0.5),
          [theta1, theta1 - 0.1 * g2 / (math.sqrt(1 + g2 * g2) + ADAGRAD_EPS)], rel=1e-15)
    # ε = 0.5 outside the root: θ₁ = 1 − 0.1·0.5/(0.5 + 0.5) = 0.95
    check(trajectory(Adagrad, [0.5], lr=0.1, eps=0.5), [0.95])


# --------------------------------------------------------------------------- RMSprop, η = 0.1, α = 0.75, g = 0.5, −1
V2 = 0.75 * 0.0625 + 0.25 * 1.0  # v₂ = αv₁ + (1 − α)g₂² = 0.296875, after v₁ = 0.25·0.25 = 0.0625


def test_rmsprop_eps_is_outside_the_square_root():
    # ε = 0.25: v₁ = 0.0625, √v₁ + ε = 0.5 → θ₁ = 1 − 0.1·0.5/0.5 = 0.9;  θ₂ = 0.9 + 0.1·1/(√v₂ + 0.25)
    check(trajectory(RMSprop, [0.5, -1.0], lr=0.1, alpha=0.75, eps=0.25), [0.9, 0.9 + 0.1 / (math.sqrt(V2) + 0.25)])


def test_rmsprop_defaults():
    # lr 0.01, α = 0.99, ε = 1e−8: v₁ = 0.01·0.25 = 0.0025 (√ = 0.05) → θ₁ = 1 − 0.01·0.5/(0.05 + ε)
    check(trajectory(RMSprop, [0.5]), [1 - 0.01 * 0.5 / (0.05 + EPS)], rel=1e-15)


def test_rmsprop_centred():
    # m₁ = 0.25·0.5 = 0.125, v₁ − m₁² = 0.046875;  m₂ = 0.125 + 0.25·(−1 − 0.125) = −0.15625, v₂ − m₂² = 0.2724609375
    theta1 = 1 - 0.1 * 0.5 / (math.sqrt(0.046875) + 0.25)
    check(trajectory(RMSprop, [0.5, -1.0], lr=0.1, alpha=0.75, eps=0.25, centered=True),
          [theta1, theta1 + 0.1 / (math.sqrt(0.2724609375) + 0.25)])


def test_rmsprop_momentum():
    # b₁ = 0.5/0.5 = 1 → θ₁ = 0.9;  b₂ = 0.5·1 + (−1)/(√v₂ + 0.25) → θ₂ = 0.9 − 0.1·b₂
    b2 = 0.5 - 1 / (math.sqrt(V2) + 0.25)
    check(trajectory(RMSprop, [0.5, -1.0], lr=0.1, alpha=0.75, eps=0.25, momentum=0.5), [0.9, 0.9 - 0.1 * b2])


def test_rmsprop_centred_with_momentum_and_weight_decay():
    # λ = 0.5: g₁ = 1, v₁ = 0.25, m₁ = 0.25, v₁ − m₁² = 0.1875, b₁ = 1/(√0.1875 + 0.25) → θ₁ = 1 − 0.1·b₁
    b1 = 1 / (math.sqrt(0.1875) + 0.25)
    theta1 = 1 - 0.1 * b1
    g2 = -1 + 0.5 * theta1
    v2, m2 = 0.75 * 0.25 + 0.25 * g2 * g2, 0.25 + 0.25 * (g2 - 0.25)
    b2 = 0.5 * b1 + g2 / (math.sqrt(v2 - m2 * m2) + 0.25)
    check(trajectory(RMSprop, [0.5, -1.0], lr=0.1, alpha=0.75, eps=0.25, momentum=0.5, centered=True,
                     weight_decay=0.5), [theta1, theta1 - 0.1 * b2])


# --------------------------------------------------------------------------- Adam, η = 0.1, β = (0.5, 0.75)
def test_adam():
    # m₁ = 0.25, v₁ = 0.0625 → m̂ = 0.5, v̂ = 0.25 → θ₁ = 1 − 0.1·0.5/(0.5 + ε)
    # m₂ = 0.125 − 0.5 = −0.375 → m̂ = −0.5;  v₂ = 0.296875 → v̂ = v₂/(1 − 0.5625)
    theta1 = 1 - 0.1 * 0.5 / (0.5 + EPS)
    theta2 = theta1 + 0.1 * 0.5 / (math.sqrt(V2 / 0.4375) + EPS)
    check(trajectory(Adam, [0.5, -1.0], lr=0.1, betas=(0.5, 0.75)), [theta1, theta2])


def test_adam_defaults():
    # lr 1e−3, β = (0.9, 0.999): m₂ = 0.9·0.05 − 0.1 = −0.055, v₂ = 0.999·0.00025 + 0.001 = 0.00124975
    theta1 = 1 - 1e-3 * 0.5 / (0.5 + EPS)
    m_hat, v_hat = -0.055 / (1 - 0.9**2), 0.00124975 / (1 - 0.999**2)
    check(trajectory(Adam, [0.5, -1.0]), [theta1, theta1 - 1e-3 * m_hat / (math.sqrt(v_hat) + EPS)])


def test_adamw_defaults():
    # lr 1e−3, β = (0.9, 0.999), λ = 0.01: θ ← θ(1 − 1e−5) before each Adam step of test_adam_defaults
    theta1 = (1 - 1e-5) - 1e-3 * 0.5 / (0.5 + EPS)
    m_hat, v_hat = -0.055 / (1 - 0.9**2), 0.00124975 / (1 - 0.999**2)
    check(trajectory(AdamW, [0.5, -1.0]), [theta1, theta1 * (1 - 1e-5) - 1e-3 * m_hat / (math.sqrt(v_hat) + EPS)])


def test_adam_amsgrad_keeps_the_largest_second_moment():
    # g = 1, 0: v₁ = 0.25, v₂ = 0.1875 < v₁, so AMSGrad keeps 0.25;  m₂ = 0.25 → m̂ = 0.25/0.75
    theta1 = 1 - 0.1 * 1 / (1 + EPS)
    amsgrad = theta1 - 0.1 * (0.25 / 0.75) / (math.sqrt(0.25 / 0.4375) + EPS)
    plain = theta1 - 0.1 * (0.25 / 0.75) / (math.sqrt(0.1875 / 0.4375) + EPS)
    check(trajectory(Adam, [1.0, 0.0], lr=0.1, betas=(0.5, 0.75), amsgrad=True), [theta1, amsgrad])
    check(trajectory(Adam, [1.0, 0.0], lr=0.1, betas=(0.5, 0.75)), [theta1, plain])


def test_adam_weight_decay_is_l2_in_the_gradient():
    # λ = 0.5: g₁ = 0.5 + 0.5·1 = 1 → m̂/√v̂ = 1 → θ₁ = 1 − 0.1/(1 + ε)
    check(trajectory(Adam, [0.5], lr=0.1, betas=(0.5, 0.75), weight_decay=0.5), [1 - 0.1 / (1 + EPS)])


def test_adamw_decays_before_the_adam_step():
    # θ ← θ(1 − ηλ) = 0.95, then the Adam step 0.1·0.5/(0.5 + ε) → θ₁ ≈ 0.85
    # θ ← θ₁·0.95, then + 0.1·0.5/(√v̂₂ + ε) as in test_adam
    theta1 = 0.95 - 0.1 * 0.5 / (0.5 + EPS)
    theta2 = theta1 * 0.95 + 0.1 * 0.5 / (math.sqrt(V2 / 0.4375) + EPS)
    check(trajectory(AdamW, [0.5, -1.0], lr=0.1, betas=(0.5, 0.75), weight_decay=0.5), [theta1, theta2])


def test_adamw_default_weight_decay_is_a_hundredth_and_adams_is_zero():
    # AdamW: θ₁ = 1·(1 − 0.1·0.01) − 0.1·0.5/(0.5 + ε);  Adam with a zero gradient never moves
    check(trajectory(AdamW, [0.5], lr=0.1, betas=(0.5, 0.75)), [0.999 - 0.1 * 0.5 / (0.5 + EPS)])
    check(trajectory(Adam, [0.0, 0.0], lr=0.1), [1.0, 1.0])
    check(trajectory(AdamW, [0.0, 0.0], lr=0.1, weight_decay=0.0), [1.0, 1.0])


def test_adamw_amsgrad_is_off_by_default():
    # as test_adam_amsgrad_keeps_the_largest_second_moment without amsgrad: v₂ = 0.1875 is used
    theta1 = 0.95 - 0.1 * 1 / (1 + EPS)
    theta2 = theta1 * 0.95 - 0.1 * (0.25 / 0.75) / (math.sqrt(0.1875 / 0.4375) + EPS)
    check(trajectory(AdamW, [1.0, 0.0], lr=0.1, betas=(0.5, 0.75), weight_decay=0.5), [theta1, theta2])


def test_adamw_amsgrad():
    theta1 = 0.95 - 0.1 * 1 / (1 + EPS)
    theta2 = theta1 * 0.95 - 0.1 * (0.25 / 0.75) / (math.sqrt(0.25 / 0.4375) + EPS)
    check(trajectory(AdamW, [1.0, 0.0], lr=0.1, betas=(0.5, 0.75), weight_decay=0.5, amsgrad=True), [theta1, theta2])


def test_updates_are_element_wise():
    """A two-element parameter: each entry follows its own scalar trajectory (Adam, RMSprop, Adagrad)."""
    for cls, kw in ((Adam, dict(lr=0.1, betas=(0.5, 0.75))), (RMSprop, dict(lr=0.1, alpha=0.75, eps=0.25)),
                    (Adagrad, dict(lr=0.1))):
        params = {"w": np.array([1.0, 1.0])}
        opt = cls(params, **kw)
        for g in ([0.5, 2.0], [-1.0, 0.25]):
            opt.step({"w": np.array(g)})
        first = trajectory(cls, [0.5, -1.0], **kw)[-1]
        second = trajectory(cls, [2.0, 0.25], **kw)[-1]
        check(list(params["w"]), [first, second], rel=1e-15)


# --------------------------------------------------------------------------- validation and lookup
def refused(make) -> str:
    """The whole message of the ValueError that ``make(params)`` raises for one parameter ``w``."""
    return message(make, {"w": np.zeros(1)})


@pytest.mark.parametrize("make, message", [
    (lambda p: SGD(p, lr=-0.1), "lr (the learning rate) must be a finite number > 0, got -0.1"),
    (lambda p: SGD(p, lr=0.0), "lr (the learning rate) must be a finite number > 0, got 0.0"),
    (lambda p: SGD(p, lr=math.inf), "lr (the learning rate) must be a finite number > 0, got inf"),
    (lambda p: Adam(p, lr=math.nan), "lr (the learning rate) must be a finite number > 0, got nan"),
    (lambda p: SGD(p, lr=0.1, weight_decay=math.nan), "weight_decay must be a finite number ≥ 0, got nan"),
    (lambda p: SGD(p, lr=0.1, momentum=math.nan), "momentum must be a finite number ≥ 0, got nan"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=-0.1), "dampening must be a finite number ≥ 0, got -0.1"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1), "weight_decay must be a finite number ≥ 0, got -1"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "momentum must be a finite number ≥ 0, got -0.5"),
    (lambda p: SGD(p, lr=0.1, nesterov=True),
     "nesterov needs a momentum > 0 and dampening 0, got momentum 0.0 and dampening 0.0"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     "nesterov needs a momentum > 0 and dampening 0, got momentum 0.9 and dampening 0.1"),
    (lambda p: Adagrad(p, lr_decay=-1), "lr_decay must be a finite number ≥ 0, got -1"),
    (lambda p: Adagrad(p, weight_decay=-1), "weight_decay must be a finite number ≥ 0, got -1"),
    (lambda p: Adagrad(p, initial_accumulator_value=-1), "initial_accumulator_value must be a finite number ≥ 0, got -1"),
    (lambda p: Adagrad(p, eps=-1), "eps must be a finite number ≥ 0, got -1"),
    (lambda p: RMSprop(p, alpha=-0.5), "alpha must be a finite number ≥ 0, got -0.5"),
    (lambda p: RMSprop(p, eps=-0.5), "eps must be a finite number ≥ 0, got -0.5"),
    (lambda p: RMSprop(p, eps=math.nan), "eps must be a finite number ≥ 0, got nan"),
    (lambda p: RMSprop(p, weight_decay=-0.5), "weight_decay must be a finite number ≥ 0, got -0.5"),
    (lambda p: RMSprop(p, momentum=-0.5), "momentum must be a finite number ≥ 0, got -0.5"),
    (lambda p: Adam(p, betas=(-0.1, 0.9)), "betas must both lie in [0, 1), got (-0.1, 0.9)"),
    (lambda p: Adam(p, betas=(1.0, 0.9)), "betas must both lie in [0, 1), got (1.0, 0.9)"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), "betas must both lie in [0, 1), got (0.9, 1.0)"),
    (lambda p: Adam(p, betas=(0.9, -1e-3)), "betas must both lie in [0, 1), got (0.9, -0.001)"),
    (lambda p: Adam(p, betas=(math.nan, 0.999)), "betas must both lie in [0, 1), got (nan, 0.999)"),
    (lambda p: Adam(p, eps=-1e-8), "eps must be a finite number ≥ 0, got -1e-08"),
    (lambda p: Adam(p, weight_decay=-1), "weight_decay must be a finite number ≥ 0, got -1"),
    (lambda p: AdamW(p, weight_decay=-0.01), "weight_decay must be a finite number ≥ 0, got -0.01"),
    (lambda p: AdamW(p, weight_decay=math.inf), "weight_decay must be a finite number ≥ 0, got inf"),
])
def test_bad_hyperparameters_are_refused_with_their_name(make, message):
    assert refused(make) == message


def test_gradients_for_other_parameters_are_refused():
    message = refused(lambda p: SGD(p, lr=0.1).step({"v": np.zeros(1), "a": np.zeros(1)}))
    assert message == "grads have keys ['a', 'v'] but the optimizer holds ['w']"


def test_boundary_hyperparameters_are_accepted():
    """Zero is a valid momentum, decay, ε or β₁; β = 0 is the edge of [0, 1)."""
    p = {"w": np.zeros(1)}
    SGD(p, lr=1e-9, momentum=0.0, weight_decay=0.0, dampening=0.0)
    SGD(p, lr=0.1, momentum=1e-9, nesterov=True)
    Adagrad(p, lr_decay=0.0, initial_accumulator_value=0.0, eps=0.0)
    RMSprop(p, alpha=0.0, eps=0.0, momentum=0.0)
    Adam(p, betas=(0.0, 0.0), eps=0.0)


def test_optimizer_names_are_torch_optims():
    assert list(OPTIMIZERS) == ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]
    assert get_optimizer("AdamW") is AdamW
    assert refused(lambda p: get_optimizer("adam")) == \
        "unknown optimizer 'adam'; valid optimizers: SGD, Adagrad, RMSprop, Adam, AdamW"


# --------------------------------------------------------------------------- schedules
def lrs(schedule, steps, lr=1.0, **kwargs):
    """The learning rate in force at epochs 0 … ``steps`` (the schedule stepped once per epoch), checking that the
    schedule's ``get_last_lr()`` is the rate it set on the optimizer."""
    opt = SGD({"w": np.zeros(1)}, lr=lr)
    s = schedule(opt, **kwargs)
    out = [opt.lr]
    for _ in range(steps):
        s.step()
        assert s.get_last_lr() == opt.lr
        out.append(opt.lr)
    return out


def test_step_lr_default_gamma_is_a_tenth():
    # η_t = η₀·γ^⌊t/2⌋ with γ = 0.1
    assert lrs(StepLR, 5, step_size=2) == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01], rel=1e-15)


def test_step_lr_follows_its_formula_down_to_the_smallest_gamma_and_step_size():
    # η_t = η₀·γ^⌊t/s⌋: halved every 2 epochs (exact in binary), η₀ = 1.1 halved every 3, and γ = 1e-300 with s = 1
    assert lrs(StepLR, 5, step_size=2, gamma=0.5) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert lrs(StepLR, 7, lr=1.1, step_size=3, gamma=0.5) == pytest.approx(
        [1.1, 1.1, 1.1, 0.55, 0.55, 0.55, 0.275, 0.275], rel=1e-15)
    assert lrs(StepLR, 1, lr=0.5, step_size=1, gamma=1e-300) == [0.5, 0.5e-300]


@pytest.mark.parametrize("lr, T_max, eta_min, expected", [
    # η_t = η_min + (η₀ − η_min)·(1 + cos(πt/T_max))/2
    (2.0, 4, None, [2, 1 + math.sqrt(0.5), 1, 1 - math.sqrt(0.5), 0]),  # η_min defaults to 0
    (1.1, 4, 0.1, [1.1, 0.1 + (1 + math.sqrt(0.5)) / 2, 0.6, 0.1 + (1 - math.sqrt(0.5)) / 2, 0.1]),
    (1.0, 2, 0.0, [1.0, 0.5, 0.0]),  # η_min = 0, the boundary accepted
])
def test_cosine_annealing_follows_its_formula(lr, T_max, eta_min, expected):
    kwargs = {} if eta_min is None else {"eta_min": eta_min}
    got = lrs(CosineAnnealingLR, T_max, lr=lr, T_max=T_max, **kwargs)
    assert got == pytest.approx(expected, rel=1e-15, abs=1e-15)
    assert got[-1] == expected[-1]  # exactly η_min at t = T_max


def test_schedules_are_looked_up_by_torch_name():
    assert get_scheduler("StepLR") is StepLR and list(SCHEDULERS) == ["StepLR", "CosineAnnealingLR"]
    assert refused(lambda p: get_scheduler("cosine")) == \
        "unknown schedule 'cosine'; valid schedules: StepLR, CosineAnnealingLR"
    p = {"w": np.zeros(1)}
    StepLR(SGD(p, lr=0.1), step_size=1)  # the smallest valid period
    CosineAnnealingLR(SGD(p, lr=0.1), T_max=1)


def sgd(lr=0.1):
    return SGD({"w": np.zeros(2)}, lr=lr)


@pytest.mark.parametrize("gamma", [0.0, -0.5, math.inf, -math.inf, math.nan])
def test_step_lr_gamma_must_be_finite_and_positive(gamma):
    assert message(StepLR, sgd(), step_size=1, gamma=gamma) == f"gamma must be a finite number > 0, got {gamma!r}"


@pytest.mark.parametrize("step_size", [0, -1])
def test_step_lr_step_size_must_be_positive(step_size):
    assert message(StepLR, sgd(), step_size=step_size) == f"step_size must be a positive integer, got {step_size}"


def test_cosine_annealing_refuses_a_period_below_1_and_a_negative_eta_min():
    assert message(CosineAnnealingLR, sgd(), T_max=0) == "T_max must be a positive integer, got 0"
    assert message(CosineAnnealingLR, sgd(), T_max=4, eta_min=-1e-9) == "eta_min must be a finite number ≥ 0, got -1e-09"


# ====================================================================================================
# Gradient clipping and the optimizers' options: absolute facts, torch-free —
# exact factors and return values, boundaries accepted and refused, the whole messages.


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
