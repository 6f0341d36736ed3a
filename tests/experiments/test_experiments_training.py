"""Short real runs on MNIST: both backends learn, and with one seed in float64 they coincide."""
import dataclasses
import math

import numpy as np
import pytest

from experiments.runs.training import DIVERGENCE_FACTOR, RunConfig, RunRecorder, train

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py
MNIST_TRAIN = 2000  # training images of the data fixture (tests/conftest.py)

SMALL = dict(layer_sizes=(784, 64, 10), train_subset=2000, batch_size=64)


@pytest.mark.parametrize("backend", ["torch", "manual"])
def test_a_short_run_beats_chance_by_far(data, backend):
    config = RunConfig(**SMALL, optimizer="Adam", lr=3e-3, epochs=2, backend=backend)
    result = train(config, data, "cpu")
    assert result.run["status"] == "ok"
    assert result.run["final_val_acc"] > 0.8 and result.run["test_acc"] > 0.8  # chance is 0.1
    assert result.epochs[1]["train_loss"] < result.epochs[0]["train_loss"]


def test_same_seed_float64_gives_both_backends_the_same_curves(data):
    config = RunConfig(**SMALL, activation="tanh", init="xavier", optimizer="SGD", momentum=0.9, nesterov=True,
                       lr=0.05, epochs=2, dtype="float64", schedule="StepLR", seed=3)
    runs = {b: train(dataclasses.replace(config, backend=b), data, "cpu") for b in ("manual", "torch")}
    for a, b in zip(runs["manual"].epochs, runs["torch"].epochs):
        for metric in ("train_loss", "val_loss", "val_acc", "lr"):
            assert a[metric] == pytest.approx(b[metric], rel=1e-10, abs=1e-12), metric
    grads = [np.array([row["grad_norm"] for row in runs[b].layers]) for b in ("manual", "torch")]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9)
    assert runs["manual"].run["test_acc"] == runs["torch"].run["test_acc"]


def test_a_nan_loss_stops_the_run_as_diverged(data):
    config = RunConfig(**SMALL, activation="identity", init="normal", optimizer="SGD", momentum=0.9, lr=1e3,
                       epochs=4)
    with np.errstate(all="ignore"):
        result = train(config, data, "cpu")
    assert result.run["status"] == "diverged"
    assert result.run["epochs_done"] < config.epochs
    assert not math.isfinite(result.epochs[-1]["train_loss"]) and math.isnan(result.run["test_acc"])


def test_an_exploding_loss_is_diverged_though_finite(data):
    """lr 1e6 sends the loss to ~1e14 (Adam) or ~1e23 (SGD), finite and at chance: diverged, by the 100× rule."""
    for backend in ("torch", "manual"):
        config = RunConfig(**SMALL, lr=1e6, epochs=3, backend=backend)
        with np.errstate(all="ignore"):
            result = train(config, data, "cpu")
        assert result.run["status"] == "diverged" and result.run["epochs_done"] == 1, backend
        assert math.isfinite(result.epochs[0]["train_loss"]) and result.epochs[0]["train_loss"] > 1e6
        assert math.isnan(result.run["test_acc"])


def test_the_divergence_rule_is_100_times_the_initial_loss():
    record = RunRecorder(RunConfig(), initial_loss=2.0)
    assert DIVERGENCE_FACTOR == 100
    assert not record.diverges(200.0) and record.diverges(200.001)
    assert record.diverges(math.nan) and record.diverges(math.inf) and record.diverges(-math.inf)
    assert record.epoch(1, 1.5, 0.1, 1.0, (1.2, 0.6)) and record.status == "ok"
    assert not record.epoch(2, 1.5, 0.1, 1.0, (250.0, 0.1))  # a validation loss beyond the bound ends it too
    assert record.status == "diverged"
    unknown = RunRecorder(RunConfig(), initial_loss=math.nan)  # no finite reference: only NaN/inf diverge
    assert not unknown.diverges(1e30) and unknown.diverges(math.inf)


DEFAULT = "the optimizer's default"


@pytest.mark.parametrize("fields, message", [
    (dict(lr=0.0), "lr must be a finite number > 0, got 0.0"),
    (dict(lr=math.inf), "lr must be a finite number > 0, got inf"),
    (dict(lr=math.nan), "lr must be a finite number > 0, got nan"),
    (dict(lr="0.1"), "lr must be a number: a finite number > 0, got '0.1'"),
    (dict(optimizer="SGD", momentum=-0.9), "momentum must be a finite number ≥ 0, got -0.9"),
    (dict(optimizer="SGD", momentum=math.nan), "momentum must be a finite number ≥ 0, got nan"),
    (dict(weight_decay=-1e-4), f"weight_decay must be a finite number ≥ 0 (or None: {DEFAULT}), got -0.0001"),
    (dict(weight_decay=math.nan), f"weight_decay must be a finite number ≥ 0 (or None: {DEFAULT}), got nan"),
    (dict(optimizer="SGD", nesterov=True), "nesterov needs a momentum > 0 (e.g. momentum 0.9), got momentum 0"),
    (dict(nesterov=True), "nesterov applies to SGD only"),
    (dict(momentum=0.9), "Adam takes no momentum (only SGD and RMSprop do)"),
    (dict(seed=-1), "seed must be ≥ 0, got -1"),
    (dict(train_subset=50_001), "train_subset must be between 1 and 50,000 (or None: all), got 50001"),
    (dict(train_subset=0), "train_subset must be between 1 and 50,000 (or None: all), got 0"),
    (dict(epochs=0), "epochs must be ≥ 1, got 0"),
    (dict(epochs=1.5), "epochs must be an integer ≥ 1, got 1.5"),
    (dict(batch_size=0), "batch_size must be ≥ 1, got 0"),
    (dict(schedule="StepLR", gamma=math.nan), "gamma must be a finite number > 0, got nan"),
    (dict(schedule="StepLR", step_size=0), "step_size must be ≥ 1, got 0"),
    (dict(layer_sizes=(100, 10)), "MNIST needs 784 inputs and 10 outputs, got layer sizes (100, 10)"),
    (dict(layer_sizes=(784, 10, 12)), "MNIST needs 784 inputs and 10 outputs, got layer sizes (784, 10, 12)"),
    (dict(init="kaiming"), "unknown init 'kaiming'; valid inits: normal, xavier, he, pytorch"),
    (dict(schedule="OneCycle"), "unknown schedule 'OneCycle'; valid schedules: none, StepLR, CosineAnnealingLR"),
    (dict(backend="jax"), "unknown backend 'jax'; valid backends: manual, torch"),
    (dict(clip_grad_norm=0.0), "clip_grad_norm must be a positive finite number or None (no clipping), got 0.0"),
    (dict(clip_grad_norm=True), "clip_grad_norm must be a positive finite number or None (no clipping), got True"),
    (dict(clip_grad_value=math.inf), "clip_grad_value must be a positive finite number or None (no clipping), got inf"),
    (dict(clip_grad_norm=1.0, clip_grad_value=1.0), "clip_grad_norm and clip_grad_value are alternatives: set one of "
                                                    "them"),
    (dict(batch_norm=1), "batch_norm must be true or false, got 1"),
    (dict(batch_norm=True, batch_size=1), "batch_norm with batch_size 1 and 50000 training images leaves a "
     "mini-batch of 1 image, whose batch variance is 0 (PyTorch refuses it too): choose another batch_size or "
     "train_subset"),
    (dict(batch_norm=True, train_subset=1001, batch_size=100), "batch_norm with batch_size 100 and 1001 training "
     "images leaves a mini-batch of 1 image, whose batch variance is 0 (PyTorch refuses it too): choose another "
     "batch_size or train_subset"),
])
def test_run_config_rejects_bad_values_by_name(fields, message):
    """The whole message, word for word: it is what the user reads."""
    with pytest.raises(ValueError) as error:
        RunConfig(**fields)
    assert str(error.value) == message


def test_limits_that_are_allowed_are_accepted():
    """Each bound itself is inside: the smallest values, a batch norm split whose last batch has 2 rows."""
    RunConfig(train_subset=1, batch_size=1, epochs=1, seed=0, step_size=1, optimizer="SGD", momentum=0.0)
    RunConfig(train_subset=50_000, weight_decay=0.0, clip_grad_norm=1e-12)
    RunConfig(batch_norm=True, train_subset=1002, batch_size=100)
    RunConfig(batch_norm=True, train_subset=1000, batch_size=100)
