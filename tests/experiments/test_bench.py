"""``experiments.bench``: every configuration × implementation it times really trains, and ``bench --quick`` writes its files."""
from __future__ import annotations

import dataclasses

import numpy as np

import manual.nn
import pandas as pd
import pytest
import torch

from experiments import bench
from experiments.bench.baselines import PerExampleLoop
from experiments.bench.report import COLUMNS, RATIO_COLUMNS, impl_labels
from experiments.cli import main
from experiments.data import DEFAULT_ROOT

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]
MNIST_TRAIN = 1000  # training images of the data fixture (tests/conftest.py)
CPU_IMPLS = [i for i in bench.IMPLEMENTATIONS + bench.EXTRA_AT_128 + bench.STACK_IMPLS if i.device == "cpu"]
CUDA_IMPLS = [i for i in bench.IMPLEMENTATIONS + bench.STACK_IMPLS if i.device == "cuda"]


def passes_losses(impl, name: str, batch: int, data, passes: int = 3, examples: int = 500) -> list[float]:
    """Mean training loss of each of ``passes`` runs over ``examples`` images (per model)."""
    config = dataclasses.replace(bench.CONFIGS[name], batch_size=batch)
    trainer = bench.build_trainer(impl, name, config, data, DEFAULT_ROOT)
    return [trainer.run(examples, epoch) for epoch in range(1, passes + 1)]


def assert_learns(losses: list[float]) -> None:
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("name,batch", bench.HEADLINE)
@pytest.mark.parametrize("impl", CPU_IMPLS, ids=lambda i: i.label)
def test_every_configuration_and_implementation_trains(impl, name, batch, data):
    many = impl.name.endswith("-16")  # sixteen models: fewer images each
    assert_learns(passes_losses(impl, name, batch, data, examples=256 if many else 500))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name,batch", bench.HEADLINE)
@pytest.mark.parametrize("impl", CUDA_IMPLS, ids=lambda i: i.label)
def test_every_configuration_trains_on_cuda(impl, name, batch, data):
    assert_learns(passes_losses(impl, name, batch, data))


def test_the_per_example_loop_computes_manuals_gradients(data):
    """Backpropagating one example at a time and averaging gives the batched gradient."""
    config = dataclasses.replace(bench.CONFIGS["modern"], dtype="float64")
    loop = PerExampleLoop(config)
    net = bench.training.ManualBackend(config).net
    X, y = loop.prepare(data.train)
    sums = [0.0] * loop.n_layers
    for i in range(8):
        _, _, nabla_w = loop.backprop(X[i], y[i])
        sums = [s + w for s, w in zip(sums, nabla_w)]
    _, grads = manual.nn.loss_and_grads(net, data.train.features(np.float64)[:8], data.train.labels[:8],
                                        config.loss)
    for l in range(loop.n_layers):  # the Sequential's linear layers are its children 0, 2, 4, …
        np.testing.assert_allclose(sums[l] / 8, grads[f"{2 * l}.weight"], rtol=1e-10, atol=1e-14)


def test_bench_quick_writes_csv_ratios_markdown_and_plots(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out), "--no-progress", "--only", "timings"]) == 0
    rows = pd.read_csv(out / "bench.csv")
    assert tuple(rows.columns) == COLUMNS
    assert set(rows.kind) == {"epoch", "stacked", "width", "batch"}
    measured = rows[rows.status == "measured"]
    assert len(measured) == len(rows) and (measured.examples_per_s > 0).all()
    assert {"manual float64 (cpu)", "manual float32 (cpu)"} <= set(impl_labels(rows))  # the plots' lines
    assert (measured.min_s_per_epoch <= measured.median_s_per_epoch).all()
    assert (measured.median_s_per_epoch <= measured.max_s_per_epoch).all()
    ratios = pd.read_csv(out / "ratios.csv")
    assert tuple(ratios.columns) == RATIO_COLUMNS
    assert set(ratios.met) <= {"yes", "no", "n/a (GPU target)"}
    assert (ratios.ratio > 0).all()
    text = (out / "BENCH.md").read_text()
    for needle in ("## Machine", "## Targets", "cpu cores", "torch threads", "throughput_vs_width.png"):
        assert needle in text
    assert (out / "throughput_vs_width.png").stat().st_size > 0 and (out / "throughput_vs_batch.png").exists()


def test_gpu_rows_without_a_gpu_are_marked_not_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "cuda_available", lambda: False)
    item = next(i for i in bench.plan(bench.Settings.quick(), MNIST_TRAIN) if i.impl.device == "cuda")
    row = bench.measure(item, None, bench.Settings.quick(), DEFAULT_ROOT, 1)
    assert row["status"] == bench.NOT_MEASURED and "median_s_per_epoch" not in row


def test_bench_sweep_times_one_study_per_mode_side_by_side(tmp_path, monkeypatch):
    from experiments.bench import sweep

    every = sweep.modes(2)
    assert {(m.name, m.device) for m in every} >= {("sequential", "cpu"), ("workers", "cpu"), ("stacked", "cpu"),
                                                   ("ray", "cpu"), ("stacked", "cuda")}
    assert all(sweep.stacked.should_stack(c, "cpu") for c in sweep.study(False)) and len(sweep.study(False)) == 32
    # the pool and Ray themselves are timed in tests/experiments/test_execute.py's way; here the in-process modes and a
    # GPU row
    monkeypatch.setattr(sweep, "modes", lambda workers: [m for m in every if m.executor == "local" and m.workers == 1])
    monkeypatch.setattr(bench, "cuda_available", lambda: False)
    out = tmp_path / "bench"
    assert main(["bench", "--only", "sweep", "--quick", "--out", str(out), "--no-progress"]) == 0
    rows = pd.read_csv(out / "sweep.csv").set_index(["mode", "device"])
    assert rows.loc[("sequential", "cpu"), "ratio_to_sequential"] == 1
    assert rows.loc[("sequential", "cpu"), "runs_differing"] == 0
    assert rows.loc[("stacked", "cpu"), "max_test_acc_diff"] < 0.01  # float32 rounding, 4 short runs
    assert rows.loc[("stacked", "cpu"), "runs_per_min"] > 0
    assert rows.loc[("stacked", "cuda"), "status"] == bench.NOT_MEASURED
    text = (out / "SWEEP.md").read_text()
    assert "| stacked | cuda | 1 | yes | not measured (no GPU lent)" in text and "vs sequential" in text
    assert not (out / "BENCH.md").exists()
