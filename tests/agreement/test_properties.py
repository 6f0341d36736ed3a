"""Property-based agreement: for *any* small network (sizes, activation built-in or plug-in, loss, batch, inputs),
manual's hand-written gradients equal autograd's to the documented float64 tolerance (gradcheck's 1e-10)."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import manual
from experiments.gradcheck import DEFAULT_TOLERANCES, autograd_loss_and_grads, max_rel_err, torch_twin
from experiments.plugins import load_plugins
from manual.activations import BUILTINS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLUGINS = ["mish", "softsign"]  # examples/*.py, registered for this module only
AUTOGRAD_TOL = DEFAULT_TOLERANCES["float64"][0]

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module", autouse=True)
def plugins():
    from experiments import plugins as loader
    from manual import activations

    load_plugins([str(EXAMPLES / f"{name}.py") for name in PLUGINS])
    yield
    for name in PLUGINS:
        activations.unregister(name)
    loader._LOADED.clear()


networks = st.fixed_dictionaries({
    "hidden": st.lists(st.integers(1, 6), min_size=0, max_size=3),
    "n_in": st.integers(1, 5),
    "n_out": st.integers(2, 5),
    "activation": st.sampled_from(list(BUILTINS) + PLUGINS),
    "loss": st.sampled_from(["mse", "cross_entropy"]),
    "init": st.sampled_from(["pytorch", "xavier", "he"]),
    "batch": st.integers(1, 6),
    "seed": st.integers(0, 2**16),
    "scale": st.sampled_from([0.1, 1.0, 5.0]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=networks)
def test_manual_gradients_equal_autograd_for_any_network(spec):
    sizes = [spec["n_in"], *spec["hidden"], spec["n_out"]]
    net = manual.MLP(sizes, activation=spec["activation"], loss=spec["loss"], init=spec["init"], seed=spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    X = spec["scale"] * rng.standard_normal((spec["batch"], spec["n_in"]))
    y = rng.integers(0, spec["n_out"], spec["batch"])
    loss, grads = net.loss_and_grads(X, y)
    auto_loss, auto = autograd_loss_and_grads(torch_twin(net), X, y)
    assert loss == pytest.approx(auto_loss, rel=1e-12, abs=1e-15)
    assert sorted(grads) == sorted(auto)
    for key, g in grads.items():
        assert g.shape == auto[key].shape
        assert max_rel_err(g, auto[key], floor=1e-12) <= AUTOGRAD_TOL, key


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), d=st.integers(1, 5), m=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_check_backward_passes_a_correct_linear_layer_of_any_shape(n, d, m, seed):
    from experiments.gradcheck import check_backward

    def forward(x, W, b):
        return x @ W.T + b, (x, W)

    def backward(dout, cache):
        x, W = cache
        return {"x": dout @ W, "W": dout.T @ x, "b": dout.sum(axis=0)}

    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((n, d)), "W": rng.standard_normal((m, d)), "b": rng.standard_normal(m)}
    report = check_backward(forward, backward, inputs, seed=seed)
    assert report.passed, str(report)
    assert report.checked == n * d + m * d + m
