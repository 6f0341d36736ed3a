"""Proof that the two implementations agree, in float64: ``manual`` (NumPy, by hand) and ``torch_ref`` (autograd).

a. gradients: hand-written backpropagation equals autograd for every activation × loss × depth;
b. optimizer steps: ``manual.optim`` equals ``torch.optim`` fed the same gradients, with and without schedules;
c. trajectories: both implementations train the same network on the same mini-batches to the same place;
d. parameters move between them through ``state_dict``, and mismatches are refused;
e. the gradients and a trajectory agree on a CUDA device too.
"""
import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

import manual
import torch_ref
from experiments.gradcheck import autograd_loss_and_grads, max_rel_err, net_spec, random_batch, rel_err, torch_twin
from manual.activations import ACTIVATIONS
from manual.init import INITS
from manual.losses import LOSSES
from manual.optim import get_optimizer
from manual.optim.lr_scheduler import get_scheduler

pytestmark = pytest.mark.torch  # tests/conftest.py

GRAD_TOL, LOSS_TOL, STEP_TOL, TRAJECTORY_TOL = 1e-10, 1e-12, 1e-10, 1e-8


def assert_same_gradients(net: manual.MLP, tnet: torch_ref.MLP, X, y) -> None:
    """Losses equal to 1e-12 and every gradient tensor to 1e-10, relative."""
    loss, grads = net.loss_and_grads(X, y)
    tloss, tgrads = autograd_loss_and_grads(tnet, X, y)
    assert loss == pytest.approx(tloss, rel=LOSS_TOL, abs=LOSS_TOL)
    assert grads.keys() == tgrads.keys()
    for key, g in grads.items():
        assert max_rel_err(g, tgrads[key]) <= GRAD_TOL, f"{key}: {max_rel_err(g, tgrads[key]):.2e}"


def assert_same_state(state, tstate, tol=0.0) -> None:
    assert state.keys() == tstate.keys()
    for key, v in state.items():
        assert max_rel_err(v, tstate[key].detach().cpu().numpy()) <= tol, key


# ------------------------------------------------------------------ a. gradients
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_equal_autograd(activation, loss):
    """Depths 1, 2, 3, 6 × widths 3, 5 × batches 1, 4, cycling through the initialisers."""
    for i, (depth, width, batch) in enumerate(itertools.product((1, 2, 3, 6), (3, 5), (1, 4))):
        spec = dict(layer_sizes=[4] + [width] * depth + [3], activation=activation, loss=loss,
                    init=INITS[i % len(INITS)], seed=i)
        net, tnet = manual.MLP(**spec), torch_ref.MLP(**spec)
        assert_same_state(net.state_dict(), tnet.state_dict())  # same seed → bit-identical parameters
        X, y = random_batch(net, batch, seed=i)
        assert_same_gradients(net, tnet, X, y)


def trained(net: manual.MLP, steps: int = 3) -> manual.MLP:
    """``net`` after a few SGD steps, so that its parameters are no longer what its seed gives."""
    X, y = random_batch(net, 8, seed=99)
    opt = manual.optim.SGD(net.params, lr=0.5)
    for _ in range(steps):
        opt.step(net.loss_and_grads(X, y)[1])
    return net


@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_agree_after_loading_manual_parameters_into_torch(loss):
    for activation in ACTIVATIONS:
        net = trained(manual.MLP([4, 5, 5, 3], activation, loss, seed=3))
        tnet = torch_twin(net)  # torch_ref.MLP.load_state_dict of manual's state
        X, y = random_batch(net, 5, seed=4)
        assert_same_gradients(net, tnet, X, y)


class LossOf(nn.Module):
    """A module whose forward is ``net.loss``, so ``functional_call`` can swap its parameters."""

    def __init__(self, net: torch_ref.MLP):
        super().__init__()
        self.net = net

    def forward(self, X, y):
        return self.net.loss(X, y)


@pytest.mark.parametrize("activation, loss, depth", [
    ("sigmoid", "mse", 2), ("tanh", "cross_entropy", 1), ("gelu", "cross_entropy", 3),
    ("softplus", "mse", 2), ("swish", "mse", 1), ("elu", "cross_entropy", 2),
])
def test_torch_ref_loss_passes_torch_gradcheck(activation, loss, depth):
    """``torch.autograd.gradcheck`` of torch_ref's loss as a function of all its parameters."""
    net = torch_ref.MLP([4] + [3] * depth + [3], activation, loss, init="pytorch", seed=depth)
    X, y = random_batch(manual.MLP([4, 3]), 5, seed=depth)
    module = LossOf(net)
    names = [f"net.{k}" for k, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in net.parameters())

    def loss_of(*ps):
        return functional_call(module, dict(zip(names, ps)), (torch.from_numpy(X), torch.from_numpy(y)))

    assert torch.autograd.gradcheck(loss_of, params)


# ---------------------------------------------------------------- b. optimizer steps
OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.1, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
]
SCHEDULES = [None, ("StepLR", dict(step_size=10, gamma=0.5)), ("CosineAnnealingLR", dict(T_max=50, eta_min=1e-3))]


def describe(config) -> str:
    """'Adam lr=0.01 amsgrad=True' for test ids."""
    return "none" if config is None else " ".join([config[0], *(f"{k}={v}" for k, v in config[1].items())])


class TwinOptimizers:
    """The same optimizer and schedule from ``manual.optim`` (on NumPy arrays) and ``torch.optim`` (on tensors)."""

    def __init__(self, params: dict, tparams, optimizer, schedule):
        name, hyperparameters = optimizer
        self.manual = get_optimizer(name)(params, **hyperparameters)
        self.torch = torch_ref.make_optimizer(name, tparams, **hyperparameters)
        self.schedules = []
        if schedule is not None:
            self.schedules = [get_scheduler(schedule[0])(self.manual, **schedule[1]),
                              torch_ref.make_scheduler(schedule[0], self.torch, **schedule[1])]

    def step(self, grads: dict) -> None:
        """One manual step with ``grads``, one torch step with whatever ``.grad`` holds, then the schedules."""
        self.manual.step(grads)
        self.torch.step()
        for schedule in self.schedules:
            schedule.step()
        assert self.manual.lr == pytest.approx(self.torch.param_groups[0]["lr"], rel=1e-13)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=describe)
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=describe)
def test_optimizer_steps_equal_torch_optim(optimizer, schedule):
    """50 steps from identical parameters fed an identical sequence of random gradients."""
    params = manual.MLP([4, 5, 3], seed=0).state_dict()
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    twins = TwinOptimizers(params, list(tparams.values()), optimizer, schedule)
    rng = np.random.default_rng(0)
    for _ in range(50):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        twins.step(grads)
    assert_same_state(params, tparams, tol=STEP_TOL)


# ------------------------------------------------------------------ c. trajectories
TRAJECTORIES = [
    ("sigmoid", "mse", ("SGD", dict(lr=0.5, momentum=0.9)), None),
    ("relu", "cross_entropy", ("Adam", dict(lr=0.01)), ("StepLR", dict(step_size=30, gamma=0.5))),
    ("tanh", "cross_entropy", ("RMSprop", dict(lr=0.005, centered=True, momentum=0.5)), None),
    ("gelu", "mse", ("AdamW", dict(lr=0.01, weight_decay=0.05)), ("CosineAnnealingLR", dict(T_max=100))),
    ("elu", "cross_entropy", ("Adagrad", dict(lr=0.05)), None),
    ("swish", "cross_entropy", ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)), None),
]


def synthetic_dataset(n=64, features=6, classes=4, seed=0):
    """Gaussian points labelled by a random linear teacher, so there is something to learn."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features))
    return X, (X @ rng.standard_normal((features, classes))).argmax(axis=1)


def minibatch_order(n, batch, steps, seed=0):
    """``steps`` index arrays of ``batch`` rows: a fresh seeded permutation every epoch."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * batch // n))])
    return order[: steps * batch].reshape(steps, batch)


def train_both(activation, loss, optimizer, schedule, steps=100, device=None):
    """Train the same network on the same mini-batches with each implementation; (manual, torch) losses and nets."""
    X, y = synthetic_dataset()
    net = manual.MLP([6, 5, 5, 4], activation, loss, init="pytorch", seed=0)
    tnet = torch_twin(net, device)
    twins = TwinOptimizers(net.params, tnet.parameters(), optimizer, schedule)
    Xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    losses, tlosses = [], []
    for idx in minibatch_order(len(X), 8, steps):
        value, grads = net.loss_and_grads(X[idx], y[idx])
        twins.torch.zero_grad()
        tvalue = tnet.loss(Xt[idx], yt[idx])
        tvalue.backward()
        twins.step(grads)
        losses.append(value)
        tlosses.append(tvalue.item())
    return np.array(losses), np.array(tlosses), net, tnet


@pytest.mark.parametrize("activation, loss, optimizer, schedule", TRAJECTORIES,
                         ids=[f"{a}-{l}-{describe(o)}-{describe(s)}" for a, l, o, s in TRAJECTORIES])
def test_training_trajectories_agree(activation, loss, optimizer, schedule):
    losses, tlosses, net, tnet = train_both(activation, loss, optimizer, schedule)
    assert losses[-10:].mean() < losses[:10].mean()  # it did train
    assert rel_err(losses, tlosses).max() <= TRAJECTORY_TOL
    assert_same_state(net.state_dict(), tnet.state_dict(), tol=TRAJECTORY_TOL)


# --------------------------------------------------------------- d. state_dict exchange
def test_state_dict_round_trip_manual_torch_manual_is_exact():
    net = trained(manual.MLP([4, 5, 3], "tanh", "cross_entropy", seed=5))
    tnet = torch_twin(net)
    back = manual.MLP(**net_spec(net))
    back.load_state_dict(torch_ref.to_numpy_state(tnet.state_dict()))
    for key, v in net.state_dict().items():
        np.testing.assert_array_equal(back.params[key], v)
        assert back.params[key].dtype == np.float64


def test_torch_parameters_load_into_manual():
    tnet = torch_ref.MLP([4, 5, 3], "relu", "mse", seed=6)
    X, y = random_batch(manual.MLP([4, 3]), 8, seed=6)
    opt = torch_ref.make_optimizer("Adam", tnet.parameters(), lr=0.1)
    autograd_loss_and_grads(tnet, X, y)
    opt.step()
    net = manual.MLP([4, 5, 3], "relu", "mse", seed=6)
    net.load_state_dict(torch_ref.to_numpy_state(tnet.state_dict()))
    assert_same_state(net.state_dict(), tnet.state_dict())
    assert_same_gradients(net, tnet, X, y)


@pytest.mark.parametrize("torch_spec, differs", [
    (dict(layer_sizes=[4, 6, 3]), "layer_sizes"),
    (dict(activation="tanh"), "activation"),
    (dict(loss="cross_entropy"), "loss"),
    (dict(output_activation="tanh"), "output_activation"),
])
def test_mismatched_specs_are_refused(torch_spec, differs):
    spec = dict(layer_sizes=[4, 5, 3], activation="sigmoid", loss="mse")
    with pytest.raises(ValueError, match=f"differ in spec.*'{differs}'"):
        torch_ref.check_same_spec(manual.MLP(**spec), torch_ref.MLP(**{**spec, **torch_spec}))


def test_bad_state_dicts_into_torch_are_refused_naming_the_key_and_shapes():
    tnet = torch_ref.MLP([4, 5, 3])
    good = torch_ref.to_torch_state(manual.MLP([4, 5, 3]).state_dict())
    with pytest.raises(ValueError, match=r"state_dict\['layers.1.weight'\] has shape \(3, 4\) "
                                         r"but this network expects \(3, 5\)"):
        tnet.load_state_dict({**good, "layers.1.weight": torch.zeros(3, 4, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['layers.1.bias'\]"):
        tnet.load_state_dict({k: v for k, v in good.items() if k != "layers.1.bias"})
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['layers.2.bias'\]"):
        tnet.load_state_dict({**good, "layers.2.bias": torch.zeros(3, dtype=torch.float64)})


# ------------------------------------------------------------------------- e. CUDA
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("loss", LOSSES)
def test_agreement_on_cuda(loss):
    """Autograd on the GPU against manual on the CPU: gradients, then a 100-step training trajectory."""
    for activation in ACTIVATIONS:
        net = manual.MLP([4, 5, 5, 3], activation, loss, seed=7)
        tnet = torch_twin(net, device="cuda")
        assert next(tnet.parameters()).is_cuda
        assert_same_gradients(net, tnet, *random_batch(net, 4, seed=7))
    losses, tlosses, net, tnet = train_both("tanh", loss, ("Adam", dict(lr=0.01)), ("StepLR", dict(step_size=30)),
                                            device="cuda")
    assert rel_err(losses, tlosses).max() <= TRAJECTORY_TOL
    assert_same_state(net.state_dict(), tnet.state_dict(), tol=TRAJECTORY_TOL)
