"""``manual.nn`` against ``torch.nn``: state-dict keys and shapes, exchange both ways, every module's backward, the
architecture as data built identically by both backends, and the committed results' run keys unchanged."""
from __future__ import annotations

import dataclasses
import glob
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import manual
import manual.nn as mnn
import torch_ref
from manual.activations import ACTIVATIONS
from manual.init import INITS
from manual.losses import Loss, cross_entropy
from manual.nn import arch
from manual.nn.activation import CLASSES, TORCH_ACTIVATIONS, activation_module

from experiments.config import RunConfig
from experiments.data import MNIST, Split, load_mnist
from experiments.gradcheck.modules import check_modules
from experiments.runs import stacked, training
from tests.helpers import message

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_issues_example_has_torchs_keys_and_shapes():
    model = mnn.Sequential(mnn.Linear(4, 3), mnn.ReLU(), mnn.Linear(3, 2))
    theirs = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


def every_layer_type() -> mnn.Sequential:
    """Every module of this part of manual.nn in one network: (B, 12) → 4 classes."""
    acts = [cls() for cls in CLASSES.values()]
    return mnn.Sequential(mnn.Unflatten((3, 4)), mnn.Flatten(), mnn.Linear(12, 6, bias=False), mnn.BatchNorm1d(6),
                          *acts, mnn.Linear(6, 4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keys_shapes_and_values_move_both_ways_exactly(dtype):
    model = every_layer_type().to(dtype)
    twin = torch_ref.mirror(model)
    assert [type(m).__name__ for m in twin] == ["Unflatten", "Flatten", "Linear", "BatchNorm1d", "Sigmoid", "Tanh",
                                                "ReLU", "LeakyReLU", "ELU", "SiLU", "GELU", "Softplus", "Identity",
                                                "Linear"]
    theirs = twin.state_dict()
    assert list(theirs) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert theirs[k].numpy().dtype == v.dtype and np.array_equal(theirs[k].numpy(), v), k
    with torch.no_grad():  # torch → manual: new values arrive bit for bit
        for p in twin.parameters():
            p.add_(torch.rand_like(p))
        twin[3].running_var.mul_(2.5)
        twin[3].num_batches_tracked.add_(7)
    model.load_state_dict(torch_ref.to_numpy_state(twin.state_dict()))
    for k, v in twin.state_dict().items():
        assert np.array_equal(model.state_dict()[k], v.numpy()), k
    assert model.state_dict()["3.num_batches_tracked"].dtype == np.int64


def test_outputs_and_every_gradient_agree_with_autograd_to_float64_rounding():
    model = every_layer_type()
    twin = torch_ref.mirror(model)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((7, 12)), rng.integers(0, 4, 7)
    for loss in ("cross_entropy", "mse"):
        value, grads = mnn.loss_and_grads(model, X, y, loss)
        twin.zero_grad()
        theirs = torch_ref.Criterion(loss)(twin(torch.from_numpy(X)), torch.from_numpy(y))
        theirs.backward()
        assert value == pytest.approx(theirs.item(), rel=1e-13)
        for k, p in twin.named_parameters():
            scale = max(np.abs(grads[k]).max(), 1e-300)
            assert np.abs(grads[k] - p.grad.numpy()).max() <= 1e-11 * scale, k


def test_every_modules_backward_passes_finite_differences_and_autograd_element_by_element():
    model = every_layer_type()
    X = np.random.default_rng(2).standard_normal((5, 12)) + 0.5  # clear of ReLU's kink with this seed
    checks = check_modules(model, X)
    assert len(checks) == len(model)
    for check in checks:
        assert check.report.passed, str(check.report)


def test_a_wrong_backward_is_located_element_by_element():
    class BrokenLinear(mnn.Linear):
        def backward(self, dout, input_grad=True):
            dx = super().backward(dout, input_grad)
            self.grads["weight"] = self.grads["weight"].copy()
            self.grads["weight"][1, 2] *= 1.5  # one wrong element
            return dx

    model = mnn.Sequential(BrokenLinear(3, 2))
    (check,) = check_modules(model, np.random.default_rng(0).standard_normal((4, 3)))
    assert not check.report.passed
    failures = check.report.failures
    assert set(failures["input"]) == {"weight"} and {tuple(i) for i in failures["index"]} == {(1, 2)}
    assert "weight[1, 2]" in str(check.report)


def test_the_short_form_builds_the_very_network_manual_mlp_builds():
    for batch_norm in (False, True):
        mlp = manual.MLP([6, 5, 4, 3], "tanh", "cross_entropy", "xavier", seed=4, batch_norm=batch_norm)
        model = mnn.build(mnn.expand([6, 5, 4, 3], "tanh", batch_norm), 6, init="xavier", seed=4)
        linears = [m for m in model if isinstance(m, mnn.Linear)]
        for i, linear in enumerate(linears):
            assert np.array_equal(linear.weight, mlp.params[f"layers.{i}.weight"])
        X, y = np.random.default_rng(0).standard_normal((5, 6)), np.array([0, 1, 2, 1, 0])
        assert mnn.loss_and_grads(model, X, y, "cross_entropy")[0] == mlp.loss_and_grads(X, y)[0]


def test_both_backends_build_the_same_network_from_data():
    layers = ["unflatten 2 3", "flatten", "linear 5", "activation", "linear 4 bias=false", "batchnorm", "gelu",
              "linear 3"]
    for dtype in ("float32", "float64"):
        mine = mnn.build(layers, 6, activation="elu", init="he", seed=3, dtype=dtype)
        theirs = torch_ref.build(layers, 6, activation="elu", init="he", seed=3, dtype=dtype)
        assert list(mine.state_dict()) == list(theirs.state_dict())
        for k, v in theirs.state_dict().items():
            assert np.array_equal(v.numpy(), mine.state_dict()[k]), k
        assert isinstance(theirs[3], nn.ELU) and isinstance(theirs[6], nn.GELU)


@pytest.mark.parametrize("layers, message", [
    (["linear 5", "conv2d 3"], "layers[1] 'conv2d 3': unknown layer kind 'conv2d'"),
    (["unflatten 2 3", "linear 5"], "layers[1] 'linear 5': a linear layer takes a flat vector of features, gets "
                                    "shape (2, 3): put 'flatten' before it"),
    (["linear 5", "relu 3"], "layers[1] 'relu 3': an activation takes no arguments"),
    (["linear 5 bias=false 3"], "layers[0] 'linear 5 bias=false 3': positional argument '3' after an option"),
    (["unflatten 4 2"], "layers[0] 'unflatten 4 2': needs 8 features per example to make (4, 2), gets shape (6,)"),
    (["avgpool 2"], "layers[0] 'avgpool 2': average pooling takes (channels, height, width) images, gets shape (6,): "
                    "put 'unflatten C H W' before it"),
    ("linear 5", "layers must be a non-empty list of layer strings"),
])
def test_a_bad_architecture_is_one_line_naming_the_layer(layers, message):
    with pytest.raises(ValueError) as error:
        mnn.build(layers, 6)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_run_configs_describe_a_network_as_data():
    config = RunConfig(layers=["linear 32", "activation", "linear 10"], activation="tanh")
    assert config.architecture() == ("linear 32", "activation", "linear 10")
    assert RunConfig().architecture() == ("linear 128", "activation", "linear 128", "activation", "linear 10")
    assert RunConfig(batch_norm=True, layer_sizes=(784, 8, 10)).architecture() == \
        ("linear 8 bias=false", "batchnorm", "activation", "linear 10")
    assert config.key() != dataclasses.replace(config, layers=("linear 33", "activation", "linear 10")).key()
    for bad, message in [(dict(layers=["linear 32", "relu"]), "layers end in shape (32,) per image; MNIST needs 10"),
                         (dict(layers=["linear 10"], batch_norm=True), "batch_norm belongs to the short form"),
                         (dict(layers=["linear 10"], layer_sizes=(784, 5, 10)), "give layers or layer_sizes"),
                         (dict(layers=["batchnorm", "linear 10"], batch_size=1), "batch_norm with batch_size 1")]:
        with pytest.raises(ValueError) as error:
            RunConfig(**bad)
        assert str(error.value).startswith(message)


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
def test_a_pool_written_as_data_keeps_its_stride_as_torchs_pool_does(kind):
    model = mnn.build(["unflatten 2 6 7", f"{kind} 3 stride=2"], 84)
    theirs = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d}[kind](3, stride=2)
    x = np.random.default_rng(0).standard_normal((4, 84))
    want = theirs(torch.from_numpy(x).reshape(4, 2, 6, 7)).numpy()
    assert model.output_shape((84,)) == want.shape[1:]
    np.testing.assert_allclose(model.forward(x), want, rtol=1e-15)


# ------------------------------------------------------------------------ what each layer says, keeps and returns
@pytest.mark.parametrize("layer, x_shape, message", [
    (mnn.Conv2d(3, 4, 3), (2, 2, 5, 6),
     "Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1)) takes (batch, 3, height, width) inputs, got shape (2, 2, 5, 6)"),
    (mnn.Conv2d(3, 4, 3), (2, 3, 5),
     "Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1)) takes (batch, 3, height, width) inputs, got shape (2, 3, 5)"),
    (mnn.MaxPool2d(2), (3, 5, 6),
     "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)) takes (batch, C, height, width) inputs, got shape "
     "(3, 5, 6)"),
    (mnn.AvgPool2d(2), (3, 5, 6),
     "AvgPool2d(kernel_size=(2, 2), stride=(2, 2)) takes (batch, C, height, width) inputs, got shape (3, 5, 6)"),
    (mnn.BatchNorm2d(3), (2, 4, 5, 6), "BatchNorm2d(3) takes (batch, 3, height, width) inputs, got shape (2, 4, 5, 6)"),
    (mnn.BatchNorm2d(3), (2, 3, 5), "BatchNorm2d(3) takes (batch, 3, height, width) inputs, got shape (2, 3, 5)"),
    (mnn.BatchNorm1d(4), (2, 5), "BatchNorm1d(4) takes (batch, 4) inputs, got shape (2, 5)"),
    (mnn.BatchNorm1d(4), (2, 4, 3), "BatchNorm1d(4) takes (batch, 4) inputs, got shape (2, 4, 3)"),
    (mnn.Unflatten((2, 3)), (4, 5), "Unflatten(2, 3) takes (batch, 6) inputs, got shape (4, 5)"),
    (mnn.Unflatten((2, 3)), (4, 6, 1), "Unflatten(2, 3) takes (batch, 6) inputs, got shape (4, 6, 1)"),
])
def test_an_input_of_the_wrong_shape_is_an_error_naming_the_layer_and_both_shapes(layer, x_shape, message):
    with pytest.raises(ValueError) as error:
        layer.forward(np.zeros(x_shape))
    assert str(error.value) == message


@pytest.mark.parametrize("layer, input_shape, message", [
    (mnn.BatchNorm1d(4), (5,), "normalises 4 features, gets shape (5,)"),
    (mnn.BatchNorm2d(3), (4, 5, 6), "BatchNorm2d(3) takes 3 input channel(s), gets shape (4, 5, 6)"),
    (mnn.BatchNorm2d(3), (3, 5), "BatchNorm2d(3) takes (channels, height, width) images, gets shape (3, 5)"),
])
def test_a_per_example_shape_that_does_not_fit_is_an_error_naming_both(layer, input_shape, message):
    with pytest.raises(ValueError) as error:
        layer.output_shape(input_shape)
    assert str(error.value) == message


@pytest.mark.torch
@pytest.mark.parametrize("x_shape", [(1, 3, 2, 1), (1, 3, 1, 2), (2, 3, 1, 1)])
def test_batchnorm2d_trains_on_two_values_per_channel_as_torch_does_and_refuses_one(x_shape):
    mine, theirs = mnn.BatchNorm2d(3), nn.BatchNorm2d(3, dtype=torch.float64)
    x = np.random.default_rng(3).standard_normal(x_shape)
    np.testing.assert_allclose(mine.forward(x), theirs(torch.from_numpy(x)).detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(mine.running_var, theirs.running_var.numpy(), rtol=1e-14)
    one = x[:1, :, :1, :1]
    with pytest.raises(ValueError, match="more than one value per channel"):
        mine.forward(one)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        theirs(torch.from_numpy(one))


@pytest.mark.torch
@pytest.mark.parametrize("cls, x_shape", [("BatchNorm1d", (6, 4)), ("BatchNorm2d", (3, 4, 2, 3))])
def test_batch_norm_uses_the_eps_and_momentum_it_was_given_as_torchs(cls, x_shape):
    mine = getattr(mnn, cls)(4, eps=0.5, momentum=0.7)
    theirs = getattr(nn, cls)(4, eps=0.5, momentum=0.7, dtype=torch.float64)
    rng = np.random.default_rng(4)
    for training in (True, False):
        mine.train(training), theirs.train(training)
        x = rng.standard_normal(x_shape)
        np.testing.assert_allclose(mine.forward(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-13)
        np.testing.assert_allclose(mine.running_mean, theirs.running_mean.numpy(), rtol=1e-14)
        np.testing.assert_allclose(mine.running_var, theirs.running_var.numpy(), rtol=1e-14)


@pytest.mark.torch
@pytest.mark.parametrize("cls, x_shape", [("BatchNorm1d", (6, 4)), ("BatchNorm2d", (3, 4, 2, 3))])
def test_batch_norm_built_in_float32_is_torchs_default_and_stays_float32(cls, x_shape):
    mine, theirs = getattr(mnn, cls)(4, dtype=np.float32), getattr(nn, cls)(4)
    assert (mine.eps, mine.momentum) == (theirs.eps, theirs.momentum)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        assert mine.state_dict()[k].dtype == v.numpy().dtype and np.array_equal(mine.state_dict()[k], v.numpy()), k
    out = mine.forward(np.random.default_rng(5).standard_normal(x_shape).astype(np.float32))
    dx = mine.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == np.float32 and all(g.dtype == np.float32 for g in mine.grads.values())


@pytest.mark.parametrize("layer, x_shape", [(mnn.Flatten(), (2, 3, 4, 5)), (mnn.Unflatten((3, 4)), (2, 12)),
                                            (mnn.MaxPool2d(2), (2, 3, 4, 6)), (mnn.AvgPool2d(2), (2, 3, 4, 6)),
                                            (mnn.Tanh(), (2, 3))])
def test_a_layer_without_parameters_returns_the_input_gradient_unless_told_not_to(layer, x_shape):
    rng = np.random.default_rng(6)
    out = layer.forward(rng.standard_normal(x_shape))
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)  # input_grad defaults to True
    assert dx.shape == x_shape and np.array_equal(dx, layer.backward(dout, input_grad=True))
    assert layer.backward(dout, input_grad=False) is None and layer.grads == {}


@pytest.mark.parametrize("layer, x_shape", [(mnn.BatchNorm1d(3), (4, 3)), (mnn.BatchNorm2d(3), (4, 3, 2, 2))])
def test_batch_norm_gives_its_parameter_gradients_and_the_input_gradient_unless_told_not_to(layer, x_shape):
    rng = np.random.default_rng(6)
    out = layer.forward(rng.standard_normal(x_shape))
    dout = rng.standard_normal(out.shape)
    dx, grads = layer.backward(dout), dict(layer.grads)  # input_grad defaults to True
    assert dx.shape == x_shape and np.array_equal(dx, layer.backward(dout, input_grad=True))
    assert layer.backward(dout, input_grad=False) is None
    assert all(np.array_equal(layer.grads[k], grads[k]) for k in ("weight", "bias"))


@pytest.mark.parametrize("layer, x_shape, out_shape", [(mnn.Flatten(), (2, 3, 4, 5), (2, 60)),
                                                       (mnn.Unflatten((3, 4)), (2, 12), (2, 3, 4))])
def test_flatten_and_unflatten_move_values_and_gradients_without_reordering_them(layer, x_shape, out_shape):
    x = np.arange(math.prod(x_shape), dtype=np.float32).reshape(x_shape)
    out = layer.forward(x)
    assert out.shape == out_shape and out.dtype == np.float32 and np.array_equal(out.ravel(), x.ravel())
    assert layer.output_shape(x_shape[1:]) == out_shape[1:]
    dx = layer.backward(out)
    assert dx.shape == x_shape and np.array_equal(dx, x)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "swish", "identity"])
def test_an_activation_without_arguments_prints_as_torchs(name):
    torch_class, kwargs = TORCH_ACTIVATIONS[name]
    assert repr(activation_module(name)) == repr(getattr(nn, torch_class)(**kwargs))


@pytest.mark.torch
@pytest.mark.parametrize("name", CLASSES)
def test_each_activation_class_is_its_registered_activation_and_computes_torchs(name):
    module, (torch_class, kwargs) = CLASSES[name](), TORCH_ACTIVATIONS[name]
    assert module.name == name and module.torch_spec() == (torch_class, kwargs)
    x = np.linspace(-30, 30, 121)
    expected = getattr(nn, torch_class)(**kwargs)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(module.forward(x), expected, rtol=1e-12, atol=1e-15)


def test_gelu_refuses_the_erf_form_it_does_not_derive():
    with pytest.raises(ValueError, match=r"^manual.nn.GELU derives only approximate='tanh' by hand, got 'none'$"):
        mnn.GELU(approximate="none")


def test_an_activation_by_name_prints_its_name():
    assert repr(mnn.Activation("tanh")) == "Activation('tanh')"


@pytest.mark.torch
def test_empty_containers_print_as_torchs():
    assert repr(mnn.Sequential()) == repr(nn.Sequential()) and repr(mnn.ModuleList()) == repr(nn.ModuleList())


@pytest.mark.parametrize("loss, output", [("cross_entropy", None), ("mse", None), ("mse", "tanh")])
def test_loss_value_is_the_loss_loss_and_grads_gives(loss, output):
    model = mnn.Sequential(mnn.Linear(4, 5), mnn.Tanh(), mnn.Linear(5, 3))
    model.reset_parameters(np.random.default_rng(0), "xavier")
    X, y = np.random.default_rng(1).standard_normal((6, 4)), np.array([0, 1, 2, 2, 1, 0])
    value = mnn.loss_value(model, X, y, loss, output)
    assert np.isfinite(value) and value == mnn.loss_and_grads(model, X, y, loss, output)[0]
    assert value != mnn.loss_value(model, X, y, "mse" if loss == "cross_entropy" else "cross_entropy")
    if loss == "cross_entropy":  # the default loss
        assert mnn.loss_value(model, X, y) == value == mnn.loss_and_grads(model, X, y)[0]


def test_the_usage_lists_every_kind_and_every_activation_one_line_each():
    lines = arch.usage().splitlines()
    assert [line.split()[0].rstrip(":") for line in lines] == [*arch.KINDS, arch.ACTIVATION]
    assert lines[-1].endswith(", ".join(ACTIVATIONS))


def test_containers_name_their_torch_counterparts_and_a_bare_module_none():
    assert mnn.Sequential(mnn.ReLU()).torch_spec() == ("Sequential", {})
    assert mnn.ModuleList([mnn.ReLU()]).torch_spec() == ("ModuleList", {})
    with pytest.raises(NotImplementedError, match="^Module names no torch counterpart$"):
        mnn.Module().torch_spec()
    with pytest.raises(NotImplementedError):
        mnn.Module().backward(np.ones(3))


def test_calling_a_module_is_its_forward_pass():
    layer, x = mnn.Tanh(), np.linspace(-2, 2, 6).reshape(2, 3)
    assert np.array_equal(layer(x), np.tanh(x))


@pytest.mark.torch
def test_nested_containers_print_as_torchs():
    mine = mnn.Sequential(mnn.Linear(2, 3), mnn.Sequential(mnn.ReLU(), mnn.Linear(3, 1)), mnn.Tanh())
    theirs = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)), nn.Tanh())
    assert repr(mine) == repr(theirs)


@pytest.mark.torch
def test_parameters_and_buffers_are_named_under_a_prefix_as_torch_names_them():
    mine = mnn.Sequential(mnn.Linear(2, 3), mnn.BatchNorm1d(3))
    theirs = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    assert [k for k, _ in mine.named_buffers(prefix="net")] == [k for k, _ in theirs.named_buffers(prefix="net")]
    assert [k for k, _ in mine.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert ([k for k, _ in mine.named_parameters(prefix="net")]
            == [k for k, _ in theirs.named_parameters(prefix="net")] == ["net.0.weight", "net.0.bias", "net.1.weight",
                                                                          "net.1.bias"])


def test_gradients_asked_for_before_a_backward_pass_are_an_error_naming_the_key():
    model = mnn.Sequential(mnn.Linear(2, 3))
    with pytest.raises(RuntimeError, match=r"^no gradient for 0\.weight: call forward, then backward, first$"):
        model.named_grads()


class Recorder(mnn.Module):
    """The identity, recording whether backward was asked for ∂E/∂x."""

    def forward(self, x):
        return x

    def backward(self, dout, input_grad=True):
        self.asked, self.grads = input_grad, {}
        return dout if input_grad else None


def test_a_sequential_asks_its_first_layer_for_the_input_gradient_only_when_told():
    first, last = Recorder(), Recorder()
    model = mnn.Sequential(first, mnn.Linear(2, 2), last)
    x = np.ones((3, 2))
    model.forward(x)
    assert model.backward(np.ones((3, 2))).shape == (3, 2) and first.asked is True  # input_grad defaults to True
    assert model.backward(np.ones((3, 2)), input_grad=False) is None
    assert first.asked is False and last.asked is True  # only the first layer skips it
    mnn.loss_and_grads(model, x, np.array([0, 1, 1]))
    assert first.asked is False  # the data needs no gradient


def test_a_linear_layer_gives_the_input_gradient_unless_told_not_to():
    layer = mnn.Linear(3, 2)
    layer.forward(np.ones((4, 3)))
    assert layer.backward(np.ones((4, 2))).shape == (4, 3)  # input_grad defaults to True
    assert layer.backward(np.ones((4, 2)), input_grad=False) is None and set(layer.grads) == {"weight", "bias"}


@pytest.mark.parametrize("x_shape", [(2, 3), (2, 4, 1), (4,)])
def test_a_linear_layer_refuses_an_input_of_the_wrong_shape_in_one_line(x_shape):
    assert message(mnn.Linear(4, 3).forward, np.ones(x_shape)) == (f"Linear(4, 3) takes (batch, 4) inputs, got shape "
                                                                  f"{x_shape}")
    assert message(mnn.Linear(4, 3).output_shape, x_shape[1:]) == (f"takes 4 features per example, gets shape "
                                                                  f"{x_shape[1:]}")


@pytest.mark.parametrize("shape", [(), (0, 3), (3, -1)])
def test_unflatten_refuses_sizes_that_are_not_positive(shape):
    assert message(mnn.Unflatten, shape) == f"Unflatten needs positive sizes, got {shape}"


@pytest.mark.parametrize("shape, sizes", [((784,), "28 28"), ((1,), "1 1"), ((0,), "T F"), ((10,), "T F"),
                                          ((4, 7, 2), "T F"), ((1, 7, 2), "T F")])
def test_a_recurrent_layer_written_as_data_after_a_wrong_shape_says_which_unflatten_fits(shape, sizes):
    assert message(arch.KINDS["lstm"].make, shape, 8) == (
        f"a recurrent layer takes (time steps, features) per example, gets shape {shape}: put 'unflatten {sizes}' "
        "before it")


def test_a_linear_layer_written_as_data_keeps_bias_false():
    assert list(mnn.build(["linear 3 bias=false"], 4).state_dict()) == ["0.weight"]


def test_layer_options_read_true_and_false_as_booleans_and_other_words_as_themselves():
    assert arch.parse("linear 3 bias=true").options == {"bias": True}
    assert arch.parse("linear 3 bias=false").options == {"bias": False}
    assert [arch.parse_value(w) for w in ("true", "false", "True", "7", "0.5", "5x3")] == [True, False, "True", 7,
                                                                                          0.5, (5, 3)]
    assert list(mnn.build(["linear 3 bias=true"], 4).state_dict()) == ["0.weight", "0.bias"]


def test_a_layer_string_parses_into_its_kind_arguments_options_and_text():
    assert arch.parse("Conv 4 3 stride=2") == ("conv", (4, 3), {"stride": 2}, "Conv 4 3 stride=2")
    assert arch.parse("linear 3 bias=a=b").options == {"bias": "a=b"}  # the first '=' ends the option's name


def test_an_unknown_layer_kind_is_refused_listing_every_kind_and_activation():
    assert message(arch.parse, "dense 3") == (f"unknown layer kind 'dense'; valid kinds: "
                                              f"{', '.join([*arch.KINDS, arch.ACTIVATION])} or an activation "
                                              f"({', '.join(ACTIVATIONS)})")


@pytest.mark.parametrize("layer", [5, None, "", "   "])
def test_a_layer_that_is_not_a_word_is_refused_in_one_line(layer):
    assert message(arch.parse, layer) == f"a layer is a string such as 'linear 128' or 'relu', got {layer!r}"


def test_the_short_form_has_no_batch_norm_unless_asked():
    assert mnn.expand([4, 3, 2]) == ("linear 3", arch.ACTIVATION, "linear 2")
    assert mnn.expand([4, 3, 2], "relu", True) == ("linear 3 bias=false", "batchnorm", "relu", "linear 2")


def test_a_child_assigned_to_an_attribute_is_that_attribute_and_a_missing_one_is_an_attribute_error():
    model = mnn.Module()
    model.head = mnn.Linear(2, 3)
    assert model.head is dict(model.named_children())["head"]
    assert model.head.weight is model.head.params["weight"]
    with pytest.raises(AttributeError) as error:
        model.tail
    assert str(error.value) == "Module has no attribute 'tail'" and not hasattr(model, "tail")


@pytest.mark.parametrize("layers, text", [
    (["linear 3", "activation"], "'activation' stands for the run's activation, and none was given"),
    (["linear"], "bad arguments ("),
    ([], "layers must be a non-empty list of layer strings such as ['linear 128', 'relu', 'linear 10'], got []"),
])
def test_an_architecture_that_cannot_be_built_is_one_line_saying_why(layers, text):
    assert text in message(mnn.build, layers, 4)
    if not layers:
        assert message(arch.check_layers, layers) == text


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_linear_layer_holds_its_parameters_in_the_dtype_it_was_given(dtype):
    layer = mnn.Linear(2, 3, dtype=dtype)
    assert layer.weight.dtype == layer.bias.dtype == dtype


def test_build_draws_from_seed_0_unless_told_and_refuses_bad_seeds_and_inits_in_one_line():
    layers = ["linear 3", "relu", "linear 2"]
    default, zero, one = (mnn.build(layers, 4, **kw).state_dict() for kw in ({}, {"seed": 0}, {"seed": 1}))
    assert all(np.array_equal(default[k], zero[k]) for k in zero) and not np.array_equal(default["0.weight"],
                                                                                         one["0.weight"])
    for seed in (-1, True, 1.5):
        assert message(mnn.build, layers, 4, seed=seed) == f"seed must be an integer ≥ 0, got {seed!r}"
    assert message(mnn.build, layers, 4, init="orthogonal") == (f"unknown init 'orthogonal'; valid inits: "
                                                                f"{', '.join(INITS)}")


@pytest.mark.parametrize("layers", [5, "relu", {"relu"}, ()])
def test_layers_that_are_not_a_non_empty_list_are_refused_in_one_line(layers):
    assert message(arch.check_layers, layers) == ("layers must be a non-empty list of layer strings such as "
                                                  f"['linear 128', 'relu', 'linear 10'], got {layers!r}")


@pytest.mark.torch
def test_containers_refuse_what_is_not_a_manual_module_naming_it_and_its_position():
    assert message(mnn.ModuleList, [mnn.ReLU(), nn.ReLU()]) == ("ModuleList takes manual.nn modules, got ReLU at "
                                                                "position 1")
    assert message(mnn.Sequential, mnn.Linear(2, 2), "relu") == ("Sequential takes manual.nn modules, got str at "
                                                                 "position 1")


@pytest.mark.parametrize("start, target", [(np.float32, np.float64), (np.float64, np.float32)])
def test_to_casts_every_floating_parameter_and_buffer_and_keeps_the_count_an_integer(start, target):
    model = mnn.Sequential(mnn.Linear(2, 3, dtype=start), mnn.BatchNorm1d(3, dtype=start)).to(target)
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    assert dtypes.pop("1.num_batches_tracked") == np.int64 and set(dtypes.values()) == {np.dtype(target)}


def config_of(row: pd.Series) -> RunConfig:
    """The RunConfig a runs.csv row was trained from (``run_columns`` read back)."""
    values = {}
    for f in dataclasses.fields(RunConfig):
        if f.name not in row or (isinstance(row[f.name], float) and math.isnan(row[f.name])):
            continue
        value = row[f.name]
        if f.name == "layer_sizes":
            value = tuple(int(n) for n in str(value).split("-"))
        elif f.name == "layers":
            value = tuple(value.split(" | "))
        elif isinstance(value, (np.integer, np.floating, np.bool_)):
            value = value.item()
        values[f.name] = value
    return RunConfig(**values)


def test_the_committed_runs_keep_their_keys(clean_registries):
    from experiments.plugins import load_plugins

    load_plugins(["examples/mish.py"])  # the plug-in study's activation
    files = glob.glob("results/*/runs.csv")
    assert len(files) >= 5
    checked = 0
    for path in files:
        runs = pd.read_csv(path)
        for _, row in runs.iterrows():
            assert config_of(row).key() == row["key"], (path, row["key"])
            checked += 1
    assert checked > 800


# ------------------------------------------------------------------------ the committed numbers, reproduced
def test_a_committed_manual_run_is_reproduced_to_the_last_digit():
    """The backends study's manual seed-0 run (float64, 3 epochs on 50,000 images), retrained by the module system."""
    runs, epochs = pd.read_csv("results/backends/runs.csv"), pd.read_csv("results/backends/epochs.csv")
    row = runs[(runs.backend == "manual") & (runs.seed == 0)].iloc[0]
    config = config_of(row)
    result = training.train(config, load_mnist())
    want = epochs[epochs.key == row["key"]].sort_values("epoch")
    got = pd.DataFrame(result.epochs)
    for column in ("train_loss", "val_loss", "val_acc"):
        np.testing.assert_allclose(got[column], want[column], rtol=1e-15, atol=0)
    assert result.run["test_acc"] == row["test_acc"]


# ------------------------------------------------------------------------ stacked = one by one, plug-ins included
def twice_cross_entropy(z, y, output, a=None):
    loss, dz = cross_entropy(z, y, output, a)
    return 2 * loss, 2 * dz


TWICE = Loss("twice_ce", twice_cross_entropy,
             torch_fn=lambda out, y: 2 * torch.nn.functional.cross_entropy(out, y), output_activation="identity")


@pytest.fixture(scope="module")
def small():
    full = load_mnist(train_subset=1000)
    return MNIST(full.train, *(Split(s.images[:1000], s.labels[:1000]) for s in (full.val, full.test)))


def test_a_stacked_plug_in_loss_trains_what_the_same_runs_train_one_by_one(small, clean_registries):
    from manual.losses import register_loss

    register_loss(TWICE)
    base = RunConfig((784, 32, 10), "relu", "twice_ce", "he", "SGD", 0.05, momentum=0.9, batch_size=50, epochs=2,
                     dtype="float32", train_subset=1000)
    configs = [dataclasses.replace(base, seed=s) for s in (0, 1, 2)]
    assert stacked.should_stack(base, "cpu")
    together = stacked.train_stacked(configs, small, "cpu")
    for config, result in zip(configs, together):
        alone = training.train(config, small, "cpu")
        assert result.run["test_acc"] == pytest.approx(alone.run["test_acc"], abs=2e-3)  # float32 noise
        assert result.run["final_train_loss"] == pytest.approx(alone.run["final_train_loss"], rel=1e-4)
        assert alone.run["test_acc"] > 0.7  # it learned: a plug-in loss trained as squared error stays near 10%


@pytest.mark.parametrize("activation", list(manual.activations.BUILTINS))
def test_stacked_runs_of_every_activation_equal_their_single_runs(small, activation):
    base = RunConfig(layers=("linear 16", "activation", "linear 10"), activation=activation, loss="mse",
                     init="xavier", optimizer="SGD", lr=0.5, batch_size=100, epochs=1, dtype="float64",
                     train_subset=1000)
    configs = [dataclasses.replace(base, seed=s, lr=lr) for s, lr in ((0, 0.5), (1, 1.0))]
    for config, result in zip(configs, stacked.train_stacked(configs, small, "cpu")):
        alone = training.train(config, small, "cpu")
        assert result.run["final_train_loss"] == pytest.approx(alone.run["final_train_loss"], rel=1e-10)
        assert result.run["test_acc"] == alone.run["test_acc"]
        for got, want in zip(result.layers, alone.layers):
            assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-9)
