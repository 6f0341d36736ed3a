"""``experiments.gradcheck``'s checks of one function: wrong derivatives are caught *and located*, kinks are not
errors, and every built-in passes through the same public functions a user's code does."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from experiments.gradcheck import check_activation, check_backward, check_loss
from experiments.gradcheck.checks import ACTIVATION_COLUMNS, LAYER_COLUMNS
from manual.activations import BUILTINS, Activation
from manual.losses import BUILTIN_LOSSES
from torch_ref.model import activation_module

pytestmark = pytest.mark.torch  # tests/conftest.py

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name):
    """An examples/ file as a module, without registering anything."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mish = example("mish")
layer = example("affine_relu")


def wrong_mish(df):
    return Activation("mish_wrong", mish.mish, df, torch_fn=mish.mish_torch)


def fd_failures(report):
    return report.failures[report.failures["check"] == "df vs finite differences"]


# ------------------------------------------------------------------ activations: caught and located
def test_a_sign_error_is_caught_everywhere_the_derivative_is_not_tiny():
    report = check_activation(wrong_mish(lambda z: -mish.d_mish(z)))
    assert not report.passed
    assert list(report.failures.columns) == ACTIVATION_COLUMNS
    fails = fd_failures(report)
    np.testing.assert_allclose(fails["analytic"], -fails["numeric"], rtol=1e-6)
    assert ((fails["rel_err"] - 2.0).abs() < 1e-6).all()
    assert fails["z"].max() == 1e4 and 0.0 in set(fails["z"])  # from the far right through 0
    assert report.failures["rel_err"].is_monotonic_decreasing  # worst first
    assert "df wrong for z ≥" in str(report) and "df disagrees with autograd" in str(report)


def test_a_factor_of_two_is_caught_with_the_ratio_visible():
    report = check_activation(wrong_mish(lambda z: 2 * mish.d_mish(z)))
    fails = fd_failures(report)
    np.testing.assert_allclose(fails["analytic"] / fails["numeric"], 2.0, rtol=1e-6)
    assert (fails["rel_err"] - 0.5).abs().max() < 1e-6


def test_an_error_only_for_negative_z_is_located_there():
    report = check_activation(wrong_mish(lambda z: np.where(z < 0, 0.5 * mish.d_mish(z), mish.d_mish(z))))
    fails = fd_failures(report)
    assert len(fails) > 100 and (fails["z"] < 0).all()
    region = [line for line in report.regions if line.startswith("df wrong")]
    assert len(region) == 1 and "≤ z ≤ -1e-08" in region[0]  # one region, ending just below 0


def test_an_error_only_for_large_z_is_located_in_both_tails():
    """mish'(z) → 1 for z → ∞ and → 0 for z → −∞: a derivative set to 0 beyond |z| > 30 is wrong on the right."""
    report = check_activation(wrong_mish(lambda z: np.where(np.abs(z) > 30, 0.0, mish.d_mish(z))))
    fails = fd_failures(report)
    assert (fails["z"] > 30).all() and fails["z"].max() == 1e4
    assert fails.iloc[0]["numeric"] == pytest.approx(1.0) and fails.iloc[0]["analytic"] == 0.0
    assert any(line.startswith("df wrong for z ≥ 30.05") for line in report.regions)


def test_an_error_at_one_point_is_found_at_that_point():
    report = check_activation(wrong_mish(lambda z: np.where(z == 0, 0.0, mish.d_mish(z))))
    assert set(report.failures["z"]) == {0.0}
    row = fd_failures(report).iloc[0]
    assert row["analytic"] == 0.0 and row["numeric"] == pytest.approx(0.6, rel=1e-9)
    assert "df wrong at z = 0: at z = 0 analytic 0, numeric 0.6" in str(report)


def test_a_wrong_derivative_is_caught_without_torch_fn_too():
    report = check_activation(Activation("m", mish.mish, lambda z: 2 * mish.d_mish(z)))
    assert set(report.failures["check"]) == {"df vs finite differences"}
    assert "no torch_fn" in str(report)


def test_f_against_torch_fn_is_checked():
    report = check_activation(Activation("m", mish.mish, mish.d_mish, torch_fn=lambda z: 1.01 * mish.mish_torch(z)))
    assert "f vs torch_fn" in set(report.failures["check"])
    assert "f differs from torch_fn" in str(report)


def test_instability_is_named_with_dtype_and_z():
    """exp(z) overflows float32 above z ≈ 88: a problem, named with the z where it happens."""
    act = Activation("naive_softplus", lambda z: np.log(1 + np.exp(z)), lambda z: np.exp(z) / (1 + np.exp(z)))
    report = check_activation(act)
    assert not report.passed
    assert any("not stable in float32" in p and "overflow" in p and "at z = 100" in p for p in report.problems)


# ------------------------------------------------------------------ kinks are not false alarms
def hardtanh(z):
    return np.clip(z, -1, 1)


def d_hardtanh(z):
    return ((z > -1) & (z < 1)).astype(z.dtype)


def leaky(z):
    return np.where(z > 0, z, 0.1 * z).astype(z.dtype, copy=False)


def d_leaky_at_zero_right(z):
    """Takes the right-hand slope at exactly 0 (PyTorch takes the left one): also a valid subgradient."""
    return np.where(z >= 0, 1.0, 0.1).astype(z.dtype, copy=False)


@pytest.mark.parametrize("act, kinks", [
    (BUILTINS["relu"], {"z = 0"}),
    (Activation("leaky", leaky, d_leaky_at_zero_right, lambda z: F.leaky_relu(z, 0.1)), {"z = 0"}),
    (Activation("hardtanh", hardtanh, d_hardtanh, F.hardtanh), {"z = -1", "z = 1"}),
])
def test_kinked_functions_pass_and_their_kinks_are_reported_as_kinks(act, kinks):
    report = check_activation(act, torch_fn=activation_module("relu") if act.name == "relu" else None)
    assert report.passed, str(report)
    assert set(report.kinks["where"]) == kinks
    assert "not an error" in str(report)


def test_a_wrong_value_at_a_kink_is_still_an_error():
    """At a kink any value between the one-sided slopes is right; 2 (outside [0, 1]) is not."""
    act = Activation("relu2", lambda z: np.maximum(z, 0), lambda z: np.where(z == 0, 2.0, (z > 0) * 1.0))
    report = check_activation(act)
    assert set(fd_failures(report)["z"]) == {0.0}


# ------------------------------------------------------------------ built-ins through the public functions
@pytest.mark.parametrize("name", list(BUILTINS))
def test_every_builtin_activation_passes(name):
    report = check_activation(BUILTINS[name], torch_fn=activation_module(name))
    assert report.passed, str(report)
    assert report.failures.empty and report.checked > 6000


@pytest.mark.parametrize("name", list(BUILTIN_LOSSES))
def test_every_builtin_loss_passes(name):
    report = check_loss(BUILTIN_LOSSES[name])
    assert report.passed, str(report)


def test_a_loss_with_a_forgotten_factor_fails():
    from manual.losses import Loss, mse

    def half_mse(z, y, output, a=None):
        loss, dz = mse(z, y, output, a)
        return loss, dz / 2  # the ½ of ½Σ(a − y)² applied twice

    report = check_loss(Loss("half", half_mse, output_activation="sigmoid"))
    assert not report.passed and set(report.failures["input"]) == {"z"}


# ------------------------------------------------------------------ layers
def inputs(seed=0, dtype=np.float64):
    return {k: v.astype(dtype) for k, v in layer.affine_relu_inputs(np.random.default_rng(seed)).items()}


def test_the_example_layer_passes():
    report = check_backward(layer.affine_relu_forward, layer.affine_relu_backward, inputs(), name="affine_relu")
    assert report.passed, str(report)
    assert report.checked == 4 * 5 + 3 * 5 + 3  # every element of x, W and b


def test_a_backward_that_forgets_the_batch_sum_for_one_parameter_is_located():
    def backward(dout, cache):
        grads = layer.affine_relu_backward(dout, cache)
        x, W, z = cache
        grads["b"] = (dout * (z > 0))[0]  # only the first example's contribution
        return grads

    report = check_backward(layer.affine_relu_forward, backward, inputs(), name="affine_relu")
    assert not report.passed
    assert list(report.failures.columns) == LAYER_COLUMNS
    assert set(report.failures["input"]) == {"b"}  # x and W are right
    assert "gradient 'b' wrong at" in str(report)


def test_a_gradient_with_the_right_values_in_the_wrong_layout_is_named():
    def transposed(dout, cache):
        grads = layer.affine_relu_backward(dout, cache)
        grads["W"] = np.ascontiguousarray(grads["W"].T)  # (in, out) instead of nn.Linear's (out, in)
        return grads

    report = check_backward(layer.affine_relu_forward, transposed, inputs(), name="affine_relu")
    assert report.problems == ["gradient 'W' has shape (5, 3) but input 'W' has shape (3, 5): it is the right "
                               "gradient transposed"]
    square = {"x": inputs()["x"][:, :3], "W": np.random.default_rng(1).standard_normal((3, 3)), "b": inputs()["b"]}
    report = check_backward(layer.affine_relu_forward, transposed, square)
    assert "gradient 'W': it is the right gradient transposed" in report.problems
    assert set(report.failures["input"]) == {"W"}


def test_missing_extra_and_non_finite_gradients_are_named():
    def broken(dout, cache):
        grads = layer.affine_relu_backward(dout, cache)
        grads["bias"] = grads.pop("b")
        grads["x"][1, 2] = np.nan
        return grads

    report = check_backward(layer.affine_relu_forward, broken, inputs())
    assert "missing gradient for input 'b'" in report.problems
    assert any(p.startswith("extra gradient 'bias'") for p in report.problems)
    assert any("'x' has 1 NaN or infinite value(s), first at index (1, 2)" in p for p in report.problems)


def test_float32_inputs_are_checked_with_their_own_step_and_tolerance():
    report = check_backward(layer.affine_relu_forward, layer.affine_relu_backward, inputs(dtype=np.float32))
    assert report.passed, str(report)
    assert "float32: step 0.0049" in str(report)


def test_fast_mode_checks_directions_and_falls_back_to_elements_on_failure():
    rng = np.random.default_rng(2)
    big = {"x": rng.standard_normal((64, 40)), "W": rng.standard_normal((30, 40)), "b": rng.standard_normal(30)}
    report = check_backward(layer.affine_relu_forward, layer.affine_relu_backward, big)
    assert report.passed and report.checked == 9  # 3 directions × 3 inputs instead of 3,790 elements

    def no_sum(dout, cache):
        grads = layer.affine_relu_backward(dout, cache)
        grads["b"] = (dout * (cache[2] > 0))[0]
        return grads

    report = check_backward(layer.affine_relu_forward, no_sum, big)
    assert set(report.failures["input"]) == {"b"} and len(report.failures) > 20
    assert "fast mode: 'b' failed a random directional derivative" in str(report)


def scaled(key, factor):
    """affine_relu's backward with gradient ``key`` multiplied by ``factor``."""
    def backward(dout, cache):
        grads = layer.affine_relu_backward(dout, cache)
        grads[key] = factor * grads[key]
        return grads
    return backward


@pytest.mark.parametrize("factor", [0.9, 0.98])
def test_a_float32_gradient_a_few_percent_off_is_caught(factor):
    """A retry at a smaller step is judged with its first step's rounding allowance, which at 1/64 of the step
    would otherwise be 64 times larger (~0.4 here) and let a gradient 10% off pass."""
    report = check_backward(layer.affine_relu_forward, scaled("W", factor), inputs(dtype=np.float32))
    assert not report.passed
    assert set(report.failures["input"]) == {"W"}
    assert len(report.failures) >= {0.9: 12, 0.98: 6}[factor]  # of 15 elements: all but the smallest
    np.testing.assert_allclose(report.failures["rel_err"], 1 - factor, rtol=0.01)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_float32_backward_that_forgets_the_batch_sum_names_every_wrong_element(seed):
    """b's gradient from the first example only: every element where that differs from the batch's sum is named
    (with seed 1, element 1 of dz is 0 in every other row, so b[1] is right)."""
    def first_row_only(dout, cache):
        grads = layer.affine_relu_backward(dout, cache)
        grads["b"] = (dout * (cache[2] > 0))[0]
        return grads

    x = inputs(seed, dtype=np.float32)
    dout = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)  # check_backward's draw
    cache = layer.affine_relu_forward(**x)[1]
    wrong = np.abs(first_row_only(dout, cache)["b"] - layer.affine_relu_backward(dout, cache)["b"]) > 1e-3
    report = check_backward(layer.affine_relu_forward, first_row_only, x, seed=seed)
    assert set(report.failures["input"]) == {"b"}
    assert sorted(report.failures["index"]) == [tuple(i) for i in np.argwhere(wrong)]
    assert wrong.sum() == {0: 3, 1: 2}[seed]


def test_an_error_message_on_two_lines_is_reported_on_one():
    def forward(x, W, b):
        raise RuntimeError("x and W do not match:\n  x is (4, 5), W is (3, 5)")

    def backward(dout, cache):
        raise ValueError("dout has the wrong shape\nexpected (4, 3)")

    report = check_backward(layer.affine_relu_forward, backward, inputs())
    assert report.problems == ["backward raised ValueError: dout has the wrong shape expected (4, 3)"]
    assert len(str(report).splitlines()) == 2  # the verdict and the problem
    report = check_backward(forward, backward, inputs())
    assert report.problems == ["forward raised RuntimeError: x and W do not match: x is (4, 5), W is (3, 5)"]
