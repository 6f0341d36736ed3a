"""``manual.MLP``: hand-written backpropagation against finite differences, and its contract."""
import numpy as np
import pytest
import torch

import manual
import torch_ref
from experiments.gradcheck import fd_floor, fd_grads, kink_free_batch, max_rel_err
from manual.activations import ACTIVATIONS
from manual.init import INITS
from manual.losses import LOSSES, cross_entropy
from manual.optim import get_optimizer
from manual.optim.lr_scheduler import get_scheduler

pytestmark = pytest.mark.torch  # tests/conftest.py

# 1 to 3 hidden layers of odd widths
LAYER_SIZES = {1: [5, 3, 3], 2: [5, 3, 4, 3], 3: [5, 3, 4, 2, 3]}


def test_mnist_network_has_13002_parameters():
    assert manual.MLP([784, 16, 16, 10]).n_params == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10 == 13_002


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_finite_differences(activation, loss):
    """Every entry of every parameter, depths 1–3, batches of 1 and 4, relative error ≤ 1e-6."""
    for depth, sizes in LAYER_SIZES.items():
        for batch in (1, 4):
            net = manual.MLP(sizes, activation, loss, seed=depth)
            X, y = kink_free_batch(net, batch, seed=10 * depth + batch)
            value, grads = net.loss_and_grads(X, y)
            assert value == net.loss(X, y)
            fd = fd_grads(net, X, y)
            for key, g in grads.items():
                assert g.shape == net.params[key].shape
                err = max_rel_err(g, fd[key], fd_floor(value))
                assert err <= 1e-6, f"depth {depth}, batch {batch}, {key}: relative error {err:.2e}"


def test_mse_is_half_the_squared_error_with_one_hot_targets():
    """Zero parameters: every sigmoid output is ½, so E = ½·((½ − 1)² + (½)² + (½)²) = 3/8 per sample."""
    net = manual.MLP([2, 3], loss="mse")
    net.load_state_dict({k: np.zeros_like(v) for k, v in net.params.items()})
    assert net.loss(np.ones((4, 2)), np.array([0, 1, 2, 0])) == pytest.approx(0.375, rel=1e-15)


def test_cross_entropy_of_uniform_logits_is_log_n_classes():
    net = manual.MLP([2, 5], loss="cross_entropy")
    net.load_state_dict({k: np.zeros_like(v) for k, v in net.params.items()})
    assert net.loss(np.ones((3, 2)), np.array([0, 4, 2])) == pytest.approx(np.log(5), rel=1e-15)


def test_cross_entropy_is_finite_when_a_probability_underflows():
    """Logits (1e4, −1e4, 0) and label 1: softmax gives p₁ = 0 in floating point, but E = 2e4 exactly."""
    result = cross_entropy(np.array([[1e4, -1e4, 0.0]]), np.array([1]), ACTIVATIONS["identity"])
    assert result.loss == 2e4
    np.testing.assert_array_equal(result.dz, [[1.0, -1.0, 0.0]])

    net = manual.MLP([2, 3], loss="cross_entropy")
    net.load_state_dict({"layers.0.weight": [[1e4, 0], [-1e4, 0], [0, 0]], "layers.0.bias": [0, 0, 0]})
    loss, grads = net.loss_and_grads(np.array([[1.0, 0.0]]), np.array([1]))
    assert loss == 2e4
    assert all(np.all(np.isfinite(g)) for g in grads.values())


@pytest.mark.parametrize("loss", LOSSES)
def test_float32_network_keeps_float32(loss):
    net32 = manual.MLP([5, 4, 3], "tanh", loss, dtype=np.float32)
    net64 = manual.MLP([5, 4, 3], "tanh", loss, dtype=np.float64)
    X, y = kink_free_batch(net64, 6, seed=0)
    assert all(p.dtype == np.float32 for p in net32.params.values())
    assert net32.forward(X).dtype == np.float32
    loss32, grads32 = net32.loss_and_grads(X, y)
    loss64, grads64 = net64.loss_and_grads(X, y)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for key, g in grads32.items():
        assert g.dtype == np.float32
        assert max_rel_err(g, grads64[key]) <= 1e-5
    net32.load_state_dict(net64.state_dict())  # float64 values are cast on the way in
    assert net32.params["layers.0.weight"].dtype == np.float32


@pytest.mark.parametrize("init", INITS)
def test_same_seed_same_parameters_different_seed_different(init):
    a, b, c = (manual.MLP([4, 6, 3], init=init, seed=s) for s in (7, 7, 8))
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.params["layers.0.weight"], c.params["layers.0.weight"])


# ------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, message", [
    (dict(activation="sigmod"), "unknown activation 'sigmod'; valid activations: sigmoid, tanh, relu, leaky_relu"),
    (dict(loss="hinge"), "unknown loss 'hinge'; valid losses: mse, cross_entropy"),
    (dict(init="glorot"), "unknown init 'glorot'; valid inits: normal, xavier, he, pytorch"),
    (dict(dtype="float16"), "unsupported dtype 'float16'; valid dtypes: float32, float64"),
    (dict(dtype="f4"), "unsupported dtype 'f4'; valid dtypes: float32, float64"),  # names, as documented
    (dict(dtype="bogus"), "unsupported dtype 'bogus'; valid dtypes: float32, float64"),
])
def test_unknown_names_are_refused_with_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        manual.MLP([3, 2], **kwargs)


def test_unknown_optimizer_and_schedule_names_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; valid optimizers: SGD, Adagrad, RMSprop, Adam"):
        get_optimizer("adam")
    with pytest.raises(ValueError, match="unknown schedule 'ExponentialLR'; valid schedules: StepLR, Cosine"):
        get_scheduler("ExponentialLR")


@pytest.mark.parametrize("sizes, message", [
    ([784], "at least an input and an output size"),
    ([], "at least an input and an output size"),
    ([3, 0, 2], "must be positive integers"),
    ([3, -4, 2], "must be positive integers"),
    ([3, 2.5, 2], "must be positive integers"),
])
def test_bad_layer_sizes_are_refused(sizes, message):
    with pytest.raises(ValueError, match=message):
        manual.MLP(sizes)


@pytest.mark.parametrize("X, message", [
    (np.ones((2, 4)), "X has 4 features per row but the input layer has 3 units"),
    (np.ones(3), r"X must be a 2-D array \(batch, 3\)"),
    (np.array([[0.0, np.nan, 1.0]]), "^X contains NaN or infinite values$"),
    (np.array([[0.0, np.inf, 1.0]]), "^X contains NaN or infinite values$"),
    (np.ones((1, 3), dtype=np.complex128), "^X must be numeric, got dtype complex128$"),
    (np.array([["a", "b", "c"]]), "^X must be numeric, got dtype <U1$"),
    (np.zeros((0, 3)), r"^X is an empty batch \(shape \(0, 3\)\): give at least one row$"),
])
def test_bad_inputs_are_refused(X, message):
    net = manual.MLP([3, 2])
    with pytest.raises(ValueError, match=message):
        net.forward(X)
    with pytest.raises(ValueError, match=message):
        net.loss_and_grads(X, np.zeros(len(X), dtype=int))


def test_the_default_seed_is_0():
    default, zero, one = manual.MLP([5, 4, 3]), manual.MLP([5, 4, 3], seed=0), manual.MLP([5, 4, 3], seed=1)
    for name in zero.params:
        np.testing.assert_array_equal(default.params[name], zero.params[name])
    assert not np.array_equal(default.params["layers.0.weight"], one.params["layers.0.weight"])


@pytest.mark.parametrize("y, message", [
    ([0, 2], r"label 2 is outside \[0, 2\) for a network with 2 outputs"),
    ([-1, 0], r"label -1 is outside \[0, 2\)"),
    ([0.0, 1.0], "y must hold integer class indices"),
    ([0, 1, 1], r"y must be 2 integer class indices"),
])
def test_bad_labels_are_refused(y, message):
    net = manual.MLP([3, 2])
    with pytest.raises(ValueError, match=message):
        net.loss_and_grads(np.ones((2, 3)), np.array(y))


def test_bad_state_dicts_are_refused_naming_the_key_and_shapes():
    net = manual.MLP([3, 2])
    good = net.state_dict()
    with pytest.raises(ValueError, match=r"missing key\(s\) \['layers.0.bias'\]"):
        net.load_state_dict({"layers.0.weight": good["layers.0.weight"]})
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['layers.1.weight'\]"):
        net.load_state_dict({**good, "layers.1.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"state_dict\['layers.0.weight'\] has shape \(3, 2\) "
                                         r"but this network expects \(2, 3\)"):
        net.load_state_dict({**good, "layers.0.weight": good["layers.0.weight"].T})
    np.testing.assert_array_equal(net.params["layers.0.weight"], good["layers.0.weight"])  # untouched


def test_torch_ref_refuses_unknown_optimizer_and_schedule_names():
    net = torch_ref.MLP([3, 2])
    with pytest.raises(ValueError, match="unknown optimizer 'LBFGS'; valid optimizers: SGD"):
        torch_ref.make_optimizer("LBFGS", net.parameters(), lr=0.1)
    opt = torch_ref.make_optimizer("SGD", net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="unknown schedule 'OneCycleLR'; valid schedules: StepLR"):
        torch_ref.make_scheduler("OneCycleLR", opt)


@pytest.mark.parametrize("name, hyperparameters, message", [
    ("SGD", dict(lr=float("inf")), "lr (the learning rate) must be a finite number > 0, got inf"),
    ("Adam", dict(lr=0.1, weight_decay=float("nan")), "weight_decay must be a finite number ≥ 0, got nan"),
    ("SGD", dict(lr=0.1, momentum=-1.0), "momentum must be a finite number ≥ 0, got -1.0"),
    ("SGD", dict(lr=0.1, nesterov=True), "nesterov needs a momentum > 0 and dampening 0, got momentum 0.0 and "
                                         "dampening 0.0"),
    ("RMSprop", dict(lr=0.1, eps=-1e-8), "eps must be a finite number ≥ 0, got -1e-08"),
])
def test_torch_ref_optimizers_refuse_bad_hyperparameters_with_manuals_messages(name, hyperparameters, message):
    """The same value is refused by both sides in the same words (torch takes lr=inf and a NaN weight decay)."""
    net = torch_ref.MLP([3, 2])
    for make in (lambda: torch_ref.make_optimizer(name, net.parameters(), **hyperparameters),
                 lambda: manual.optim.get_optimizer(name)(manual.MLP([3, 2]).params, **hyperparameters)):
        with pytest.raises(ValueError) as error:
            make()
        assert str(error.value) == message


def test_torch_only_options_still_reach_torch():
    opt = torch_ref.make_optimizer("Adam", torch_ref.MLP([3, 2]).parameters(), lr=0.1, foreach=False)
    assert opt.defaults["foreach"] is False and opt.defaults["lr"] == 0.1


def test_predict_is_the_class_of_the_largest_output():
    """A hand-built 2-2 identity-like network: the class is the index of the larger input, row by row."""
    net = manual.MLP([2, 2], activation="identity", loss="cross_entropy")
    net.load_state_dict({"layers.0.weight": np.eye(2), "layers.0.bias": np.array([0.0, 0.5])})
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.6], [1.0, 0.4]])
    np.testing.assert_array_equal(net.predict(X), [0, 1, 1, 0])  # the bias moves the boundary to x1 = x0 − 0.5
    assert net.predict(X).dtype.kind == "i"


def test_a_torch_state_whose_tensors_require_grad_loads_into_manual():
    """``dict(model.named_parameters())`` (tensors that require grad) loads as the state dict does (it raised
    torch's "Can't call numpy() on Tensor that requires grad" after passing the checks)."""
    twin = torch_ref.MLP([3, 4, 2], seed=2)
    net = manual.MLP([3, 4, 2], seed=1)
    net.load_state_dict(dict(twin.named_parameters()))
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[key], value.numpy())


def test_a_float32_network_loads_float64_values_rounded_to_float32():
    source = manual.MLP([3, 4, 2], seed=3)
    net = manual.MLP([3, 4, 2], seed=4, dtype=np.float32)
    net.load_state_dict(source.state_dict())
    for key, value in source.state_dict().items():
        assert net.params[key].dtype == np.float32
        np.testing.assert_array_equal(net.params[key], value.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.complex128, bool, object])
def test_a_state_dict_of_complex_boolean_or_object_values_is_refused(dtype):
    net = manual.MLP([3, 2], seed=5)
    state = net.state_dict()
    bad = {**state, "layers.0.bias": np.ones(2, dtype=dtype)}
    with pytest.raises(ValueError) as error:
        net.load_state_dict(bad)
    assert str(error.value) == f"state_dict['layers.0.bias'] must hold real numbers, got dtype {np.dtype(dtype)}"
    np.testing.assert_array_equal(net.params["layers.0.bias"], state["layers.0.bias"])  # nothing assigned


def test_a_running_variance_of_exactly_zero_is_a_valid_state():
    """A feature constant over every batch seen has running variance 0: allowed; only a negative one is refused."""
    net = manual.MLP([3, 4, 2], batch_norm=True, seed=6)
    state = {**net.state_dict(), "norms.0.running_var": np.zeros(4)}
    net.load_state_dict(state)
    np.testing.assert_array_equal(net.buffers["norms.0.running_var"], np.zeros(4))
    with pytest.raises(ValueError, match=r"norms\.0\.running_var'\] has negative entries"):
        net.load_state_dict({**state, "norms.0.running_var": np.array([0.0, -1e-300, 0.0, 0.0])})


def test_a_mirror_without_hidden_layers_checks_and_casts_its_inputs():
    """784 → 10 with no hidden layer: one nn.Linear; its inputs are cast to that layer's dtype."""
    net = manual.MLP([4, 3], activation="identity", loss="cross_entropy", seed=7)
    twin = torch_ref.MLP([4, 3], activation="identity", loss="cross_entropy", seed=7)
    X = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    y = np.array([0, 2])
    assert twin.loss(torch.from_numpy(X), torch.from_numpy(y)).item() == pytest.approx(net.loss(X, y), rel=1e-12)
    assert twin(torch.from_numpy(X)).dtype == torch.float64
