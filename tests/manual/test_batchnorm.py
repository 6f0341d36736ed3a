"""Batch normalisation by hand (``manual.layers``, ``manual.MLP(batch_norm=True)``) against ``nn.BatchNorm1d``.

a. each layer's backward against centred finite differences of its forward (the CS231n convention);
b. the network's gradients in training mode against autograd and finite differences, several depths and
   batch sizes including 2; in eval mode against autograd;
c. eval mode equals ``nn.BatchNorm1d.eval()`` on a batch whose statistics differ from the running ones;
d. running estimates and ``num_batches_tracked`` after several steps equal torch's; 50 optimizer steps
   with several optimizers give the same trajectory;
e. state dicts exchange exactly, and bad ones are refused before anything is assigned;
f. a batch of 1 in training mode, an empty batch, bad inputs to the torch mirror: clear errors.
"""
import itertools
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

import manual
import torch_ref
from experiments.gradcheck import (autograd_loss_and_grads, centred_difference, fd_floor, fd_grads, kink_free_batch,
                                   max_rel_err, random_batch, torch_twin)
from manual import layers
from manual.optim import get_optimizer

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py

GRAD_TOL, FD_TOL, LOSS_TOL, TRAJECTORY_TOL = 1e-10, 1e-6, 1e-12, 1e-8
FLOOR = 1e-4  # gradcheck.GRAD_FLOOR: entries below 1e-4 × the largest gradient are compared in absolute terms


def assert_close_to_autograd(grads: dict, auto: dict, tol: float = GRAD_TOL) -> None:
    assert grads.keys() == auto.keys()
    floor = FLOOR * max(np.abs(g).max() for g in grads.values())
    for key, g in grads.items():
        assert max_rel_err(g, auto[key], floor) <= tol, f"{key}: {max_rel_err(g, auto[key], floor):.2e}"


def as_numpy(value) -> np.ndarray:
    return value.detach().numpy().copy() if isinstance(value, torch.Tensor) else np.array(value)


def bn_net(sizes, activation="tanh", loss="cross_entropy", seed=0, **kwargs) -> manual.MLP:
    return manual.MLP(sizes, activation, loss, init="pytorch", seed=seed, batch_norm=True, **kwargs)


# ------------------------------------------------------------------------ a. the layers alone
def numeric_input_grads(forward, inputs: dict, dout: np.ndarray) -> dict:
    """∂(Σ out·dout)/∂input by centred differences, every element of every input (float64)."""
    grads = {}
    for name, value in inputs.items():
        g = np.empty_like(value)
        for idx in np.ndindex(value.shape):
            def f(v, name=name, idx=idx):
                moved = {k: a.copy() for k, a in inputs.items()}
                moved[name][idx] = v
                return float(np.sum(forward(**moved)[0] * dout))
            g[idx] = centred_difference(f, value[idx])
        grads[name] = g
    return grads


def layer_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4)) * 3 + 1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    stats = dict(running_mean=rng.standard_normal(4), running_var=rng.random(4) + 0.5)
    return {
        "linear": (layers.linear_forward, layers.linear_backward,
                   dict(x=x, W=rng.standard_normal((3, 4)), b=rng.standard_normal(3))),
        "activation": (partial(layers.activation_forward, activation=manual.ACTIVATIONS["tanh"]),
                       layers.activation_backward, dict(x=x)),
        "batchnorm train": (partial(layers.batchnorm_forward, training=True), layers.batchnorm_backward,
                            dict(x=x, gamma=gamma, beta=beta)),
        "batchnorm train, batch 2": (partial(layers.batchnorm_forward, training=True), layers.batchnorm_backward,
                                     dict(x=x[:2], gamma=gamma, beta=beta)),
        "batchnorm eval": (partial(layers.batchnorm_forward, training=False, **stats), layers.batchnorm_backward,
                           dict(x=x, gamma=gamma, beta=beta)),
    }


@pytest.mark.parametrize("case", list(layer_cases()))
def test_each_layer_backward_equals_finite_differences_of_its_forward(case):
    forward, backward, inputs = layer_cases()[case]
    out, cache = forward(**inputs)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    grads = backward(dout, cache)
    numeric = numeric_input_grads(forward, inputs, dout)
    assert grads.keys() == inputs.keys()  # a gradient for every array input, under its name
    # as for networks, entries below 1e-4·max(1, |Σ out·dout|) are compared in absolute terms: with a batch of 2,
    # x̂ = ±1 whatever x is (up to ε), so ∂/∂x is tiny and its finite difference mostly rounding noise
    floor = fd_floor(float(np.sum(out * dout)))
    for name, g in grads.items():
        assert g.shape == inputs[name].shape
        err = max_rel_err(g, numeric[name], floor)
        assert err <= FD_TOL, f"{case} {name}: {err:.2e}"


def test_batchnorm_training_output_is_normalised_and_the_input_gradient_sums_to_zero():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 3)) * [1, 10, 0.1] + [5, -3, 0]
    out, cache = layers.batchnorm_forward(x, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-5), rtol=1e-12)
    dx = layers.batchnorm_backward(rng.standard_normal(x.shape), cache)["x"]
    np.testing.assert_allclose(dx.sum(axis=0), 0, atol=1e-12)  # shifting every row changes nothing


def test_batchnorm_running_estimates_follow_torch_convention():
    """momentum 0.1, biased variance in the output, unbiased (× B/(B−1)) in the running estimate, count + 1."""
    x = np.random.default_rng(3).standard_normal((6, 4)) * 2 + 1
    mean, var, count = np.zeros(4), np.ones(4), np.zeros((), dtype=np.int64)
    layers.batchnorm_forward(x, np.ones(4), np.zeros(4), running_mean=mean, running_var=var,
                             num_batches_tracked=count)
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=0, ddof=1), rtol=1e-14)
    assert count == 1


# -------------------------------------------------------------- b. the network's gradients
NETWORKS = [  # (layer sizes, activation, loss)
    ([4, 5, 3], "tanh", "cross_entropy"),
    ([4, 5, 6, 3], "sigmoid", "mse"),
    ([4, 3, 5, 4, 3], "relu", "cross_entropy"),
    ([4, 5, 5, 3], "gelu", "mse"),
]


@pytest.mark.parametrize("batch", [2, 3, 8])
@pytest.mark.parametrize("sizes, activation, loss", NETWORKS, ids=lambda v: "-".join(map(str, v)) if
                         isinstance(v, list) else v)
def test_training_mode_gradients_equal_autograd_and_finite_differences(sizes, activation, loss, batch):
    net = bn_net(sizes, activation, loss, seed=batch)
    X, y = kink_free_batch(net, batch, seed=batch)
    value, grads = net.loss_and_grads(X, y)
    assert any(k.startswith("norms.") for k in grads)
    tnet = torch_twin(net)
    tvalue, auto = autograd_loss_and_grads(tnet, X, y)
    assert value == pytest.approx(tvalue, rel=LOSS_TOL, abs=LOSS_TOL)
    assert list(grads) == [k for k, _ in tnet.named_parameters()]  # torch's names, in torch's order
    assert_close_to_autograd(grads, auto)
    fd = fd_grads(net, X, y)
    for key, g in grads.items():
        assert max_rel_err(g, fd[key], fd_floor(value)) <= FD_TOL, key


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_gradients_equal_autograd_in_both_modes_after_training(depth):
    """After some steps γ, β and the running estimates are far from their initial values; eval mode too."""
    net = bn_net([4] + [5] * depth + [3], "swish", "cross_entropy", seed=depth)
    X, y = random_batch(net, 16, seed=depth)
    opt = manual.optim.Adam(net.params, lr=0.05)
    for _ in range(10):
        opt.step(net.loss_and_grads(X * 2 + 1, y)[1])  # running estimates of shifted data
    for mode in (True, False):
        net.train(mode)
        tnet = torch_twin(net)
        assert tnet.training is mode
        loss, grads = net.loss_and_grads(X, y)
        tloss, auto = autograd_loss_and_grads(tnet, X, y)
        assert loss == pytest.approx(tloss, rel=LOSS_TOL)
        assert_close_to_autograd(grads, auto)


# ------------------------------------------------------------------------- c. eval mode
def test_eval_mode_equals_torch_batchnorm1d_eval_on_a_batch_unlike_the_running_statistics():
    rng = np.random.default_rng(4)
    bn = nn.BatchNorm1d(5, dtype=torch.float64)
    mean, var, count = np.zeros(5), np.ones(5), np.zeros((), dtype=np.int64)
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
    for _ in range(7):  # running estimates of N(0, 1) data
        x = rng.standard_normal((10, 5))
        bn(torch.from_numpy(x))
        layers.batchnorm_forward(x, gamma, beta, running_mean=mean, running_var=var, num_batches_tracked=count)
    np.testing.assert_allclose(mean, bn.running_mean.numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(var, bn.running_var.numpy(), rtol=1e-13)
    assert count == bn.num_batches_tracked.item() == 7
    bn.eval()
    x = rng.standard_normal((6, 5)) * 5 + 3  # far from the running statistics
    ours, _ = layers.batchnorm_forward(x, gamma, beta, training=False, running_mean=mean, running_var=var)
    theirs = bn(torch.from_numpy(x)).detach().numpy()
    assert max_rel_err(ours, theirs) <= 1e-14
    batch_stats, _ = layers.batchnorm_forward(x, gamma, beta)
    assert max_rel_err(ours, batch_stats) > 0.1  # the test means something: the two modes differ here


def test_network_eval_mode_equals_torch_and_leaves_running_estimates_alone():
    net = bn_net([4, 6, 6, 3], "relu", "mse", seed=5)
    X, y = random_batch(net, 12, seed=5)
    for _ in range(4):
        net.loss_and_grads(X, y)  # training mode: updates the running estimates
    tnet = torch_twin(net)
    net.eval()
    tnet.eval()
    before = net.state_dict()
    X_new = X * 3 - 2
    np.testing.assert_allclose(net.forward(X_new), tnet(torch.from_numpy(X_new)).detach().numpy(), rtol=1e-12)
    single = X_new[:1]  # a single row is fine in eval mode
    np.testing.assert_allclose(net.forward(single), net.forward(X_new)[:1], rtol=1e-13)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert net.train() is net and net.training


# ----------------------------------------------------------- d. running estimates, trajectories
TRAJECTORY_OPTIMIZERS = [
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("Adam", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.005, momentum=0.5)),
    ("Adagrad", dict(lr=0.05)),
]


@pytest.mark.parametrize("optimizer", TRAJECTORY_OPTIMIZERS, ids=lambda o: f"{o[0]}-{len(o[1])}")
def test_fifty_steps_equal_torch_including_running_estimates(optimizer):
    """50 steps on the same mini-batches, each side with its own optimizer; losses and full state dicts agree."""
    name, kwargs = optimizer
    rng = np.random.default_rng(6)
    X = rng.standard_normal((64, 6)) * 2 + 0.5
    y = (X @ rng.standard_normal((6, 4))).argmax(axis=1)
    net = bn_net([6, 5, 5, 4], "tanh", "cross_entropy", seed=6)
    tnet = torch_twin(net)
    opt = get_optimizer(name)(net.params, **kwargs)
    topt = torch_ref.make_optimizer(name, tnet.parameters(), **kwargs)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    losses, tlosses = [], []
    for step in range(50):
        idx = np.random.default_rng([6, step]).choice(64, size=8, replace=False)
        loss, grads = net.loss_and_grads(X[idx], y[idx])
        opt.step(grads)
        topt.zero_grad()
        tloss = tnet.loss(Xt[idx], yt[idx])
        tloss.backward()
        topt.step()
        losses.append(loss)
        tlosses.append(tloss.item())
    assert np.mean(losses[-10:]) < np.mean(losses[:10])  # it learned
    np.testing.assert_allclose(losses, tlosses, rtol=TRAJECTORY_TOL)
    tstate = tnet.state_dict()
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert value == tstate[key].item() == 50
        else:
            assert max_rel_err(value, tstate[key].numpy()) <= TRAJECTORY_TOL, key
    net.eval()
    tnet.eval()
    np.testing.assert_allclose(net.forward(X), tnet(Xt).detach().numpy(), rtol=TRAJECTORY_TOL)


# --------------------------------------------------------------------- e. state dicts
def test_state_dicts_have_torch_keys_and_exchange_exactly_both_ways():
    net = bn_net([4, 5, 6, 3], seed=7)
    X, y = random_batch(net, 6, seed=7)
    manual.optim.SGD(net.params, lr=0.3).step(net.loss_and_grads(X, y)[1])
    tnet = torch_ref.MLP([4, 5, 6, 3], "tanh", "cross_entropy", batch_norm=True)
    assert list(net.state_dict()) == list(tnet.state_dict())
    assert "layers.0.bias" not in net.state_dict() and "layers.2.bias" in net.state_dict()
    tnet.load_state_dict(torch_ref.to_torch_state(net.state_dict()))
    back = bn_net([4, 5, 6, 3], seed=99)
    back.load_state_dict(torch_ref.to_numpy_state(tnet.state_dict()))
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[key], value)
        assert back.state_dict()[key].dtype == value.dtype
    assert back.buffers["norms.0.num_batches_tracked"] == 1
    assert back.buffers["norms.0.num_batches_tracked"].dtype == np.int64


def test_without_batch_norm_the_keys_are_unchanged():
    keys = ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert list(manual.MLP([3, 4, 2]).state_dict()) == list(torch_ref.MLP([3, 4, 2]).state_dict()) == keys
    assert manual.MLP([3, 4, 2]).buffers == {}


def test_same_seed_gives_the_same_weights_with_and_without_batch_norm():
    plain, normed = manual.MLP([4, 5, 3], init="pytorch", seed=8), bn_net([4, 5, 3], seed=8)
    for key, value in normed.params.items():
        if key.startswith("layers."):
            np.testing.assert_array_equal(value, plain.params[key])


@pytest.mark.parametrize("change, message", [
    ({"norms.0.running_var": np.array([1.0, -1.0, 1.0, 1.0, 1.0])}, "running_var.*negative"),
    ({"norms.0.running_mean": np.array([0.0, np.nan, 0.0, 0.0, 0.0])}, r"running_mean'\] contains NaN"),
    ({"layers.1.weight": np.full((6, 5), np.inf)}, r"layers.1.weight'\] contains NaN or infinite"),
    ({"norms.1.num_batches_tracked": np.array(-1)}, "non-negative integer count"),
    ({"norms.1.num_batches_tracked": np.array(2.5)}, "non-negative integer count"),
    ({"norms.1.weight": np.array(["a"] * 6)}, "must hold real numbers"),
])
@pytest.mark.parametrize("side", ["manual", "torch"])
def test_bad_state_dict_values_are_refused_before_anything_is_assigned(change, message, side):
    net = bn_net([4, 5, 6, 3], seed=9)
    good = bn_net([4, 5, 6, 3], seed=10).state_dict()  # different values: a partial load would show
    bad = {**good, **change}
    target = net if side == "manual" else torch_twin(net)
    before = {k: as_numpy(v) for k, v in target.state_dict().items()}
    if side == "torch":
        bad = {k: v if v.dtype.kind == "U" else torch.as_tensor(v) for k, v in bad.items()}
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(bad)
    for key, value in target.state_dict().items():
        np.testing.assert_array_equal(as_numpy(value), before[key])


def test_float32_batch_norm_network_stays_float32():
    net = bn_net([4, 5, 3], dtype=np.float32)
    net64 = bn_net([4, 5, 3])
    X, y = random_batch(net64, 6, seed=11)
    loss, grads = net.loss_and_grads(X, y)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(b.dtype == np.float32 for k, b in net.buffers.items() if "running" in k)
    assert loss == pytest.approx(net64.loss(X, y), rel=1e-5)


# ------------------------------------------------------------------------------ f. errors
ONE_ROW = ("batch normalisation in training mode needs at least 2 rows per batch, got 1 (the variance of one "
           "value is 0; PyTorch refuses it too): use a larger batch, or eval mode for single rows")


def test_a_batch_of_one_in_training_mode_is_the_same_clear_error_on_both_sides():
    net = bn_net([4, 5, 3])
    X, y = random_batch(net, 1, seed=12)
    twin = torch_twin(net)
    for attempt in (lambda: net.loss_and_grads(X, y), lambda: twin.loss(torch.from_numpy(X), torch.from_numpy(y)),
                    lambda: twin.pre_activations(torch.from_numpy(X))):
        with pytest.raises(ValueError) as error:
            attempt()
        assert str(error.value) == ONE_ROW  # the whole message (torch's own would be "Expected more than 1 value ...")
    net.eval(), twin.eval()
    assert np.isfinite(net.loss(X, y))
    assert twin.loss(torch.from_numpy(X), torch.from_numpy(y)).item() == pytest.approx(net.loss(X, y), rel=1e-12)


@pytest.mark.parametrize("running", ["running_mean", "running_var", "both"])
def test_eval_mode_without_running_estimates_is_a_clear_error(running):
    x, gamma, beta = np.ones((3, 2)), np.ones(2), np.zeros(2)
    given = {"running_mean": np.zeros(2), "running_var": np.ones(2)}
    for name in (("running_mean", "running_var") if running == "both" else (running,)):
        del given[name]
    with pytest.raises(ValueError) as error:
        manual.layers.batchnorm_forward(x, gamma, beta, training=False, **given)
    assert str(error.value) == "batch normalisation in eval mode needs running_mean and running_var"


@pytest.mark.parametrize("X, y, message", [
    (np.ones((0, 4)), np.zeros(0, dtype=int), r"X is an empty batch \(shape \(0, 4\)\)"),
    (np.ones((2, 5)), np.zeros(2, dtype=int), "X has 5 features per row but the input layer has 4 units"),
    (np.ones(4), np.zeros(1, dtype=int), r"X must be a 2-D array \(batch, 4\)"),
    (np.array([[0, np.nan, 0, 0]]), np.zeros(1, dtype=int), "X contains NaN or infinite values"),
    (np.array([["a"] * 4]), np.zeros(1, dtype=int), "X must be numeric"),
    (np.ones((2, 4)), np.array([0, 3]), r"label 3 is outside \[0, 3\) for a network with 3 outputs"),
    (np.ones((2, 4)), np.array([-1, 0]), r"label -1 is outside \[0, 3\)"),
    (np.ones((2, 4)), np.array([0.0, 1.0]), "y must hold integer class indices, got dtype float64"),
    (np.ones((2, 4)), np.array([0, 1, 2]), r"y must be 2 integer class indices"),
])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_manual_and_torch_refuse_bad_inputs_with_the_same_message(X, y, message, batch_norm):
    net = manual.MLP([4, 5, 3], batch_norm=batch_norm).eval()
    tnet = torch_ref.MLP([4, 5, 3], batch_norm=batch_norm).eval()
    for loss in (net.loss, net.loss_and_grads, tnet.loss):
        with pytest.raises(ValueError, match=message):
            loss(X, y)
    if X.dtype.kind != "U":  # and as tensors
        with pytest.raises(ValueError, match=message):
            tnet.loss(torch.from_numpy(X), torch.from_numpy(y))


def test_torch_mirror_casts_inputs_like_manual():
    net, tnet = manual.MLP([4, 5, 3], seed=13), torch_ref.MLP([4, 5, 3], seed=13)
    X = np.arange(8, dtype=np.float32).reshape(2, 4) / 8  # float32 into a float64 network: cast, as manual does
    y = np.array([0, 2], dtype=np.int32)
    assert tnet.loss(torch.from_numpy(X), torch.from_numpy(y)).item() == pytest.approx(net.loss(X, y), rel=1e-12)
    assert tnet.loss(X, y).item() == pytest.approx(net.loss(X, y), rel=1e-12)  # NumPy arrays are accepted too


def test_mismatched_batch_norm_specs_are_refused():
    with pytest.raises(ValueError, match="differ in spec.*'batch_norm': \\(True, False\\)"):
        torch_ref.check_same_spec(bn_net([4, 5, 3]), torch_ref.MLP([4, 5, 3], "tanh", "cross_entropy"))


def test_every_combination_of_modes_and_depths_builds_consistent_layers():
    """linear → batch norm → activation per hidden layer, then the output linear layer; nothing else."""
    for depth, batch_norm in itertools.product((0, 1, 3), (False, True)):
        net = manual.MLP([4] + [5] * depth + [3], batch_norm=batch_norm)
        kinds = [type(layer).__name__ for layer in net.layers]
        hidden = ["Linear", "BatchNorm", "Activation"] if batch_norm else ["Linear", "Activation"]
        assert kinds == hidden * depth + ["Linear"]
        assert net.n_params == sum(p.numel() for p in torch_ref.MLP([4] + [5] * depth + [3],
                                                                     batch_norm=batch_norm).parameters())
