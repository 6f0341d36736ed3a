"""Facts about the PyTorch mirror itself: what it builds, the dtypes it keeps, the copies it makes, its messages."""
import numpy as np
import pytest
import torch
from torch import nn

import manual
import torch_ref
from manual.nn.activation import TORCH_ACTIVATIONS
from torch_ref.model import activation_module, torch_dtype

from tests.helpers import message

pytestmark = [pytest.mark.facts, pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]


def test_the_mirror_is_built_from_pytorchs_own_modules_with_manuals_constants():
    expected = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU,
                "swish": nn.SiLU, "gelu": nn.GELU, "softplus": nn.Softplus, "identity": nn.Identity}
    assert list(TORCH_ACTIVATIONS) == list(manual.ACTIVATIONS)
    for name, cls in expected.items():
        assert type(activation_module(name)) is cls, name
    assert activation_module("leaky_relu").negative_slope == 0.01 and activation_module("elu").alpha == 1.0
    assert activation_module("gelu").approximate == "tanh"
    assert message(lambda: activation_module("mish")).startswith("unknown activation 'mish'; valid activations: "
                                                                 "sigmoid, tanh, relu")


def test_spec_defaults_and_outputs():
    net = torch_ref.MLP([3, 4, 2])
    assert net.spec == dict(layer_sizes=[3, 4, 2], activation="sigmoid", loss="mse", init="normal",
                            output_activation="sigmoid", batch_norm=False)
    assert net.layers[0].weight.dtype == torch.float64 and len(net.layers) == 2
    for k, v in manual.init.init_params([3, 4, 2], "normal", 0).items():  # the default seed is 0
        np.testing.assert_array_equal(net.get_parameter(k).detach().numpy(), v)
    assert torch_ref.MLP([3, 2], loss="cross_entropy").spec["output_activation"] == "identity"
    assert message(lambda: torch_ref.MLP([3, 2], loss="hinge")) == "unknown loss 'hinge'; valid losses: mse, " \
                                                                  "cross_entropy"


@pytest.mark.parametrize("dtype, expected", [("float32", torch.float32), (np.float64, torch.float64),
                                             (np.float32, torch.float32), (torch.float32, torch.float32),
                                             ("float64", torch.float64)])
def test_dtypes(dtype, expected):
    assert torch_dtype(dtype) is expected
    assert torch_ref.MLP([3, 2], dtype=dtype).layers[0].weight.dtype is expected


def test_an_unsupported_dtype_is_refused():
    assert message(lambda: torch_dtype("float16")) == "unsupported dtype 'float16'; valid dtypes: float32, float64"
    assert message(lambda: torch_dtype("double precision")) == \
        "unsupported dtype 'double precision'; valid dtypes: float32, float64"  # a name NumPy does not know either


def test_initial_parameters_are_manuals_at_every_dtype():
    for dtype in ("float32", "float64"):
        net = torch_ref.MLP([5, 4, 3], "tanh", "cross_entropy", "xavier", seed=3, dtype=dtype)
        for k, v in manual.init.init_params([5, 4, 3], "xavier", 3).items():
            np.testing.assert_array_equal(net.get_parameter(k).detach().numpy(), v.astype(dtype))


def test_pre_activations_and_forward_by_hand():
    """784-free tiny net: W₀ = [[1, −1]], b₀ = 0.5, relu; W₁ = [[2]], b₁ = −1, sigmoid output (mse)."""
    net = torch_ref.MLP([2, 1, 1], "relu", "mse")
    net.load_state_dict({"layers.0.weight": torch.tensor([[1.0, -1.0]], dtype=torch.float64),
                         "layers.0.bias": torch.tensor([0.5], dtype=torch.float64),
                         "layers.1.weight": torch.tensor([[2.0]], dtype=torch.float64),
                         "layers.1.bias": torch.tensor([-1.0], dtype=torch.float64)})
    X = torch.tensor([[3.0, 1.0], [0.0, 2.0]], dtype=torch.float64)  # z₀ = 2.5, −1.5 → a₀ = 2.5, 0
    z0, z1 = net.pre_activations(X)
    assert z0.flatten().tolist() == [2.5, -1.5] and z1.flatten().tolist() == [4.0, -1.0]
    np.testing.assert_allclose(net(X).detach().flatten().numpy(), 1 / (1 + np.exp([-4.0, 1.0])), rtol=1e-15)
    # ½Σ(a − onehot)² per sample, one output unit, label 0 → target 1: mean of ½(σ(4) − 1)² and ½(σ(−1) − 1)²
    expected = np.mean(0.5 * (1 / (1 + np.exp([-4.0, 1.0])) - 1) ** 2)
    assert net.loss(X, torch.tensor([0, 0])).item() == pytest.approx(expected, rel=1e-14)


def test_loading_copies_and_converts():
    """load_state_dict copies into the model's own dtype; to_numpy_state hands out copies."""
    net = torch_ref.MLP([3, 2], dtype="float32")
    state = manual.MLP([3, 2], seed=4).state_dict()  # float64
    tensors = torch_ref.to_torch_state({k: v.copy() for k, v in state.items()})  # (as_tensor shares the memory)
    assert tensors.keys() == state.keys() and tensors["layers.0.weight"].dtype == torch.float64
    net.load_state_dict(tensors)
    assert net.layers[0].weight.dtype == torch.float32
    tensors["layers.0.weight"] += 1  # the model holds its own copy
    np.testing.assert_allclose(net.layers[0].weight.detach().numpy(), state["layers.0.weight"], rtol=1e-7)
    out = torch_ref.to_numpy_state(net.state_dict())
    out["layers.0.bias"] += 1
    np.testing.assert_allclose(net.layers[0].bias.detach().numpy(), state["layers.0.bias"], rtol=1e-7)


def test_optimizer_and_schedule_get_the_hyperparameters():
    net = torch_ref.MLP([3, 2])
    opt = torch_ref.make_optimizer("SGD", net.parameters(), lr=0.5, momentum=0.9, nesterov=True)
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.5, 0.9, True)
    schedule = torch_ref.make_scheduler("StepLR", opt, step_size=2, gamma=0.25)
    assert isinstance(schedule, torch.optim.lr_scheduler.StepLR) and schedule.gamma == 0.25
    assert message(lambda: torch_ref.make_optimizer("LBFGS", net.parameters())) == \
        "unknown optimizer 'LBFGS'; valid optimizers: SGD, Adagrad, RMSprop, Adam, AdamW"
    assert message(lambda: torch_ref.make_scheduler("OneCycleLR", opt)) == \
        "unknown schedule 'OneCycleLR'; valid schedules: StepLR, CosineAnnealingLR"


def test_a_spec_mismatch_names_both_sides():
    assert message(lambda: torch_ref.check_same_spec(manual.MLP([3, 2], "tanh"), torch_ref.MLP([3, 2], "relu"))) \
        == "manual and torch networks differ in spec (manual, torch): {'activation': ('tanh', 'relu')}"
    torch_ref.check_same_spec(manual.MLP([3, 2], "tanh"), torch_ref.MLP([3, 2], "tanh"))  # the same: no error


def test_a_one_layer_net_checks_and_converts_its_inputs_like_a_deep_one():
    net = torch_ref.MLP([3, 2], dtype="float64")  # no hidden layer: layers[0] is also the last
    out = net(np.ones((4, 3), dtype=np.float32))  # converted to the network's dtype
    assert out.shape == (4, 2) and out.dtype == torch.float64
    assert message(lambda: net(np.ones((4, 5)))) == "X has 5 features per row but the input layer has 3 units"
