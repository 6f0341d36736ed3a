"""Absolute facts about what both backends share: the batch order, the run key, the optimizer options.

These cannot be checked by the two backends agreeing with each other (they take them from the same code), so
each test states the fact itself. The tests that need torch are marked ``torch`` (``-m "facts and not torch"``
leaves them out) and say so in their names.
"""
import dataclasses
import hashlib
import json
import math
import re
import time

import numpy as np
import pytest

from experiments.data import MNIST, Split
from experiments.runs import training
from experiments.config import KEY_SCHEMA
from experiments.runs.training import ManualBackend, RunConfig, batch_order, run_columns, train

pytestmark = pytest.mark.facts  # absolute facts, stated by hand (tests/conftest.py)


# --------------------------------------------------------------------------- batch order
def test_each_epoch_is_a_permutation_of_every_index():
    for epoch in (1, 2, 3):
        order = batch_order(0, epoch, 1000)
        assert order.shape == (1000,)
        np.testing.assert_array_equal(np.sort(order), np.arange(1000))


def test_a_different_shuffle_every_epoch_and_every_seed():
    orders = [batch_order(seed, epoch, 1000) for seed in (0, 1) for epoch in (1, 2, 3)]
    for i, a in enumerate(orders):
        for b in orders[i + 1:]:
            assert np.mean(a == b) < 0.05  # two random permutations share ~1/n positions
    assert np.mean(orders[0] == np.arange(1000)) < 0.05  # shuffled, not the identity


def test_the_order_is_a_pure_function_of_seed_epoch_and_size():
    np.testing.assert_array_equal(batch_order(5, 2, 300), batch_order(5, 2, 300))
    np.testing.assert_array_equal(batch_order(5, 2, 300), np.random.default_rng([5, 2]).permutation(300))


def fake_mnist(n_train=64, n_val=40, seed=0) -> MNIST:
    """Random 'images' with random labels: enough to run the loop, torch-free and instant."""
    rng = np.random.default_rng(seed)

    def split(n):
        return Split(rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64))

    return MNIST(train=split(n_train), val=split(n_val), test=split(n_val))


TINY = dict(layer_sizes=(784, 8, 10), dtype="float64", optimizer="SGD", lr=0.1, momentum=0.9, batch_size=16,
            epochs=3, seed=3, activation="tanh", init="xavier")


def reference_losses(config, data, orders):
    """The training loss of each epoch when the manual backend is fed ``orders`` by hand."""
    backend = ManualBackend(config)
    X, y = backend.prepare(data.train)
    losses = []
    for order in orders:
        losses.append(backend.train_epoch(X, y, order, config.batch_size))
        backend.end_epoch()
    return losses


def test_the_training_loop_feeds_the_manual_backend_batch_order_of_each_epoch():
    """train() must hand epoch e the permutation batch_order(seed, e, n): its losses equal a hand-fed loop's,
    and differ from a loop that reuses one shuffle or none."""
    config, data = RunConfig(**TINY, backend="manual"), fake_mnist()
    n = len(data.train)
    result = train(config, data, "cpu")
    got = [row["train_loss"] for row in result.epochs]
    assert got == reference_losses(config, data, [batch_order(3, e, n) for e in (1, 2, 3)])
    assert got != pytest.approx(reference_losses(config, data, [batch_order(3, 1, n)] * 3), rel=1e-9)
    assert got != pytest.approx(reference_losses(config, data, [np.arange(n)] * 3), rel=1e-9)


@pytest.mark.torch
def test_the_torch_backend_consumes_the_same_order(one_torch_thread):
    config, data = RunConfig(**TINY, backend="torch"), fake_mnist()
    got = [row["train_loss"] for row in train(config, data, "cpu").epochs]
    expected = reference_losses(dataclasses.replace(config, backend="manual"), data,
                                [batch_order(3, e, len(data.train)) for e in (1, 2, 3)])
    assert got == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------- run keys
# for each field, a valid value other than the base's (BASE: SGD with momentum, so that momentum and nesterov
# may change); a field added later gets one from its type (see changed_value)
BASE = RunConfig(optimizer="SGD", momentum=0.9)
ALTERNATIVES = {"layer_sizes": (784, 64, 10), "activation": "tanh", "loss": "mse", "init": "xavier",
                "optimizer": "RMSprop", "lr": 0.1, "momentum": 0.5, "nesterov": True, "weight_decay": 1e-4,
                "schedule": "StepLR", "step_size": 2, "gamma": 0.1, "batch_size": 64, "epochs": 3, "seed": 1,
                "backend": "manual", "dtype": "float64", "train_subset": 1000,
                "layers": ("linear 64", "activation", "linear 10")}


def changed_value(f: dataclasses.Field, current):
    if f.name in ALTERNATIVES:
        return ALTERNATIVES[f.name]
    if isinstance(current, bool):
        return not current
    if current is None:
        return 1.0
    if isinstance(current, (int, float)):
        return current * 2 + 1
    raise AssertionError(f"add a valid alternative value for the new RunConfig field {f.name!r} to ALTERNATIVES")


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(RunConfig)])
def test_every_field_changes_the_run_key(name):
    f = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    changed = dataclasses.replace(BASE, **{name: changed_value(f, getattr(BASE, name))})
    assert getattr(changed, name) != getattr(BASE, name)
    assert changed.key() != BASE.key()


def test_keys_from_the_defaults_differ_too():
    """Starting from the default config (where only the changed field enters the hash)."""
    for name in ("weight_decay", "lr", "seed", "backend", "layer_sizes", "epochs"):
        assert RunConfig(**{name: ALTERNATIVES[name]}).key() != RunConfig().key(), name


def test_an_explicit_zero_weight_decay_is_its_own_run():
    """weight_decay=0.0 (no decay) is not weight_decay=None (AdamW's default 0.01): different runs."""
    assert RunConfig(optimizer="AdamW", weight_decay=0.0).key() != RunConfig(optimizer="AdamW").key()


def test_the_key_is_the_documented_hash():
    """sha1 of the sorted JSON of the schema and the changed fields, first 12 hex digits: stable across runs,
    processes and machines (no Python hash randomisation)."""
    def rule(**changed):
        text = json.dumps({"schema": KEY_SCHEMA, **changed}, sort_keys=True, default=list)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    assert RunConfig().key() == rule()
    assert RunConfig(lr=0.1, seed=2).key() == rule(lr=0.1, seed=2)
    assert RunConfig(layer_sizes=[784, 64, 10]).key() == rule(layer_sizes=[784, 64, 10])
    assert len(RunConfig().key()) == 12


def test_equal_configs_have_equal_keys():
    assert RunConfig(lr=0.01, seed=4).key() == RunConfig(seed=4, lr=0.01).key()
    assert RunConfig(lr=1e-3).key() == RunConfig().key()  # a field set to its default is not a change
    assert RunConfig(layer_sizes=[784, 128, 128, 10]).key() == RunConfig().key()


@dataclasses.dataclass(frozen=True)
class ConfigWithANewField(RunConfig):
    """What a later branch does: one more field, with a default that means 'off'."""

    new_knob: float | None = None


def test_a_new_field_at_its_default_keeps_every_existing_key():
    for kwargs in ({}, dict(lr=0.1), dict(optimizer="SGD", momentum=0.9, seed=2), dict(weight_decay=0.0)):
        assert ConfigWithANewField(**kwargs).key() == RunConfig(**kwargs).key(), kwargs
        assert ConfigWithANewField(**kwargs, new_knob=0.5).key() != RunConfig(**kwargs).key(), kwargs


# --------------------------------------------------------------------------- optimizer options
def test_an_explicit_zero_weight_decay_reaches_the_optimizer():
    """AdamW's default decay is 0.01: an explicit 0.0 must arrive as 0.0, and then a zero gradient moves nothing."""
    explicit = RunConfig(layer_sizes=(784, 4, 10), optimizer="AdamW", lr=0.1, weight_decay=0.0, backend="manual")
    default = dataclasses.replace(explicit, weight_decay=None)
    assert explicit.optimizer_kwargs() == {"lr": 0.1, "weight_decay": 0.0}
    assert default.optimizer_kwargs() == {"lr": 0.1}
    for config, factor in ((explicit, 1.0), (default, 1 - 0.1 * 0.01)):
        backend = ManualBackend(config)
        before = backend.net.state_dict()
        backend.opt.step({k: np.zeros_like(v) for k, v in before.items()})
        for k, v in backend.net.params.items():
            np.testing.assert_allclose(v, before[k] * factor, rtol=1e-15)


def test_optimizer_kwargs_pass_momentum_and_nesterov_only_where_they_exist():
    assert RunConfig(optimizer="SGD", momentum=0.9, nesterov=True, lr=0.1).optimizer_kwargs() == \
        {"lr": 0.1, "momentum": 0.9, "nesterov": True}
    assert RunConfig(optimizer="RMSprop", momentum=0.5, lr=0.1, weight_decay=1e-4).optimizer_kwargs() == \
        {"lr": 0.1, "momentum": 0.5, "weight_decay": 1e-4}
    assert RunConfig(optimizer="Adagrad", lr=0.1).optimizer_kwargs() == {"lr": 0.1}


def test_schedule_kwargs():
    assert RunConfig(schedule="StepLR", step_size=3, gamma=0.2).schedule_kwargs() == {"step_size": 3, "gamma": 0.2}
    assert RunConfig(schedule="CosineAnnealingLR", epochs=7).schedule_kwargs() == {"T_max": 7}


def test_the_manual_backend_builds_what_the_config_says():
    config = RunConfig(layer_sizes=(784, 4, 10), optimizer="SGD", lr=0.2, momentum=0.9, nesterov=True,
                       weight_decay=1e-3, schedule="StepLR", step_size=2, gamma=0.25, backend="manual",
                       dtype="float64", activation="tanh", init="xavier", seed=5)
    backend = ManualBackend(config)
    opt = backend.opt
    assert (type(opt).__name__, opt.lr, opt.momentum, opt.nesterov, opt.weight_decay) == ("SGD", 0.2, 0.9, True, 1e-3)
    assert (backend.scheduler.step_size, backend.scheduler.gamma) == (2, 0.25)
    assert [backend.end_epoch() for _ in range(4)] == pytest.approx([0.2, 0.05, 0.05, 0.0125], rel=1e-15)
    assert backend.net[1].name == "tanh" and backend.net.dtype == np.float64
    np.testing.assert_array_equal(backend.net.params["0.weight"],
                                  training.manual.init.init_params((784, 4, 10), "xavier", 5)["layers.0.weight"])
    assert ManualBackend(dataclasses.replace(config, schedule="none")).end_epoch() == 0.2


@pytest.mark.torch
def test_the_torch_optimizer_gets_the_explicit_zero_too(one_torch_thread):
    import torch

    p = [torch.zeros(2, requires_grad=True)]
    opt = training.make_torch_optimizer(RunConfig(optimizer="AdamW", weight_decay=0.0), p, "cpu")
    assert opt.param_groups[0]["weight_decay"] == 0.0
    assert training.make_torch_optimizer(RunConfig(optimizer="AdamW"), p, "cpu").param_groups[0]["weight_decay"] \
        == 0.01


# --------------------------------------------------------------------------- the recorded rows
def test_a_run_records_one_row_per_epoch_and_layer():
    config, data = RunConfig(**TINY, backend="manual"), fake_mnist()
    result = train(config, data, "cpu")
    run = result.run
    assert [row["epoch"] for row in result.epochs] == [1, 2, 3]
    assert [(row["epoch"], row["layer"]) for row in result.layers] == [(e, l) for e in range(4) for l in range(2)]
    assert {row["key"] for row in result.epochs + result.layers} == {config.key()} and run["key"] == config.key()
    assert run["status"] == "ok" and run["epochs_done"] == 3 and run["layer_sizes"] == "784-8-10"
    assert run["final_train_loss"] == result.epochs[-1]["train_loss"]
    assert run["final_val_acc"] == result.epochs[-1]["val_acc"]
    assert run["train_time_s"] == pytest.approx(sum(row["epoch_time_s"] for row in result.epochs))
    assert 0 <= run["test_acc"] <= 1 and run["device"] == "cpu"
    assert [row["lr"] for row in result.epochs] == [0.1] * 3  # no schedule: the lr in force during each epoch


def test_the_lr_column_is_the_rate_in_force_during_the_epoch():
    config = RunConfig(**{**TINY, "schedule": "StepLR", "step_size": 1, "gamma": 0.5}, backend="manual")
    assert [row["lr"] for row in train(config, fake_mnist(), "cpu").epochs] == [0.1, 0.05, 0.025]


def test_a_diverged_epoch_ends_the_run_with_nan_metrics():
    record = training.RunRecorder(RunConfig(), initial_loss=2.0)  # divergence bound 200: epoch 1 is ok
    record.epoch(1, 0.5, 0.1, 2.0, (0.4, 0.9))
    record.epoch(2, math.inf, 0.1, 3.0)
    result = record.finish((math.nan, math.nan), "cpu", 0.0)
    assert result.run["status"] == "diverged" and result.run["epochs_done"] == 2
    assert result.run["train_time_s"] == 5.0 and math.isnan(result.run["final_val_loss"])
    assert result.epochs[1]["train_loss"] == math.inf and math.isnan(result.epochs[1]["val_acc"])


def test_run_columns_flatten_the_config():
    row = run_columns(RunConfig(layer_sizes=(784, 32, 16, 10), weight_decay=0.0))
    assert row["layer_sizes"] == "784-32-16-10" and row["weight_decay"] == 0.0
    assert set(row) == {f.name for f in dataclasses.fields(RunConfig)} - {"layers"}  # the short form's columns
    row = run_columns(RunConfig(layers=("linear 32", "relu", "linear 10")))
    assert row["layers"] == "linear 32 | relu | linear 10" and set(row) == {f.name for f in dataclasses.fields(RunConfig)}


@pytest.mark.parametrize("given, plain", [
    (dict(lr=1), dict(lr=1.0)),
    (dict(optimizer="SGD", momentum=1), dict(optimizer="SGD", momentum=1.0)),
    (dict(seed=np.int64(3), epochs=np.int32(2), batch_size=np.int64(64)), dict(seed=3, epochs=2, batch_size=64)),
    (dict(lr=np.float32(0.5), gamma=np.float64(0.25)), dict(lr=float(np.float32(0.5)), gamma=0.25)),
    (dict(weight_decay=0, clip_grad_norm=2), dict(weight_decay=0.0, clip_grad_norm=2.0)),
    (dict(train_subset=np.int64(1000)), dict(train_subset=1000)),
])
def test_numbers_of_any_type_are_one_run_with_one_key(given, plain):
    config = RunConfig(**given)
    assert config.key() == RunConfig(**plain).key()
    assert config == RunConfig(**plain)
    for name, value in given.items():
        if not isinstance(value, str):
            assert type(getattr(config, name)) in (int, float), name  # plain Python numbers, whatever came in


@pytest.mark.parametrize("name", ["lr", "momentum", "gamma", "weight_decay"])
def test_a_number_field_given_a_string_or_a_bool_is_refused_by_name(name):
    for value in ("0.1", True):
        with pytest.raises(ValueError, match=f"^{name} must be a number: "):
            RunConfig(optimizer="SGD", **{name: value})


def test_a_batch_larger_than_the_training_set_is_refused():
    assert RunConfig(batch_size=1000, train_subset=1000).batch_size == 1000  # one batch per epoch: allowed
    with pytest.raises(ValueError, match=r"^batch_size must be at most the 1,000 training images, got 1001$"):
        RunConfig(batch_size=1001, train_subset=1000)
    with pytest.raises(ValueError, match=r"^batch_size must be at most the 50,000 training images, got 100000000$"):
        RunConfig(batch_size=100_000_000)


# --------------------------------------------------------------------------- the manual backend's loop
def manual_backend(**fields) -> ManualBackend:
    return ManualBackend(RunConfig(layer_sizes=(784, 3, 10), backend="manual", dtype="float64", optimizer="SGD",
                                   lr=0.1, **fields))


@pytest.mark.parametrize("dtype, numpy_dtype", [("float32", np.float32), ("float64", np.float64)])
def test_the_manual_backend_builds_its_network_in_the_configs_dtype(dtype, numpy_dtype):
    backend = ManualBackend(RunConfig(layer_sizes=(784, 3, 10), backend="manual", dtype=dtype))
    assert backend.net.dtype == numpy_dtype
    assert all(p.dtype == numpy_dtype for p in backend.net.params.values())


def unit_grads(norm: float) -> dict:
    """Gradients whose global L2 norm is exactly ``norm`` (3-4-5: (0.6, 0.8)·norm)."""
    return {"a": np.array([0.6 * norm]), "b": np.array([0.8 * norm])}


def test_clipping_by_norm_counts_a_step_exactly_when_torchs_scale_is_below_1():
    """torch scales by max_norm / (‖g‖ + 1e-6) when that is < 1: at ‖g‖ = max_norm the gradients do shrink (a step
    that clipping changed); at ‖g‖ = max_norm − 1e-6 the scale is exactly 1 and nothing changes."""
    backend = manual_backend(clip_grad_norm=0.5)
    assert backend.clip(unit_grads(0.5)) is True  # scale 0.5 / (0.5 + 1e-6) < 1
    exact = manual_backend(clip_grad_norm=0.5 + 1e-6)
    grads = unit_grads(0.5)
    assert exact.clip(grads) is False  # scale exactly 1: unchanged
    np.testing.assert_array_equal(grads["a"], [0.3])
    assert manual_backend(clip_grad_norm=0.5).clip(unit_grads(0.25)) is False


def test_clipping_by_value_counts_a_step_only_when_an_entry_exceeded_the_value():
    backend = manual_backend(clip_grad_value=0.5)
    assert backend.clip({"a": np.array([0.5, -0.5])}) is False  # at the bound: clamping changes nothing
    assert backend.clip({"a": np.array([0.5, -0.500001])}) is True


def one_image_split(n: int = 1) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64))


def test_the_clip_fraction_of_an_epoch_of_one_step_is_that_steps_0_or_1():
    backend = manual_backend(clip_grad_value=1e-12)
    X, y = backend.prepare(one_image_split(4))
    backend.train_epoch(X, y, np.arange(4), 4)  # one step, clipped
    assert backend.clip_frac == 1.0
    unclipped = manual_backend(clip_grad_value=1e12)
    unclipped.train_epoch(X, y, np.arange(4), 4)
    assert unclipped.clip_frac == 0.0
    plain = manual_backend()
    plain.train_epoch(X, y, np.arange(4), 4)
    assert math.isnan(plain.clip_frac)  # without clipping: NaN, not 0


def exploding_backend() -> tuple[ManualBackend, np.ndarray, np.ndarray]:
    """A manual network whose weights are 1e200: its forward pass overflows to inf, and log-softmax then
    computes inf − inf = NaN — both an overflow and an invalid operation."""
    backend = manual_backend()
    for p in backend.net.params.values():
        p[...] = 1e200
    X, y = backend.prepare(one_image_split(8))
    return backend, X, y


def test_a_diverging_manual_run_returns_its_non_finite_loss_and_warns_about_nothing():
    """A diverging run is recorded as diverged, not warned about: no RuntimeWarning from NumPy in a training epoch,
    an evaluation or a probe, and the epoch's loss comes back as the non-finite float that ends the run."""
    import warnings

    backend, X, y = exploding_backend()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = backend.train_epoch(X, y, np.arange(8), 4)
        assert isinstance(loss, float) and not math.isfinite(loss)
        val_loss, val_acc = backend.evaluate(X, y)
        assert not math.isfinite(val_loss) and 0 <= val_acc <= 1
        rows = backend.probe(X, y)
    assert len(rows) == 2 and math.isnan(backend.clip_frac)  # no clipping: NaN


# --------------------------------------------------------------------------- the torch backend's clip count
def torch_backend(**fields):
    return training.TorchBackend(RunConfig(layer_sizes=(784, 3, 10), dtype="float64", optimizer="SGD", lr=0.1,
                                           **fields), "cpu")


def torch_gradient_of_one_batch(X, y) -> tuple[float, float]:
    """The global L2 norm (as torch's clip_grad_norm_ computes it, to the last bit) and the largest |entry| of the
    first batch's gradient (the init is the seed's)."""
    import torch

    backend = torch_backend()
    backend.criterion(backend.model(X), y).backward()
    params = list(backend.model.parameters())
    norm = float(torch.nn.utils.clip_grad_norm_(params, 1e300))  # a bound that scales nothing
    return norm, float(max(p.grad.abs().max() for p in params))


@pytest.mark.torch
def test_the_torch_backend_counts_a_clipped_step_exactly_where_torch_scales_the_gradient():
    X, y = torch_backend().prepare(one_image_split(4))
    norm, largest = torch_gradient_of_one_batch(X, y)
    for fields, clipped in [(dict(clip_grad_norm=norm), 1.0),  # scale norm / (norm + 1e-6) < 1: shrunk
                            (dict(clip_grad_norm=norm + 1e-6), 0.0),  # scale exactly 1: unchanged
                            (dict(clip_grad_norm=2 * norm), 0.0),
                            (dict(clip_grad_value=largest), 0.0),  # at the bound: clamping changes nothing
                            (dict(clip_grad_value=largest * (1 - 1e-9)), 1.0)]:
        backend = torch_backend(**fields)
        backend.train_epoch(X, y, np.arange(4), 4)  # one step
        assert backend.clip_frac == clipped, fields
    plain = torch_backend()
    plain.train_epoch(X, y, np.arange(4), 4)
    assert math.isnan(plain.clip_frac)


# --------------------------------------------------------------------------- train()'s own arguments
@pytest.mark.torch
def test_make_backend_builds_the_manual_or_torch_backend_the_config_names(one_torch_thread):
    manual = training.make_backend(RunConfig(**TINY, backend="manual"))
    torch_backend = training.make_backend(RunConfig(**TINY, backend="torch"))
    assert type(manual) is ManualBackend and type(torch_backend) is training.TorchBackend
    assert torch_backend.device == training.resolve_device("auto")  # the default device is "auto"


@pytest.mark.torch
def test_train_runs_the_torch_backend_on_the_device_asked_for(one_torch_thread):
    config, data = RunConfig(**{**TINY, "epochs": 1}, backend="torch"), fake_mnist()
    assert train(config, data).run["device"] == training.resolve_device("auto")  # "auto" by default
    if training.resolve_device("auto") == "cpu":
        with pytest.raises(ValueError, match="no CUDA GPU is available"):  # the device given reaches the backend
            train(config, data, "cuda")
    else:
        assert train(config, data, "cuda").run["device"] == "cuda"


def test_train_is_silent_unless_asked_for_progress(capsys):
    config, data = RunConfig(**TINY, backend="manual"), fake_mnist()
    train(config, data, "cpu")
    train(config, data, "cpu", progress=False)
    assert capsys.readouterr().err == ""


def test_train_progress_names_the_run_counts_epochs_and_wipes_its_bar(capsys):
    train(RunConfig(**TINY, backend="manual"), fake_mnist(), "cpu", progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rmanual tanh SGD:   0%|") and "| 0/3 [" in err and "epoch/s" in err
    assert len(re.findall(r"epoch/s, loss=\d\.\d{4}, val_acc=0\.\d{4}\]", err)) == 3  # after each epoch
    assert err.endswith("\r") and err.split("\r")[-2].strip() == ""  # leave=False: a blank line at the end


def test_epoch_times_are_durations_inside_the_run():
    start = time.perf_counter()
    result = train(RunConfig(**TINY, backend="manual"), fake_mnist(), "cpu")
    elapsed = time.perf_counter() - start
    times = [row["epoch_time_s"] for row in result.epochs]
    assert all(t > 0 for t in times) and sum(times) <= elapsed


@pytest.mark.torch
def test_resolve_device_names_the_torch_device_or_says_why_not():
    import torch
    assert training.resolve_device() == training.resolve_device("auto") == \
        ("cuda" if torch.cuda.is_available() else "cpu")
    assert training.resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"^unknown device 'gpu'; valid devices: auto, cpu, cuda$"):
        training.resolve_device("gpu")
    if torch.cuda.is_available():
        assert training.resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(ValueError, match=r"^--device cuda was asked for but no CUDA GPU is available$"):
            training.resolve_device("cuda")


def test_the_recorder_keeps_the_initial_loss_and_the_test_metrics_in_their_columns():
    record = training.RunRecorder(RunConfig(), initial_loss=2.0)
    assert record.initial_loss == 2.0 and record.bound == 200.0  # DIVERGENCE_FACTOR × the loss at initialisation
    assert record.epoch(1, 0.5, 0.1, 2.0, (0.4, 0.9))
    result = record.finish((0.25, 0.875), "cpu", 0.0)
    assert result.epochs[0]["val_loss"] == 0.4 and result.epochs[0]["val_acc"] == 0.9
    assert result.run["test_loss"] == 0.25 and result.run["test_acc"] == 0.875
    for initial in (math.nan, math.inf, -math.inf):  # no usable reference: only a non-finite loss diverges
        assert training.RunRecorder(RunConfig(), initial_loss=initial).bound == math.inf


def test_a_diverged_training_loss_ends_the_run_whatever_the_validation_loss():
    record = training.RunRecorder(RunConfig(), initial_loss=2.0)
    assert not record.epoch(1, math.inf, 0.1, 2.0, (0.4, 0.9)) and record.status == "diverged"
    record = training.RunRecorder(RunConfig(), initial_loss=2.0)
    assert not record.epoch(1, 0.5, 0.1, 2.0, None) and record.status == "diverged"  # no validation result
    record = training.RunRecorder(RunConfig(), initial_loss=2.0)
    assert not record.epoch(1, 0.5, 0.1, 2.0, (201.0, 0.1)) and record.status == "diverged"  # above 100 × 2.0


@pytest.mark.parametrize("field, value, message", [
    ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
    ("gamma", 0.0, "gamma must be a finite number > 0, got 0.0"),
    ("momentum", -0.1, "momentum must be a finite number ≥ 0, got -0.1"),
    ("seed", -1, "seed must be ≥ 0, got -1"),
    ("epochs", 0, "epochs must be ≥ 1, got 0"),
    ("seed", 1.5, "seed must be an integer ≥ 0, got 1.5"),
    ("train_subset", 100.5, r"train_subset must be an integer between 1 and 50,000 \(or None: all\), got 100.5"),
])
def test_a_number_at_the_edge_of_its_range_is_refused_by_name(field, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        RunConfig(**{field: value})


def test_a_dtype_neither_backend_trains_in_is_refused_when_the_config_is_made():
    with pytest.raises(ValueError, match=r"^unsupported dtype 'float16'; valid dtypes: float32, float64$"):
        RunConfig(dtype="float16")
