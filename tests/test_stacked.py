"""``experiments.stacked``: N runs trained as one batched model give each run's single-model results."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from experiments.runs import training
from experiments.data import MNIST, Split, load_mnist
from experiments.runs.stacked import StackedTrainer, stack_group_key, train_stacked
from experiments.runs.training import RunConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")
N_TRAIN = 1000
TOL = 1e-9  # float64: the stacked sums and products round differently, nothing more

BASE = RunConfig((784, 24, 10), "sigmoid", "mse", "normal", "SGD", 1.0, batch_size=64, epochs=2,
                 backend="torch", dtype="float64", train_subset=N_TRAIN)
# optimizer settings → (seed, lr) of the stacked runs
CASES = {
    "SGD": (dict(optimizer="SGD"), (0.5, 3.0, 1.0)),
    "SGD momentum + weight decay": (dict(optimizer="SGD", momentum=0.9, weight_decay=1e-3), (0.05, 0.2, 0.1)),
    "Nesterov": (dict(optimizer="SGD", momentum=0.9, nesterov=True), (0.05, 0.2, 0.1)),
    "Adagrad": (dict(optimizer="Adagrad"), (0.01, 0.1, 0.03)),
    "RMSprop momentum": (dict(optimizer="RMSprop", momentum=0.5), (1e-3, 1e-2, 3e-4)),
    "Adam": (dict(optimizer="Adam", activation="relu", loss="cross_entropy", init="he"), (1e-3, 1e-2, 3e-3)),
    "AdamW": (dict(optimizer="AdamW", activation="tanh", loss="cross_entropy", init="xavier"), (1e-3, 1e-2, 3e-3)),
    "Adam + StepLR": (dict(optimizer="Adam", schedule="StepLR", step_size=1, gamma=0.3), (1e-3, 1e-2, 3e-3)),
    "SGD + cosine": (dict(optimizer="SGD", momentum=0.5, schedule="CosineAnnealingLR"), (0.1, 0.5, 1.0)),
}


@pytest.fixture(scope="module")
def data():
    """1,000 training images; validation and test cut to 2,000 images to keep the per-epoch evaluation quick."""
    full = load_mnist(train_subset=N_TRAIN)
    return MNIST(full.train, *(Split(s.images[:2000], s.labels[:2000]) for s in (full.val, full.test)))


def stack_of(settings: dict, lrs) -> list[RunConfig]:
    base = dataclasses.replace(BASE, **settings)
    return [dataclasses.replace(base, seed=seed, lr=lr) for seed, lr in enumerate(lrs)]


def assert_same_numbers(got: list[dict], want: list[dict], tol: float = TOL) -> None:
    """Rows equal column by column: text exactly, numbers to a relative ``tol`` (NaN only where NaN)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for column in w:
            if column.endswith("time_s"):
                continue  # timings differ, by design
            if isinstance(w[column], float):
                assert math.isnan(g[column]) == math.isnan(w[column]), column
                if not math.isnan(w[column]):
                    assert g[column] == pytest.approx(w[column], rel=tol, abs=tol), column
            else:
                assert g[column] == w[column], column


def assert_same_result(stacked: training.RunResult, single: training.RunResult) -> None:
    assert_same_numbers([stacked.run], [single.run])
    assert_same_numbers(stacked.epochs, single.epochs)
    assert_same_numbers(stacked.layers, single.layers)


@pytest.mark.parametrize("case", list(CASES))
def test_stacked_runs_equal_their_single_runs(case, data):
    configs = stack_of(*CASES[case])
    stacked = train_stacked(configs, data, "cpu")
    for config, result in zip(configs, stacked):
        assert result.run["key"] == config.key()
        assert_same_result(result, training.train(config, data, "cpu"))


def test_a_diverging_model_is_marked_and_the_others_go_on(data):
    # a linear network with momentum at lr 1e3 overflows to NaN in its third epoch; the other two train
    settings = dict(activation="identity", loss="cross_entropy", momentum=0.9, epochs=4)
    configs = stack_of(settings, (1e-3, 1e3, 1e-2))
    with np.errstate(all="ignore"):  # the diverging model's probe statistics overflow
        stacked = train_stacked(configs, data, "cpu")
        singles = [training.train(c, data, "cpu") for c in configs]
    assert [r.run["status"] for r in singles] == ["ok", "diverged", "ok"]
    assert [r.run["status"] for r in stacked] == ["ok", "diverged", "ok"]
    assert stacked[1].run["epochs_done"] == singles[1].run["epochs_done"] < 4
    assert not stacked[1].epochs[-1]["train_loss"] < 1e6  # NaN, inf, or far above 100× its initial loss
    assert_same_result(stacked[0], singles[0])
    assert_same_result(stacked[2], singles[2])


def test_stepping_with_lr_one_then_scaling_is_each_optimizers_own_step():
    """The linearity in lr that the stacking relies on, checked against torch.optim directly, per optimizer."""
    torch.manual_seed(0)
    settings = [("SGD", {}), ("SGD", dict(momentum=0.9, nesterov=True, weight_decay=0.1)), ("Adagrad", {}),
                ("RMSprop", dict(momentum=0.5)), ("Adam", dict(weight_decay=0.1)), ("AdamW", {}),
                ("Adam", dict(fused=True)), ("AdamW", dict(fused=True))]  # fused: what training uses on the CPU
    for name, kwargs in settings:
        start, grads = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(4, 2, 5, 3, dtype=torch.float64)
        lrs = torch.tensor([0.3, 0.01], dtype=torch.float64).view(-1, 1, 1)
        stacked = start.clone().requires_grad_()
        opt = getattr(torch.optim, name)([stacked], lr=1.0, **kwargs)
        singles = [start[i].clone().requires_grad_() for i in range(2)]
        single_opts = [getattr(torch.optim, name)([p], lr=float(lrs[i]), **kwargs) for i, p in enumerate(singles)]
        for g in grads:
            before = stacked.detach().clone()
            stacked.grad = g.clone()
            opt.step()
            with torch.no_grad():
                stacked.lerp_(before, 1 - lrs)
            for i, (p, o) in enumerate(zip(singles, single_opts)):
                p.grad = g[i].clone()
                o.step()
        for i, p in enumerate(singles):
            torch.testing.assert_close(stacked[i].detach(), p.detach(), rtol=1e-12, atol=1e-14, msg=name)


def test_each_model_gets_its_own_mini_batches_of_the_single_run_sizes(data):
    configs = stack_of({}, (0.5, 1.0))
    configs = [dataclasses.replace(c, batch_size=300) for c in configs]  # 1000 = 3 × 300 + a batch of 100
    trainer = StackedTrainer(configs, "cpu")
    X, y = training.split_to_torch(data.train, torch.float64, "cpu")
    orders = np.stack([training.batch_order(c.seed, 1, N_TRAIN) for c in configs])
    losses = trainer.train_epoch(X, y, orders, 300)
    for config, loss in zip(configs, losses):
        backend = training.TorchBackend(config, "cpu")
        assert loss == pytest.approx(backend.train_epoch(X, y, orders[config.seed], 300), rel=TOL)


def test_only_seed_and_lr_may_differ():
    a = dataclasses.replace(BASE, seed=1, lr=0.1)
    assert stack_group_key(a) == stack_group_key(BASE)
    assert stack_group_key(dataclasses.replace(BASE, batch_size=32)) != stack_group_key(BASE)
    with pytest.raises(ValueError, match="batch_size"):
        train_stacked([BASE, dataclasses.replace(BASE, batch_size=32)], None, "cpu")
    with pytest.raises(ValueError, match="backend"):
        train_stacked([dataclasses.replace(BASE, backend="manual")], None, "cpu")
    with pytest.raises(ValueError, match="at least one"):
        train_stacked([], None, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_stacked_on_cuda_equals_single_runs_on_cuda(data):
    configs = stack_of(*CASES["Adam"])
    stacked = train_stacked(configs, data, "cuda")
    for config, result in zip(configs, stacked):
        assert result.run["device"] == "cuda"
        assert_same_result(result, training.train(config, data, "cuda"))
