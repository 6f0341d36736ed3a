"""``experiments.stacked``: N runs trained as one batched model give each run's single-model results."""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
import torch

from experiments.runs import training
from experiments.data import MNIST, Split
from experiments.runs import stacked
from experiments.runs.stacked import StackedModel, StackedTrainer, stack_group_key, train_stacked
from experiments.runs.training import RunConfig
from tests.helpers import message

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]
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
def data(mnist):
    """1,000 training images; validation and test cut to 2,000 images to keep the per-epoch evaluation quick."""
    full = mnist(N_TRAIN)
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


# --------------------------------------------------------------------------- the stacking rule
WIDE = dataclasses.replace(BASE, layer_sizes=(784, 80, 192, 10), batch_size=100)  # 62,720 + 15,360 + 1,920 weights


def test_step_work_is_batch_size_times_the_number_of_weights():
    assert stacked.step_work(WIDE) == 100 * (784 * 80 + 80 * 192 + 192 * 10) == 8_000_000
    assert stacked.step_work(dataclasses.replace(BASE, batch_size=10)) == 10 * (784 * 24 + 24 * 10) == 190_560


def test_the_cpu_stacks_up_to_8_million_multiply_adds_per_step_and_no_further():
    assert stacked.CPU_STACK_MAX_WORK == 8_000_000
    assert stacked.should_stack(WIDE, "cpu")  # exactly at the bound: stacked
    assert not stacked.should_stack(dataclasses.replace(WIDE, batch_size=101), "cpu")  # 8,080,000
    assert stacked.should_stack(dataclasses.replace(WIDE, batch_size=101), "cuda")  # CUDA: no bound
    huge = dataclasses.replace(WIDE, layer_sizes=(784, 2048, 2048, 10), batch_size=1000)  # 5.8 G multiply-adds
    assert not stacked.should_stack(huge, "cpu") and stacked.should_stack(huge, "cuda")


def test_only_the_torch_backend_without_batch_norm_or_clipping_stacks():
    small = dataclasses.replace(BASE, batch_size=10)
    assert stacked.stackable(small) and stacked.should_stack(small, "cpu")
    assert not stacked.should_stack(dataclasses.replace(small, backend="manual"), "cpu")
    assert not stacked.should_stack(dataclasses.replace(small, backend="manual"), "cuda")
    for cure in (dict(batch_norm=True), dict(clip_grad_norm=1.0), dict(clip_grad_value=0.5),
                 dict(batch_norm=True, clip_grad_norm=1.0), dict(batch_norm=True, clip_grad_value=0.5)):
        config = dataclasses.replace(small, **cure)
        assert not stacked.stackable(config), cure
        assert not stacked.should_stack(config, "cpu") and not stacked.should_stack(config, "cuda"), cure


# --------------------------------------------------------------------------- refusals, word for word
def refusal(configs, device="cpu") -> str:
    """The whole message with which train_stacked refuses ``configs``."""
    return message(train_stacked, configs, None, device)


def test_the_refusals_say_exactly_what_is_wrong():
    assert refusal([]) == "train_stacked needs at least one config"
    assert refusal([BASE, dataclasses.replace(BASE, batch_size=32, epochs=3, seed=4)]) == (
        "stacked runs may differ only in seed and lr; these configs also differ in batch_size, epochs")
    assert refusal([dataclasses.replace(BASE, backend="manual")]) == "stacked training is torch's; got backend 'manual'"
    for cure in (dict(batch_norm=True), dict(clip_grad_norm=1.0), dict(clip_grad_value=0.5)):
        assert refusal([dataclasses.replace(BASE, **cure)]) == (
            "batch-norm, clipped and recurrent runs are never stacked (see stacked.stackable): "
            "train them one by one with training.train"), cure


def test_an_unknown_device_is_refused_before_anything_is_trained():
    assert refusal([BASE], device="gpu") == "unknown device 'gpu'; valid devices: auto, cpu, cuda"


# --------------------------------------------------------------------------- defaults, progress bar
def test_by_default_the_device_is_auto_and_the_training_prints_nothing(data, capsys):
    configs = stack_of(dict(epochs=1), (0.5, 1.0))
    assert StackedTrainer(configs).device == training.resolve_device("auto")
    results = train_stacked(configs, data)
    assert [r.run["device"] for r in results] == [training.resolve_device("auto")] * 2
    assert capsys.readouterr() == ("", "")


def test_the_progress_bar_counts_epochs_of_the_stack_and_is_erased_at_the_end(data, capsys):
    train_stacked(stack_of(dict(epochs=2), (0.5, 1.0, 2.0)), data, "cpu", progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "3 stacked sigmoid SGD: " in err and "| 0/2 [" in err  # its title, and the epochs to go
    assert "epoch/s]" in err or "s/epoch]" in err  # its unit
    assert "\n" not in err and err.endswith("\r")  # leave=False: the finished bar is wiped, no line is left


# --------------------------------------------------------------------------- time shares
def test_each_live_run_is_charged_an_equal_share_of_the_stacked_loop(data, monkeypatch):
    loop_times = []
    train_epoch = StackedTrainer.train_epoch

    def timed(self, *args):
        t0 = time.perf_counter()
        losses = train_epoch(self, *args)
        loop_times.append(time.perf_counter() - t0)
        return losses

    monkeypatch.setattr(StackedTrainer, "train_epoch", timed)
    configs = stack_of(dict(batch_size=10), (0.5, 1.0, 2.0, 3.0))
    t0 = time.perf_counter()
    results = train_stacked(configs, data, "cpu")
    call = time.perf_counter() - t0
    assert len(loop_times) == 2
    for epoch, loop in enumerate(loop_times):
        shares = [r.epochs[epoch]["epoch_time_s"] for r in results]
        assert len(set(shares)) == 1  # one share each
        assert loop <= sum(shares) <= 1.25 * loop + 0.01  # together: the loop's time, measured around train_epoch
    for r in results:
        assert r.run["train_time_s"] == sum(e["epoch_time_s"] for e in r.epochs) <= r.run["wall_time_s"] <= call
    assert sum(r.run["train_time_s"] for r in results) <= call


# --------------------------------------------------------------------------- a diverged model's rows
@pytest.fixture(scope="module")
def diverging(data):
    """Two models, the second (lr 1e3, momentum 0.9, linear) overflows in training; with the single runs."""
    configs = stack_of(dict(activation="identity", loss="cross_entropy", momentum=0.9, epochs=4), (1e-3, 1e3))
    with np.errstate(all="ignore"):
        return train_stacked(configs, data, "cpu"), [training.train(c, data, "cpu") for c in configs]


def test_a_model_diverged_in_training_is_not_evaluated_on_validation_or_test(diverging):
    stacked_runs, singles = diverging
    bad, single = stacked_runs[1], singles[1]
    assert bad.run["status"] == single.run["status"] == "diverged"
    last = bad.epochs[-1]
    assert not last["train_loss"] < 1e6  # diverged in training: NaN, inf or far above 100× its initial loss
    assert math.isnan(last["val_loss"]) and math.isnan(last["val_acc"])  # evaluation skipped, as train does
    assert math.isnan(single.epochs[-1]["val_loss"]) and math.isnan(single.epochs[-1]["val_acc"])
    assert math.isnan(bad.run["test_loss"]) and math.isnan(bad.run["test_acc"])
    assert math.isnan(bad.run["final_val_acc"])
    assert stacked_runs[0].run["status"] == "ok" and 0 < stacked_runs[0].run["test_acc"] <= 1


def test_a_frozen_model_stays_exactly_where_it_was_while_the_others_train(data):
    configs = stack_of({}, (0.5, 1.0))
    trainer = StackedTrainer(configs, "cpu")
    X, y = training.split_to_torch(data.train, torch.float64, "cpu")
    trainer.freeze(0)
    before = [p.detach().clone() for p in trainer.net.parameters]
    orders = np.stack([training.batch_order(c.seed, 1, N_TRAIN) for c in configs])
    trainer.train_epoch(X, y, orders, 64)
    for p, p0 in zip(trainer.net.parameters, before):
        assert torch.equal(p[0], p0[0])
        assert not torch.equal(p[1], p0[1])


# --------------------------------------------------------------------------- shapes, dtypes, kernels
def test_a_network_without_hidden_layers_stacks(data):
    configs = stack_of(dict(layer_sizes=(784, 10), epochs=1), (0.5, 2.0))
    for config, result in zip(configs, train_stacked(configs, data, "cpu")):
        assert_same_result(result, training.train(config, data, "cpu"))


def test_a_float32_stack_computes_in_float32_like_its_single_runs(data):
    configs = stack_of(dict(dtype="float32", epochs=1), (0.5, 2.0))
    trainer = StackedTrainer(configs, "cpu")
    assert {p.dtype for p in trainer.net.parameters} == {torch.float32}
    assert {p.dtype for p in trainer.net.unstacked(1).parameters()} == {torch.float32}
    assert trainer.keep.dtype == torch.float32
    for config, result in zip(configs, train_stacked(configs, data, "cpu")):
        single = training.train(config, data, "cpu")
        assert_same_numbers([result.run], [single.run], tol=1e-4)  # to float32 rounding
        assert_same_numbers(result.epochs, single.epochs, tol=1e-4)
        assert_same_numbers(result.layers, single.layers, tol=1e-4)


def test_mse_targets_have_a_column_per_output_even_when_a_batch_lacks_the_last_classes(data):
    configs = stack_of({}, (0.5, 1.0))
    net = StackedModel(configs, "cpu")
    X, _ = training.split_to_torch(data.train, torch.float64, "cpu")
    X = X[:6].view(2, 3, 784)
    y = torch.tensor([[0, 1, 2], [2, 1, 1]])  # no 3 to 9
    losses = net.losses(net.params, X, y).detach()
    for i in range(2):
        assert float(losses[i]) == pytest.approx(float(net.criterion(net.unstacked(i)(X[i]), y[i]).detach()), rel=TOL)


def test_the_stack_is_stepped_by_the_same_optimizer_kernel_as_a_single_run():
    for optimizer in ("Adam", "AdamW", "SGD"):
        configs = stack_of(dict(optimizer=optimizer, activation="relu", loss="cross_entropy", init="he"), (1e-3, 1e-2))
        single = training.TorchBackend(configs[0], "cpu").opt.defaults
        assert StackedTrainer(configs, "cpu").opt.defaults.get("fused") == single.get("fused")
        assert (single.get("fused") is True) == (optimizer in training.FUSED_ON_CPU)  # fused Adam(W) on the CPU


# A convolutional network: the stacked models run nn.Conv2d, nn.MaxPool2d and nn.AvgPool2d under torch.vmap
CONV_LAYERS = ("unflatten 1 28 28", "conv 3 5 stride=2 padding=1", "activation", "maxpool 2", "avgpool 2", "flatten",
               "linear 10")


def test_stacked_convolutional_runs_equal_their_single_runs(data):
    conv = dataclasses.replace(BASE, layer_sizes=RunConfig.layer_sizes, layers=CONV_LAYERS, optimizer="Adam",
                               activation="tanh", loss="cross_entropy", init="pytorch")
    configs = [dataclasses.replace(conv, seed=seed, lr=lr) for seed, lr in enumerate((1e-3, 1e-2))]
    assert all(stacked.should_stack(c, "cpu") for c in configs)  # small enough for the CPU rule
    for config, result in zip(configs, train_stacked(configs, data, "cpu")):
        assert_same_result(result, training.train(config, data, "cpu"))


@pytest.mark.parametrize("cell", ["rnn 4", "lstm 4", "gru 4"])
def test_recurrent_runs_are_never_stacked(cell, data):
    """torch.vmap has no batching rule for the fused RNN kernels: such runs train one by one, however small."""
    config = dataclasses.replace(BASE, layer_sizes=RunConfig.layer_sizes,
                                 layers=("unflatten 28 28", cell, "last", "linear 10"))
    assert stacked.step_work(config) <= stacked.CPU_STACK_MAX_WORK
    assert not stacked.stackable(config) and not stacked.should_stack(config, "cuda")
    with pytest.raises(ValueError, match="recurrent runs are never stacked"):
        train_stacked([config], data, "cpu")
