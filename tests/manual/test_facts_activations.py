"""Activations and losses against their textbook formulas at chosen points, written with ``math`` (torch-free),
and the plug-in registry's facts (at the end).

The finite-difference tests check that f' matches f; these check f itself, the kinks (PyTorch's choices at
z = 0), the regime switches (softplus above 20, GELU's clip) and the losses' worked examples.
"""
import math
import warnings

import numpy as np
import pytest

from manual import activations as A
from manual import registry
from manual.activations import ACTIVATIONS, Activation, get_activation, measure_max_slope, register, unregister
from manual.losses import BUILTIN_LOSSES, DEFAULT_OUTPUT_ACTIVATION, LOSSES, Loss, LossResult, cross_entropy, \
    get_loss, log_softmax, mse, one_hot, register_loss, softmax, unregister_loss

from tests.helpers import message

pytestmark = pytest.mark.facts  # absolute facts, stated by hand (tests/conftest.py)

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


# ====================================================================================================
# The plug-in registry's absolute facts, torch-free: what ``Activation``, ``register``/``unregister``,
# ``validate``, ``measure_max_slope``, ``register_loss``/``unregister_loss`` and ``validate_loss`` accept, refuse,
# measure and say — every user-facing message compared whole.


SHAPE = "(3, 2, 3)"  # the shape of validate's grid of z


def tanh_act(name="t", **kwargs):
    return Activation(name, np.tanh, lambda z: 1 - np.tanh(z) ** 2, **kwargs)


# ------------------------------------------------------------------ Activation(...)
@pytest.mark.parametrize("name, shown", [("", "''"), (5, "5"), (None, "None")])
def test_an_activation_needs_a_non_empty_string_name(name, shown):
    assert message(Activation, name, np.tanh, np.cos) == f"an activation's name must be a non-empty string, got {shown}"


def test_f_and_df_must_be_functions_and_the_message_names_which():
    assert message(Activation, "a", 3, np.cos) == "activation 'a': f must be a function of z, got 3"
    assert message(Activation, "a", np.sin, "cos") == "activation 'a': df must be a function of z, got 'cos'"


@pytest.mark.parametrize("which", ["torch_fn", "df_from_output", "saturated"])
def test_optional_functions_must_be_functions_or_none_and_the_message_names_which(which):
    text = message(Activation, "a", np.tanh, np.cos, max_slope=1.0, **{which: "tanh"})
    assert text == f"activation 'a': {which} must be a function or None, got 'tanh'"
    assert getattr(Activation("a", np.tanh, np.cos, max_slope=1.0, **{which: None}), which) is None


def test_kinks_are_stored_as_a_tuple_of_floats():
    act = tanh_act(max_slope=1.0, kinks=[0, 20])
    assert act.kinks == (0.0, 20.0) and all(type(k) is float for k in act.kinks)
    assert tanh_act(max_slope=1.0).kinks == ()


def test_a_given_max_slope_is_kept_not_measured():
    """sup |tanh'| measures 1, but the user's stated bound is what the activation carries."""
    assert tanh_act(max_slope=3.0).max_slope == 3.0
    assert tanh_act().max_slope == 1.0


# ------------------------------------------------------------------ measure_max_slope
def triangle(peak):
    """|df| = max(0, 1 − |z − peak|): its sup is 1, reached only at z = peak (a kink, where grids matter)."""
    return lambda z: np.maximum(0.0, 1.0 - np.abs(z - peak))


@pytest.mark.parametrize("peak", [0.0, 0.0005, 0.000123, -3.0, 17.25])
def test_a_peak_on_the_fine_grid_of_step_1e_6_is_measured_exactly(peak):
    """The coarse grid has step 1e-3 from −50 and the fine one step 1e-6 around the coarse maximum, so a peak at a
    multiple of 1e-6 (between coarse points, like 0.0005, or on one, like 0) is sampled itself."""
    assert measure_max_slope(triangle(peak)) == pytest.approx(1.0, abs=1e-12)


def test_a_peak_off_every_grid_is_underestimated_by_at_most_half_the_fine_step():
    measured = measure_max_slope(triangle(1.2345675))  # half-way between two multiples of 1e-6
    assert 1.0 - 5.0001e-7 <= measured <= 1.0
    assert measured == pytest.approx(1.0 - 5e-7, abs=1e-12)


def test_a_smooth_peak_is_measured_to_float_precision():
    """tanh(2z)' = 2·(1 − tanh²(2z)) peaks at 2 at z = 0; the logistic bump σ'(z − 0.3) peaks at ¼ at z = 0.3."""
    assert measure_max_slope(lambda z: 2 * (1 - np.tanh(2 * z) ** 2)) == 2.0
    bump = lambda z: np.exp(-(z - 0.3)) / (1 + np.exp(-(z - 0.3))) ** 2  # noqa: E731
    assert measure_max_slope(bump) == pytest.approx(0.25, abs=1e-13)


@pytest.mark.parametrize("side", [-1, 1])
def test_only_z_within_50_counts(side):
    """sup over z in [−50, 50]: a df that jumps to 10 beyond |z| = 50.5 is measured as 1."""
    assert measure_max_slope(lambda z: np.where(side * z > 50.5, 10.0, 1.0)) == 1.0


def test_a_df_undefined_outside_its_domain_is_measured_on_it_without_a_warning():
    """√(1 − z²) is NaN for |z| > 1 (NumPy's 'invalid value' case): the sup is still 1, at z = 0, and silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert measure_max_slope(lambda z: np.sqrt(1 - z * z)) == 1.0


@pytest.mark.parametrize("df", [lambda z: np.full_like(z, np.nan), lambda z: 1.0, lambda z: z[:10],
                                lambda z: np.ones((2,) + z.shape)])
def test_a_df_that_is_nan_everywhere_or_not_element_wise_measures_nan(df):
    assert math.isnan(measure_max_slope(df))


def test_a_df_nan_everywhere_is_constructed_and_refused_by_register(clean_registries):
    act = Activation("nan", np.tanh, lambda z: np.full_like(z, np.nan))
    assert math.isnan(act.max_slope)
    assert message(register, act) == "activation 'nan': df(z) is nan at z = -6 (float64); it must be finite"


def test_a_scalar_df_wrapped_with_frompyfunc_is_measured_and_refused_for_its_object_dtype(clean_registries):
    """A scalar df with a forgotten branch (None for z ≤ 0) under np.frompyfunc gives objects: the sup of what it
    returns is still measured (1.0), and register() then says what is wrong instead of a TypeError."""
    def scalar_df(x):
        if x > 0:
            return 1.0

    act = Activation("halfdef", lambda z: np.maximum(z, 0), np.frompyfunc(scalar_df, 1, 1))
    assert act.max_slope == 1.0
    assert message(register, act) == ("activation 'halfdef': df(z) returned object for float64 z; keep z's dtype "
                                      "(e.g. .astype(z.dtype, copy=False))")


# ------------------------------------------------------------------ register / unregister
def test_register_takes_only_an_activation():
    assert message(register, "relu") == "register() takes a manual.activations.Activation, got str"
    assert message(register, None) == "register() takes a manual.activations.Activation, got NoneType"


def test_a_builtin_name_cannot_be_registered_even_with_override(clean_registries):
    text = message(register, tanh_act("relu"), override=True)
    assert text == "activation 'relu' clashes with the built-in of that name; choose another name"


def test_a_plugin_name_is_taken_unless_override(clean_registries):
    first, second = tanh_act("t2"), Activation("t2", np.sin, np.cos)
    assert register(first) is first
    assert message(register, second) == ("activation 't2' is already registered (by another plug-in); choose another "
                                         "name or register it with override=True")
    assert ACTIVATIONS["t2"] is first
    assert register(second, override=True) is second and ACTIVATIONS["t2"] is second


@pytest.mark.parametrize("name", ["relu", "sigmoid", "identity"])
def test_a_builtin_activation_cannot_be_unregistered(name):
    assert message(unregister, name) == f"activation {name!r} is a built-in and cannot be unregistered"
    assert name in ACTIVATIONS


def test_unregister_removes_a_plugin_and_an_unknown_name_is_a_no_op(clean_registries):
    register(tanh_act("t3"))
    before = dict(ACTIVATIONS)
    unregister("never-registered")
    assert ACTIVATIONS == before
    unregister("t3")
    assert "t3" not in ACTIVATIONS and len(ACTIVATIONS) == len(before) - 1
    unregister("t3")  # twice: still a no-op


def test_the_shared_rule_refuses_a_taken_name_unless_override():
    """``manual.registry.register``'s own default: override is off."""
    class Item:
        def __init__(self, name):
            self.name = name

    seen = []
    table, old, new = {}, Item("x"), Item("x")
    assert registry.register(table, {}, old, "thing", seen.append) is old
    with pytest.raises(ValueError) as err:
        registry.register(table, {}, new, "thing", seen.append)
    assert str(err.value) == ("thing 'x' is already registered (by another plug-in); choose another name or register "
                              "it with override=True")
    assert table == {"x": old} and seen == [old]  # refused before validation
    assert registry.register(table, {}, new, "thing", seen.append, True) is new and table == {"x": new}
    with pytest.raises(ValueError) as err:
        registry.unregister(table, {"b": 1}, "b", "thing")
    assert str(err.value) == "thing 'b' is a built-in and cannot be unregistered"
    registry.unregister(table, {}, "absent", "thing")
    registry.unregister(table, {}, "x", "thing")
    assert table == {}


# ------------------------------------------------------------------ validate (through register)
def with_nan_on(lo, hi):
    """f = z except NaN for lo < z < hi: a function with a hole that only some z find."""
    return lambda z: np.where((lo < z) & (z < hi), np.nan, z)


@pytest.mark.parametrize("lo, hi, shown", [
    (-np.inf, -10.0, "-30"), (-1.0, 0.0, "-0.5"), (0.0, 0.1, "0.001"), (0.25, 0.75, "0.5"), (5.5, 6.5, "6"),
    (10.0, np.inf, "30"),
])
def test_validate_tries_each_of_its_probe_points(clean_registries, lo, hi, shown):
    """The grid is the integers −6 … 6 and −30, −0.5, 0.5, 0.001, 30: a hole around any one of them is found there."""
    act = Activation("holes", with_nan_on(lo, hi), lambda z: np.ones_like(z), max_slope=1.0)
    assert message(register, act) == f"activation 'holes': f(z) is nan at z = {shown} (float64); it must be finite"


def test_validate_accepts_a_function_whose_holes_miss_every_probe_point(clean_registries):
    act = Activation("gaps", with_nan_on(6.5, 29.5), lambda z: np.ones_like(z), max_slope=1.0)
    assert register(act) is act


def test_validate_reports_the_first_bad_value_in_grid_order():
    """log(z + 6) is −inf at z = −6 (the grid's first point) and NaN at −30 (later): the first is reported."""
    act = Activation("log6", lambda z: np.log(z + 6), lambda z: 1 / (z + 6), max_slope=1.0)
    assert message(register, act) == "activation 'log6': f(z) is -inf at z = -6 (float64); it must be finite"


def test_validate_names_the_dtype_where_only_float32_overflows():
    """e^(3z) at z = 30 is 1.2e39: finite in float64, inf in float32 (and no overflow warning escapes)."""
    act = Activation("exp3", lambda z: np.exp(3 * z), lambda z: 3 * np.exp(3 * z), max_slope=1.0)
    assert message(register, act) == "activation 'exp3': f(z) is inf at z = 30 (float32); it must be finite"


def test_an_exception_in_f_is_reported_with_its_type_shape_and_dtype():
    def float64_only(z):
        if z.dtype != np.float64:
            raise TypeError("float64 only")
        return z

    act = Activation("f64", float64_only, lambda z: np.ones_like(z), max_slope=1.0)
    assert message(register, act) == ("activation 'f64': f(z) raised TypeError: float64 only (z of shape (3, 2, 3), "
                                      "float32)")


@pytest.mark.parametrize("f, shown", [(lambda z: z.reshape(-1), "(18,)"), (lambda z: z[0], "(2, 3)"),
                                      (lambda z: z.tolist(), "list"), (lambda z: 1.5, "float")])
def test_f_must_keep_zs_shape(f, shown):
    act = Activation("shape", f, lambda z: np.ones_like(z), max_slope=1.0)
    assert message(register, act) == (f"activation 'shape': f(z) returned shape {shown} for z of shape {SHAPE}; "
                                      "it must work element-wise and keep z's shape")


def test_f_must_keep_zs_dtype():
    act = Activation("up", lambda z: z.astype(np.float64), lambda z: np.ones_like(z), max_slope=1.0)
    assert message(register, act) == ("activation 'up': f(z) returned float64 for float32 z; keep z's dtype "
                                      "(e.g. .astype(z.dtype, copy=False))")


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_max_slope_must_be_a_positive_finite_number(bad):
    text = message(register, tanh_act("slope", max_slope=bad))
    assert text == f"activation 'slope': max_slope (sup |f'|) must be a positive number, got {bad}"


def test_a_tiny_positive_max_slope_is_accepted(clean_registries):
    act = tanh_act("tiny", max_slope=1e-300)
    assert register(act) is act


# ------------------------------------------------------------------ losses
def half_mse(z, y, output, a=None):
    loss, dz = mse(z, y, output, a)
    return LossResult(loss / 2, dz / 2)


def test_register_loss_takes_only_a_loss():
    assert message(register_loss, "mse") == "register_loss() takes a manual.losses.Loss, got str"
    assert message(register_loss, ("mse", mse)) == "register_loss() takes a manual.losses.Loss, got tuple"


def test_a_builtin_loss_name_cannot_be_taken():
    text = message(register_loss, Loss("mse", half_mse), override=True)
    assert text == "loss 'mse' clashes with the built-in of that name; choose another name"


def test_a_plugin_loss_name_is_taken_unless_override(clean_registries):
    first, second = Loss("half", half_mse), Loss("half", mse)
    assert register_loss(first) is first
    assert message(register_loss, second) == ("loss 'half' is already registered (by another plug-in); choose another "
                                              "name or register it with override=True")
    assert LOSSES["half"] is first
    assert register_loss(second, override=True) is second and get_loss("half") is second


def test_unregister_loss_removes_a_plugin_and_refuses_a_builtin(clean_registries):
    register_loss(Loss("half", half_mse))
    unregister_loss("half")
    assert "half" not in LOSSES and list(LOSSES) == list(BUILTIN_LOSSES)
    assert message(get_loss, "half") == "unknown loss 'half'; valid losses: mse, cross_entropy"
    unregister_loss("half")  # an unknown name: a no-op
    for name in BUILTIN_LOSSES:
        assert message(unregister_loss, name) == f"loss {name!r} is a built-in and cannot be unregistered"
    assert list(LOSSES) == ["mse", "cross_entropy"]


@pytest.mark.parametrize("fn, torch_fn", [(3, None), (half_mse, "mse")])
def test_a_loss_needs_functions(fn, torch_fn):
    assert message(register_loss, Loss("odd", fn, torch_fn)) == "loss 'odd': fn (and torch_fn, if given) must be functions"


def test_an_exception_in_a_loss_is_reported_with_its_type():
    def boom(z, y, output, a=None):
        return 1 / 0

    assert message(register_loss, Loss("boom", boom)) == ("loss 'boom': fn(z, y, output) raised ZeroDivisionError: "
                                                          "division by zero")


def test_a_loss_that_is_minus_infinity_is_refused_without_a_warning():
    def log_of_zero(z, y, output, a=None):
        return np.log(np.zeros(())), np.zeros_like(z)

    assert message(register_loss, Loss("log0", log_of_zero)) == ("loss 'log0': fn must return a finite scalar loss "
                                                                 "first, got np.float64(-inf)")


def test_validate_loss_calls_fn_on_a_fixed_batch_with_the_loss_output_activation(clean_registries):
    """fn(z, y, output, a) with all four given (a = None): z of seed 0, labels 0, 3, 1 of 4 classes, and the
    activation named by the loss — the same batch every time, so a refusal is reproducible."""
    calls = []

    def spy(z, y, output, a):  # a is required: the network always passes it, and so does validate_loss
        calls.append((z.copy(), y.copy(), output, a))
        return half_mse(z, y, output, a)

    loss = Loss("spy", spy, output_activation="sigmoid")
    assert register_loss(loss) is loss and get_loss("spy") is loss
    (z, y, output, a), = calls
    np.testing.assert_array_equal(z, np.random.default_rng(0).standard_normal((3, 4)))
    assert y.tolist() == [0, 3, 1] and output is ACTIVATIONS["sigmoid"] and a is None


def test_a_df_that_raises_only_near_its_peak_is_measured_as_nan_not_raised():
    """The fine grid around the peak calls the user's df too: an exception there is the df's problem, which
    register() then names (measure_max_slope itself never raises)."""
    from manual.activations import measure_max_slope

    def df(z):
        if z.size == 2001:  # the fine grid only
            raise ZeroDivisionError("boom")
        return np.exp(-z * z)

    assert math.isnan(measure_max_slope(df))


def test_the_fine_grid_stays_inside_minus_50_to_50():
    """A slope rising to the edge is measured at z = 50 itself, never beyond."""
    from manual.activations import measure_max_slope

    seen = []

    def df(z):
        seen.append((float(z.min()), float(z.max())))
        return np.abs(z)

    assert measure_max_slope(df) == 50.0
    assert all(-50.0 <= low and high <= 50.0 for low, high in seen)
