"""The activations of ``manual.activations``: hand-written derivatives, stability, worked values."""
import warnings

import numpy as np
import pytest

import manual
from experiments.gradcheck import centred_difference, rel_err
from manual.activations import ACTIVATIONS, get_activation
from manual.losses import softmax

NAMES = list(ACTIVATIONS)
# |f'| below this is compared in absolute terms (|error| ≤ 1e-7 · 1e-3): where f saturates
# towards ±1 (tanh, sigmoid, elu) the finite difference of f carries ~3e-12 of rounding noise,
# so a relative comparison of a derivative of 1e-12 would only measure that noise.
DERIVATIVE_FLOOR = 1e-3
KINK_SKIP = 1e-3  # points this close to a kink are left out: f is not differentiable there


def wide_grid() -> np.ndarray:
    """z from −30 to 30: an even grid plus random points, many of them near 0."""
    rng = np.random.default_rng(0)
    return np.concatenate([np.linspace(-30, 30, 601), rng.uniform(-30, 30, 300), rng.standard_normal(300)])


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_difference(name):
    act = ACTIVATIONS[name]
    z = wide_grid()
    for kink in act.kinks:
        z = z[np.abs(z - kink) > KINK_SKIP]
    err = rel_err(act.df(z), centred_difference(act.f, z), floor=DERIVATIVE_FLOOR)
    assert err.max() <= 1e-7, f"{name}: worst at z = {z[err.argmax()]}"


@pytest.mark.parametrize("name", NAMES)
def test_max_slope_is_the_supremum_of_the_derivative(name):
    act = ACTIVATIONS[name]
    slope = np.abs(act.df(np.linspace(-10, 10, 200_001)))
    assert slope.max() == pytest.approx(act.max_slope, rel=1e-4)


# Limits for |z| ≥ 1e3: f(z) and f'(z) as z → ±∞.
LIMITS = {
    "sigmoid": (lambda z: (z > 0) * 1.0, lambda z: 0 * z),
    "tanh": (np.sign, lambda z: 0 * z),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z: np.where(z > 0, 1.0, 0.01)),
    "elu": (lambda z: np.where(z > 0, z, -1.0), lambda z: (z > 0) * 1.0),
    "swish": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
    "gelu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
    "softplus": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
    "identity": (lambda z: z, lambda z: 1.0 + 0 * z),
}
# f(0) and f'(0)
AT_ZERO = {
    "sigmoid": (0.5, 0.25), "tanh": (0.0, 1.0), "relu": (0.0, 0.0), "leaky_relu": (0.0, 0.01), "elu": (0.0, 1.0),
    "swish": (0.0, 0.5), "gelu": (0.0, 0.5), "softplus": (np.log(2.0), 0.5), "identity": (0.0, 1.0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_stable_for_huge_inputs(name, dtype):
    """No overflow, division by zero or invalid operation (NaN), the right limits, and the input's dtype.

    Underflow (e^(−1e4) → 0) is the correctly rounded answer and, as in NumPy's
    defaults, is not an error; every warning NumPy would emit is.
    """
    act = ACTIVATIONS[name]
    z = np.array([-1e4, -1e3, 0.0, 1e3, 1e4], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        warnings.simplefilter("error")
        a, da = act.f(z), act.df(z)
    for out in (a, da):
        assert out.dtype == dtype and out.shape == z.shape
        assert np.all(np.isfinite(out))
    big = np.abs(z) >= 1e3
    f_lim, df_lim = LIMITS[name]
    np.testing.assert_allclose(a[big], f_lim(z[big].astype(np.float64)), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(da[big], df_lim(z[big].astype(np.float64)), rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose([a[2], da[2]], AT_ZERO[name], rtol=1e-6)


def test_sigmoid_of_zero_is_one_half():
    assert manual.activations.sigmoid(np.array([0.0]))[0] == 0.5


def test_single_neuron_worked_example():
    """Inputs 0.8, 0.3, 0.9, weights 2.0, −1.5, 0.5, bias −0.7: z = 0.9, σ(z) ≈ 0.7109."""
    neuron = manual.MLP([3, 1], activation="sigmoid", loss="mse")
    neuron.load_state_dict({"layers.0.weight": [[2.0, -1.5, 0.5]], "layers.0.bias": [-0.7]})
    x = np.array([[0.8, 0.3, 0.9]])
    assert neuron.trace(x).pre_activations[0][0, 0] == pytest.approx(0.9, abs=1e-15)
    assert neuron.forward(x)[0, 0] == pytest.approx(0.7109, abs=5e-5)
    assert neuron.forward(x)[0, 0] == pytest.approx(1 / (1 + np.exp(-0.9)), rel=1e-15)


def test_softmax_worked_example():
    p = softmax(np.array([[2.9, 1.3, 0.2]]))[0]
    np.testing.assert_allclose(p, [0.79, 0.16, 0.05], atol=5e-3)
    assert p.sum() == pytest.approx(1.0, abs=1e-15)


def test_softmax_of_huge_scores_is_finite():
    p = softmax(np.array([[1e4, -1e4, 0.0]]))
    np.testing.assert_array_equal(p, [[1.0, 0.0, 0.0]])


def test_unknown_activation_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown activation 'sigmod'.*valid activations: sigmoid, tanh, relu"):
        get_activation("sigmod")
