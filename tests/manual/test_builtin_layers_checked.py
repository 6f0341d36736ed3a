"""The built-in layers of ``manual.layers`` pass the same public check a user's layer goes through, in float64
and in float32 (where the check's step and tolerance come from float32's ε)."""
from functools import partial

import numpy as np
import pytest

from experiments.gradcheck import check_backward
from manual import layers
from manual.activations import BUILTINS

RNG = np.random.default_rng(0)
X = RNG.standard_normal((5, 4))
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32])


def cast(inputs: dict, dtype) -> dict:
    return {k: v.astype(dtype) for k, v in inputs.items()}


@DTYPES
def test_linear_layer_passes_check_backward(dtype):
    inputs = {"x": X, "W": RNG.standard_normal((3, 4)), "b": RNG.standard_normal(3)}
    report = check_backward(layers.linear_forward, layers.linear_backward, cast(inputs, dtype), name="linear")
    assert report.passed, str(report)
    assert report.failures.empty


@DTYPES
@pytest.mark.parametrize("batch", [2, 5])
def test_batchnorm_layer_passes_check_backward_in_training_mode(batch, dtype):
    inputs = {"x": RNG.standard_normal((batch, 4)) * 3 + 1, "gamma": RNG.standard_normal(4),
              "beta": RNG.standard_normal(4)}
    report = check_backward(partial(layers.batchnorm_forward, training=True), layers.batchnorm_backward,
                            cast(inputs, dtype), name="batchnorm")
    assert report.passed, str(report)


@DTYPES
def test_batchnorm_layer_passes_check_backward_in_eval_mode(dtype):
    inputs = {"x": X, "gamma": RNG.standard_normal(4), "beta": RNG.standard_normal(4)}
    forward = partial(layers.batchnorm_forward, training=False, running_mean=RNG.standard_normal(4).astype(dtype),
                      running_var=RNG.uniform(0.5, 2, 4).astype(dtype))
    report = check_backward(forward, layers.batchnorm_backward, cast(inputs, dtype), name="batchnorm eval")
    assert report.passed, str(report)


@DTYPES
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "swish", "elu", "softplus"])
def test_activation_layer_passes_check_backward(name, dtype):
    forward = partial(layers.activation_forward, activation=BUILTINS[name])
    assert check_backward(forward, layers.activation_backward, cast({"x": X}, dtype), name=name).passed


def test_a_batchnorm_backward_that_drops_the_mean_term_is_caught():
    def wrong_backward(dout, cache):
        grads = layers.batchnorm_backward(dout, cache)
        x_hat, gamma, inv_std, _ = cache
        grads["x"] = gamma * inv_std * dout  # the path through the batch mean and variance forgotten
        return grads

    inputs = {"x": RNG.standard_normal((6, 3)), "gamma": np.ones(3), "beta": np.zeros(3)}
    report = check_backward(partial(layers.batchnorm_forward, training=True), wrong_backward, inputs)
    assert not report.passed
    assert set(report.failures["input"]) == {"x"}
