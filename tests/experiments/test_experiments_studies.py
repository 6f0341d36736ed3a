"""Sweeps: the results store, resuming, diverged runs, --force, CUDA stacking (the study runner itself:
tests/experiments/test_experiments_study_run.py)."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from experiments import store as results_store
from experiments.runs import training
from experiments.files import write_csv
from experiments.execute import ExecOptions, train_pending
from experiments.runs.training import RunConfig

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py
MNIST_TRAIN = 500  # training images of the data fixture (tests/conftest.py)

BASE = RunConfig(layer_sizes=(784, 32, 10), train_subset=500, epochs=1, batch_size=64, optimizer="SGD",
                 momentum=0.9, init="xavier")
DIVERGING = dataclasses.replace(BASE, activation="identity", init="normal", lr=1e3, epochs=3)
RUN_COLUMNS = {"key", "layer_sizes", "activation", "loss", "init", "optimizer", "lr", "momentum", "nesterov",
               "weight_decay", "schedule", "step_size", "gamma", "batch_size", "epochs", "seed", "backend", "dtype",
               "train_subset", "batch_norm", "clip_grad_norm", "clip_grad_value", "status", "epochs_done",
               "final_train_loss", "final_val_loss", "final_val_acc", "test_loss", "test_acc", "device",
               "train_time_s", "wall_time_s", "message", "stacked", "host"}
EPOCH_COLUMNS = {"key", "epoch", "train_loss", "val_loss", "val_acc", "lr", "epoch_time_s", "clip_frac"}
LAYER_COLUMNS = {"key", "epoch", "layer", "grad_norm", "dead_frac", "saturated_frac", "act_mean", "act_std"}


@pytest.fixture
def count_training(monkeypatch):
    """The keys trained, alone by training.train or in a stack by stacked.train_stacked."""
    from experiments.runs import stacked

    calls = []

    def counted(config, *args, **kwargs):
        calls.append(config.key())
        with np.errstate(all="ignore"):
            return real_train(config, *args, **kwargs)

    def counted_stack(configs, *args, **kwargs):
        calls.extend(c.key() for c in configs)
        with np.errstate(all="ignore"):
            return real_stacked(configs, *args, **kwargs)

    real_train, real_stacked = training.train, stacked.train_stacked
    monkeypatch.setattr(training, "train", counted)
    monkeypatch.setattr(stacked, "train_stacked", counted_stack)
    return calls


def configs(*lrs, seed=0):
    return [dataclasses.replace(BASE, lr=lr, seed=seed) for lr in lrs]


def test_csv_schemas_and_keys_join_the_tables(tmp_path, data, count_training):
    store = results_store.Store(tmp_path)
    train_pending(configs(0.05) + [dataclasses.replace(BASE, layer_sizes=(784, 16, 16, 10))], data, store,
                  ExecOptions(device="cpu", progress=False))
    runs, epochs, layers = (pd.read_csv(tmp_path / f"{name}.csv", dtype={"key": str})
                            for name in ("runs", "epochs", "layers"))
    assert set(runs.columns) == RUN_COLUMNS
    assert set(epochs.columns) == EPOCH_COLUMNS
    assert set(layers.columns) == LAYER_COLUMNS
    assert len(runs) == 2 and runs["key"].is_unique
    assert set(epochs["key"]) == set(layers["key"]) == set(runs["key"])
    assert len(epochs) == 2 * BASE.epochs
    assert len(layers) == (2 + 3) * (BASE.epochs + 1)  # layers × (initialisation + epochs)
    assert runs.loc[0, "layer_sizes"] == "784-32-10" and runs.loc[0, "status"] == "ok"


def test_a_repeated_sweep_trains_nothing(tmp_path, data, count_training):
    sweep = configs(0.01, 0.1)
    assert train_pending(sweep, data, results_store.Store(tmp_path), ExecOptions(device="cpu", progress=False)) == 2
    assert len(count_training) == 2
    assert train_pending(sweep, data, results_store.Store(tmp_path), ExecOptions(device="cpu", progress=False)) == 0
    assert len(count_training) == 2


def test_force_retrains_each_run_once(tmp_path, data, count_training):
    sweep = configs(0.01, 0.1)
    train_pending(sweep, data, results_store.Store(tmp_path), ExecOptions(device="cpu", progress=False))
    store = results_store.Store(tmp_path)
    before = store.tables.runs.set_index("key")["wall_time_s"]
    assert train_pending(sweep, data, store, ExecOptions(device="cpu", force=True, progress=False)) == 2
    assert train_pending(sweep, data, store, ExecOptions(device="cpu", force=True, progress=False)) == 0  # done in this session
    assert len(count_training) == 4
    after = results_store.load(tmp_path).runs.set_index("key")["wall_time_s"]
    assert len(after) == 2 and not after.equals(before)  # replaced, not appended
    assert len(results_store.load(tmp_path).epochs) == 2 * BASE.epochs


def test_a_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path, data, count_training):
    store = results_store.Store(tmp_path)
    train_pending([DIVERGING] + configs(0.05), data, store, ExecOptions(device="cpu", progress=False))
    runs = results_store.load(tmp_path).runs.set_index("key")
    assert runs.loc[DIVERGING.key(), "status"] == "diverged"
    assert runs.loc[configs(0.05)[0].key(), "status"] == "ok"


def test_orphan_rows_of_an_unfinished_run_are_dropped_on_load(tmp_path, data):
    store = results_store.Store(tmp_path)
    train_pending(configs(0.05), data, store, ExecOptions(device="cpu", progress=False))
    orphan = store.tables.epochs.assign(key="deadbeef0000")  # rows written before the run's runs.csv row
    write_csv(pd.concat([store.tables.epochs, orphan]), tmp_path / "epochs.csv")
    tables = results_store.load(tmp_path)
    assert set(tables.epochs["key"]) == {configs(0.05)[0].key()}
    assert not results_store.Store(tmp_path).has("deadbeef0000")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_train_pending_stacks_seeds_and_lrs(tmp_path, monkeypatch, data):
    from experiments.runs import stacked

    groups = []
    real = stacked.train_stacked

    def recorded(group, *args, **kwargs):
        groups.append(len(group))
        return real(group, *args, **kwargs)

    monkeypatch.setattr(stacked, "train_stacked", recorded)
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("the CUDA path must stack"))
    sweep = configs(0.01, 0.1) + configs(0.01, 0.1, seed=1) + [dataclasses.replace(BASE, activation="tanh")]
    store = results_store.Store(tmp_path)
    assert train_pending(sweep, data, store, ExecOptions(device="cuda", progress=False)) == 5
    assert sorted(groups) == [1, 4]
    runs = results_store.load(tmp_path).runs
    assert set(runs["device"]) == {"cuda"} and (runs["status"] == "ok").all()
