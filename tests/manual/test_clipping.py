"""Gradient clipping: ``manual.optim.clip_grad_norm_``/``clip_grad_value_`` equal ``torch.nn.utils``' own, and the
training loop's ``clip_grad_norm``/``clip_grad_value`` and ``batch_norm`` options give both backends the same runs."""
import dataclasses
import math

import numpy as np
import pytest
import torch

import manual
from experiments.runs import stacked
from experiments.runs.training import RunConfig, train
from manual.optim import clip_grad_norm_, clip_grad_value_

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py
MNIST_TRAIN = 300  # training images of the data fixture (tests/conftest.py)


def gradients(scale: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"layers.0.weight": rng.standard_normal((5, 4)) * scale, "layers.0.bias": rng.standard_normal(5) * scale,
            "layers.1.weight": rng.standard_normal((3, 5)) * scale}


def as_tensors(grads: dict) -> list:
    params = []
    for g in grads.values():
        p = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        p.grad = torch.tensor(g)
        params.append(p)
    return params


@pytest.mark.parametrize("scale, max_norm", [(10.0, 1.0), (1.0, 3.0), (0.1, 0.05), (0.0, 1.0), (1e3, 1e-3)])
def test_clip_grad_norm_equals_torch(scale, max_norm):
    grads = gradients(scale)
    params = as_tensors(grads)
    before = {k: g.copy() for k, g in grads.items()}
    total = clip_grad_norm_(grads, max_norm)
    ttotal = torch.nn.utils.clip_grad_norm_(params, max_norm)
    assert total == pytest.approx(ttotal.item(), rel=1e-14, abs=1e-300)
    assert total == pytest.approx(math.sqrt(sum(np.sum(g * g) for g in before.values())), rel=1e-14, abs=1e-300)
    for g, p in zip(grads.values(), params):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-14, atol=0)
    after = math.sqrt(sum(np.sum(g * g) for g in grads.values()))
    if total > max_norm:  # clipped: the same direction, the norm just under max_norm
        assert after == pytest.approx(max_norm, rel=1e-5)
        for key, g in grads.items():
            np.testing.assert_allclose(g * total, before[key] * after, rtol=1e-12)
    else:  # untouched, bit for bit
        for key, g in grads.items():
            np.testing.assert_array_equal(g, before[key])


@pytest.mark.parametrize("scale, clip_value", [(10.0, 1.0), (1.0, 0.5), (0.1, 1.0)])
def test_clip_grad_value_equals_torch(scale, clip_value):
    grads = gradients(scale, seed=1)
    largest = max(np.abs(g).max() for g in grads.values())
    params = as_tensors(grads)
    assert clip_grad_value_(grads, clip_value) == largest  # the largest |entry| before clipping
    torch.nn.utils.clip_grad_value_(params, clip_value)
    for g, p in zip(grads.values(), params):
        np.testing.assert_array_equal(g, p.grad.numpy())
        assert np.abs(g).max() <= clip_value


def test_a_non_finite_norm_spoils_the_gradients_as_in_torch():
    grads = gradients(1.0)
    grads["layers.0.bias"][0] = np.inf
    params = as_tensors(grads)
    with np.errstate(invalid="ignore"):
        assert clip_grad_norm_(grads, 1.0) == math.inf
    assert torch.nn.utils.clip_grad_norm_(params, 1.0).item() == math.inf
    for g, p in zip(grads.values(), params):
        np.testing.assert_array_equal(g, p.grad.numpy())  # 0 where finite, NaN where infinite, on both sides


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_non_positive_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="max_norm must be positive"):
        clip_grad_norm_(gradients(1.0), bad)
    with pytest.raises(ValueError, match="clip_value must be positive"):
        clip_grad_value_(gradients(1.0), bad)


def test_clipping_functions_are_exported_where_torch_users_look():
    assert manual.optim.clip_grad_norm_ is clip_grad_norm_ and manual.optim.clip_grad_value_ is clip_grad_value_


# --------------------------------------------------------------------------- the training loop
TINY = RunConfig(layer_sizes=(784, 16, 16, 10), activation="sigmoid", loss="cross_entropy", init="xavier",
                 optimizer="SGD", momentum=0.9, lr=0.5, batch_size=32, epochs=2, train_subset=300, dtype="float64",
                 seed=4)


@pytest.mark.parametrize("options", [dict(batch_norm=True), dict(clip_grad_norm=0.5),
                                     dict(batch_norm=True, clip_grad_value=0.01)], ids=str)
def test_batch_norm_and_clipped_runs_give_both_backends_the_same_curves(data, options):
    config = dataclasses.replace(TINY, **options)
    runs = {b: train(dataclasses.replace(config, backend=b), data, "cpu") for b in ("manual", "torch")}
    assert runs["manual"].run["status"] == runs["torch"].run["status"] == "ok"
    for a, b in zip(runs["manual"].epochs, runs["torch"].epochs, strict=True):
        for metric in ("train_loss", "val_loss", "val_acc", "clip_frac"):
            assert a[metric] == pytest.approx(b[metric], rel=1e-10, abs=1e-12, nan_ok=True), metric
    for a, b in zip(runs["manual"].layers, runs["torch"].layers, strict=True):
        for metric in ("grad_norm", "act_mean", "act_std", "saturated_frac"):
            assert a[metric] == pytest.approx(b[metric], rel=1e-9, abs=1e-15, nan_ok=True), metric
    assert runs["manual"].run["test_acc"] == runs["torch"].run["test_acc"]
    clip_frac = [row["clip_frac"] for row in runs["manual"].epochs]
    clipping = "clip_grad_norm" in options or "clip_grad_value" in options
    assert all(0 < c <= 1 for c in clip_frac) if clipping else all(math.isnan(c) for c in clip_frac)


def test_batch_norm_probe_sees_batch_statistics_and_leaves_running_estimates_alone(data):
    """At initialisation the running estimates (0, 1) would hide batch norm; the probe uses the batch's own."""
    from experiments.runs.training import ManualBackend, PROBE_SIZE

    backend = ManualBackend(dataclasses.replace(TINY, init="normal", batch_norm=True))
    X, y = backend.prepare(data.val)
    before = backend.net.state_dict()
    rows = backend.probe(X[:PROBE_SIZE], y[:PROBE_SIZE])
    for key, value in backend.net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    assert not backend.net.training
    # N(0, 1) weights on 784 inputs give |z| of about 10: sigmoid saturates without normalisation, not with it
    plain = ManualBackend(dataclasses.replace(TINY, init="normal"))
    assert plain.probe(X[:PROBE_SIZE], y[:PROBE_SIZE])[0]["saturated_frac"] > 0.5
    assert rows[0]["saturated_frac"] < 0.05


def test_clipping_tames_an_exploding_run(data):
    """A deep ReLU net with N(0, 1) weights diverges at this rate; clipping the norm to 1 keeps it finite."""
    wild = dataclasses.replace(TINY, layer_sizes=(784,) + (32,) * 6 + (10,), activation="relu", init="normal",
                               lr=0.05, dtype="float32", epochs=2)
    with np.errstate(all="ignore"):
        assert train(wild, data, "cpu").run["status"] == "diverged"
        clipped = train(dataclasses.replace(wild, clip_grad_norm=1.0), data, "cpu")
    assert clipped.run["status"] == "ok"
    assert clipped.epochs[0]["clip_frac"] == 1.0  # every step of the first epoch was clipped


@pytest.mark.parametrize("options, message", [
    (dict(clip_grad_norm=0.0), "clip_grad_norm must be a positive finite number or None"),
    (dict(clip_grad_value=-1.0), "clip_grad_value must be a positive finite number or None"),
    (dict(clip_grad_norm=math.inf), "clip_grad_norm must be a positive finite number"),
    (dict(clip_grad_norm=math.nan), "clip_grad_norm must be a positive finite number"),
    (dict(clip_grad_norm=1.0, clip_grad_value=1.0), "alternatives: set one of them"),
    (dict(batch_norm=True, batch_size=1), "leaves a mini-batch of 1 image"),
    (dict(batch_norm=True, batch_size=32, train_subset=321), "leaves a mini-batch of 1 image"),
    (dict(batch_norm="yes"), "batch_norm must be true or false"),
])
def test_bad_clipping_and_batch_norm_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **options)


def test_new_fields_at_their_defaults_keep_every_key():
    assert RunConfig().key() == dataclasses.replace(RunConfig(), batch_norm=False, clip_grad_norm=None).key()
    assert RunConfig(batch_norm=True).key() != RunConfig().key()


def test_batch_norm_and_clipped_runs_are_never_stacked(data):
    configs = [dataclasses.replace(TINY, backend="torch", seed=s) for s in (0, 1)]
    assert stacked.stackable(configs[0])
    for options in (dict(batch_norm=True), dict(clip_grad_norm=1.0), dict(clip_grad_value=1.0)):
        changed = [dataclasses.replace(c, **options) for c in configs]
        assert not stacked.stackable(changed[0])
        with pytest.raises(ValueError, match="batch-norm, clipped and recurrent runs are never stacked"):
            stacked.train_stacked(changed, data, "cpu")
