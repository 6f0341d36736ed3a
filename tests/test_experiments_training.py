"""Short real runs on MNIST: both backends learn, and with one seed in float64 they coincide."""
import dataclasses
import math

import numpy as np
import pytest

from experiments.data import load_mnist
from experiments.runs.training import RunConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

SMALL = dict(layer_sizes=(784, 64, 10), train_subset=2000, batch_size=64)


@pytest.fixture(scope="module")
def data():
    return load_mnist(train_subset=2000)


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
