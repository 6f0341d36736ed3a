"""Activations and losses against their textbook formulas at chosen points, written with ``math`` (torch-free).

The finite-difference tests check that f' matches f; these check f itself, the kinks (PyTorch's choices at
z = 0), the regime switches (softplus above 20, GELU's clip) and the losses' worked examples.
"""
import math

import numpy as np
import pytest

from manual import activations as A
from manual.activations import ACTIVATIONS, get_activation
from manual.losses import BUILTIN_LOSSES, DEFAULT_OUTPUT_ACTIVATION, LOSSES, cross_entropy, get_loss, log_softmax, \
    mse, one_hot, softmax

Z = [-3.0, -0.5, 0.0, 0.7, 2.5]


def sigma(z):
    return 1 / (1 + math.exp(-z))


def gelu_tanh(z):
    return 0.5 * z * (1 + math.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))


FORMULAS = {  # name → (f, f'), from the definitions in the module docstring
    "sigmoid": (sigma, lambda z: sigma(z) * (1 - sigma(z))),
    "tanh": (math.tanh, lambda z: 1 - math.tanh(z) ** 2),
    "relu": (lambda z: max(z, 0.0), lambda z: 1.0 if z > 0 else 0.0),
    "leaky_relu": (lambda z: z if z > 0 else 0.01 * z, lambda z: 1.0 if z > 0 else 0.01),
    "elu": (lambda z: z if z > 0 else math.exp(z) - 1, lambda z: 1.0 if z > 0 else math.exp(z)),
    "swish": (lambda z: z * sigma(z), lambda z: sigma(z) + z * sigma(z) * (1 - sigma(z))),
    "gelu": (gelu_tanh, lambda z: (gelu_tanh(z + 1e-6) - gelu_tanh(z - 1e-6)) / 2e-6),
    "softplus": (lambda z: math.log1p(math.exp(z)), sigma),
    "identity": (lambda z: z, lambda z: 1.0),
}


@pytest.mark.parametrize("name", FORMULAS)
def test_values_and_derivatives_match_the_formulas(name):
    act, (f, df) = ACTIVATIONS[name], FORMULAS[name]
    z = np.array(Z)
    np.testing.assert_allclose(act.f(z), [f(v) for v in Z], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(act.df(z), [df(v) for v in Z], rtol=1e-8 if name == "gelu" else 1e-14, atol=1e-15)
    np.testing.assert_allclose(act.derivative(z, act.f(z)), act.df(z), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("name", FORMULAS)
def test_float32_stays_float32(name):
    z = np.array(Z, dtype=np.float32)
    act = ACTIVATIONS[name]
    assert act.f(z).dtype == np.float32 and act.df(z).dtype == np.float32


def test_derivatives_at_the_kink_are_pytorchs():
    zero = np.zeros(1)
    assert A.d_relu(zero)[0] == 0.0 and A.d_leaky_relu(zero)[0] == 0.01 and A.d_elu(zero)[0] == 1.0
    assert A.leaky_relu(np.array([-2.0]))[0] == -0.02 and A.elu(np.array([-1.0]))[0] == math.expm1(-1)


def test_softplus_is_exactly_linear_above_20():
    z = np.array([19.5, 20.0, 20.5, 30.0])
    assert list(A.softplus(z)[2:]) == [20.5, 30.0] and list(A.d_softplus(z)[2:]) == [1.0, 1.0]
    assert A.softplus(z)[0] == 19.5 + math.log1p(math.exp(-19.5)) and A.softplus(z)[1] > 20.0  # the formula up to 20
    assert A.d_softplus(z)[1] == sigma(20.0) < 1.0


def test_gelu_far_tails_are_the_identity_and_zero():
    z = np.array([-150.0, -60.0, 60.0, 150.0])
    np.testing.assert_array_equal(A.gelu(z), [-0.0, -0.0, 60.0, 150.0])
    np.testing.assert_array_equal(A.d_gelu(z), [0.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_clips_before_cubing(dtype):
    """At |z| = 1e30, z³ would overflow even float64's range in float32 (and 0·inf = NaN in the derivative):
    the clip to ±100 keeps GELU = (0, z) and GELU' = (0, 1) there, without a warning."""
    z = np.array([-1e30, 1e30], dtype=dtype)
    with np.errstate(over="raise", invalid="raise"):
        np.testing.assert_array_equal(A.gelu(z), [0.0, z[1]])
        np.testing.assert_array_equal(A.d_gelu(z), [0.0, 1.0])


def test_sigmoid_is_stable_on_both_sides():
    z = np.array([-800.0, -40.0, 40.0, 800.0])
    with np.errstate(over="raise", invalid="raise"):  # underflow to 0 is the right answer at −800
        s = A.sigmoid(z)
    np.testing.assert_allclose(s, [0.0, math.exp(-40) / (1 + math.exp(-40)), 1 / (1 + math.exp(-40)), 1.0],
                               rtol=1e-15, atol=0)


def test_saturation_margins_are_strict():
    """Glorot & Bengio's tails: σ < 0.03 or > 0.97; |tanh| > 0.97 (the margin itself is not saturated)."""
    s = np.array([0.0299, 0.03, 0.5, 0.9699, 0.9701, 1.0])
    np.testing.assert_array_equal(A.sigmoid_saturated(s), [True, False, False, False, True, True])
    t = np.array([-0.98, -0.9699, 0.0, 0.9699, 0.9701])
    np.testing.assert_array_equal(A.tanh_saturated(t), [True, False, False, False, True])
    assert A.SATURATION_MARGIN == 0.03
    edge = 1 - A.SATURATION_MARGIN  # exactly at the margin: not in the tail
    assert not A.sigmoid_saturated(np.array([edge]))[0] and not A.tanh_saturated(np.array([-edge, edge])).any()


def test_max_slopes():
    assert {n: a.max_slope for n, a in ACTIVATIONS.items()} == {
        "sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0, "elu": 1.0, "swish": 1.0998, "gelu": 1.1289,
        "softplus": 1.0, "identity": 1.0}
    assert [n for n, a in ACTIVATIONS.items() if a.df_from_output] == ["sigmoid", "tanh"]


def test_unknown_activation_message():
    with pytest.raises(ValueError) as error:
        get_activation("Relu")
    assert str(error.value) == ("unknown activation 'Relu'; valid activations: sigmoid, tanh, relu, leaky_relu, elu, "
                                "swish, gelu, softplus, identity")


# --------------------------------------------------------------------------- losses
def test_one_hot_and_softmax():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3, np.float64), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_allclose(log_softmax(np.array([[0.0, math.log(3)]])), [[math.log(1 / 4), math.log(3 / 4)]],
                               rtol=1e-15)
    np.testing.assert_allclose(softmax(np.array([[1000.0, 1000.0], [0.0, -math.inf]])), [[0.5, 0.5], [1.0, 0.0]])


def test_log_softmax_works_along_the_last_axis_of_any_array():
    row = [math.log(1 / 4), math.log(3 / 4)]
    np.testing.assert_allclose(log_softmax(np.array([0.0, math.log(3)])), row, rtol=1e-15)
    np.testing.assert_allclose(log_softmax(np.array([[[0.0, math.log(3)]], [[5.0, 5 + math.log(3)]]])),
                               [[row], [row]], rtol=1e-14)


def test_losses_with_other_output_activations():
    """z = (0.5, −0.3), label 0. mse with softplus outputs: ∂E/∂z = (a − y)·σ(z). Cross-entropy of sigmoid
    scores s = σ(z): ∂E/∂z = (softmax(s) − y)·σ'(z); of softplus scores: (softmax(s) − y)·σ(z)."""
    z, y = np.array([[0.5, -0.3]]), np.array([0])
    sp = [math.log1p(math.exp(v)) for v in (0.5, -0.3)]
    result = mse(z, y, ACTIVATIONS["softplus"])
    assert result.loss == pytest.approx(0.5 * ((sp[0] - 1) ** 2 + sp[1] ** 2), rel=1e-14)
    np.testing.assert_allclose(result.dz, [[(sp[0] - 1) * sigma(0.5), sp[1] * sigma(-0.3)]], rtol=1e-14)
    s = [sigma(0.5), sigma(-0.3)]
    for name, scores, slope in (("sigmoid", s, [v * (1 - v) for v in s]), ("softplus", sp, s)):
        p0 = 1 / (1 + math.exp(scores[1] - scores[0]))
        result = cross_entropy(z, y, ACTIVATIONS[name])
        assert result.loss == pytest.approx(-math.log(p0), rel=1e-14), name
        np.testing.assert_allclose(result.dz, [[(p0 - 1) * slope[0], (1 - p0) * slope[1]]], rtol=1e-13)


def test_cross_entropy_worked_example():
    """z = (0, ln 3): p = (¼, ¾). Label 0: E = ln 4, ∂E/∂z = p − (1, 0) = (−¾, ¾); label 1: E = ln(4/3).
    Batch of both: mean loss, gradient rows divided by B = 2."""
    z = np.array([[0.0, math.log(3)], [0.0, math.log(3)]])
    result = cross_entropy(z, np.array([0, 1]), ACTIVATIONS["identity"])
    assert result.loss == pytest.approx((math.log(4) + math.log(4 / 3)) / 2, rel=1e-15)
    np.testing.assert_allclose(result.dz, [[-0.375, 0.375], [0.125, -0.125]], rtol=1e-14)


def test_mse_worked_example():
    """Identity outputs a = z = (0.5, 0.25), label 1: E = ½·(0.5² + 0.75²) = 0.40625; ∂E/∂z = a − y = (0.5, −0.75).
    With sigmoid outputs at z = 0: a = ½, E = ½·(¼ + ¼) = ¼ and ∂E/∂z = (a − y)·σ'(0) = (⅛, −⅛)."""
    z = np.array([[0.5, 0.25]])
    result = mse(z, np.array([1]), ACTIVATIONS["identity"])
    assert result.loss == 0.40625
    np.testing.assert_array_equal(result.dz, [[0.5, -0.75]])
    result = mse(np.zeros((2, 2)), np.array([0, 1]), ACTIVATIONS["sigmoid"])  # batch of 2: means
    assert result.loss == 0.25
    np.testing.assert_array_equal(result.dz, [[-0.0625, 0.0625], [0.0625, -0.0625]])


def test_losses_use_the_given_outputs_when_known():
    """``a`` = g(z) from the forward pass is used as given (not recomputed)."""
    z, a = np.zeros((1, 2)), np.array([[1.0, 0.0]])
    assert mse(z, np.array([0]), ACTIVATIONS["identity"], a).loss == 0.0
    assert cross_entropy(z, np.array([0]), ACTIVATIONS["identity"], np.array([[0.0, math.log(3)]])).loss == \
        pytest.approx(math.log(4), rel=1e-15)


def test_loss_names():
    assert DEFAULT_OUTPUT_ACTIVATION == {"mse": "sigmoid", "cross_entropy": "identity"}
    # LOSSES is the registry: name → Loss record (the built-ins, in this order, when no plug-in is registered)
    assert tuple(LOSSES) == ("mse", "cross_entropy") and tuple(BUILTIN_LOSSES) == ("mse", "cross_entropy")
    assert get_loss("mse") is LOSSES["mse"] and get_loss("mse").fn is mse and get_loss("mse").name == "mse"
    assert get_loss("cross_entropy").fn is cross_entropy and get_loss("cross_entropy").name == "cross_entropy"
    with pytest.raises(ValueError) as error:
        get_loss("nll")
    assert str(error.value) == "unknown loss 'nll'; valid losses: mse, cross_entropy"
