"""The diagnostics against numbers worked out by hand: dead and saturated fractions, gradient norms, activation
statistics (``runs.diagnostics.layer_stats`` and the backends' probes), and the hidden-layer means of the report.

Saturation is Glorot & Bengio's (2010): the fraction of (example, unit) pairs whose output lies in a flat tail
(|tanh| > 0.97, σ within 0.03 of 0 or 1). A dead unit has f' = 0 on *every* probe example.
"""
import math

import numpy as np
import pandas as pd
import pytest

from manual.activations import ACTIVATIONS
from experiments import report, store
from experiments.report.study import is_hidden, layer_means
from experiments.runs.diagnostics import layer_stats, probe_torch
from experiments.runs.training import ManualBackend, RunConfig

pytestmark = pytest.mark.facts  # absolute facts, stated by hand (tests/conftest.py)


def test_layer_stats_of_relu_by_hand():
    # 2 examples × 3 units; unit 0 has f' = 0 on both examples (dead), unit 1 on one only (alive)
    derivative = np.array([[0.0, 1.0, 1.0],
                           [0.0, 0.0, 1.0]])
    a = np.array([[0.0, 2.0, 1.0],
                  [0.0, 0.0, 3.0]])
    stats = layer_stats(derivative, a, 1.5, ACTIVATIONS["relu"])
    assert stats["dead_frac"] == pytest.approx(1 / 3, rel=1e-15)
    assert math.isnan(stats["saturated_frac"])  # ReLU has no flat tails: its flat side is "dead"
    assert stats["act_mean"] == 1.0  # (2 + 1 + 3)/6
    assert stats["act_std"] == pytest.approx(math.sqrt(14 / 6 - 1), rel=1e-15)  # E[a²] − E[a]², population std
    assert stats["grad_norm"] == 1.5


def test_saturated_is_the_mean_over_examples_and_units():
    """|tanh| > 0.97: (0.99, 0.5, −0.98) and (0.98, −0.99, 0.1) have 4 of 6 outputs in the tails, while
    'saturated on every example' would say 1 unit of 3, and 'on some example' 3 of 3."""
    a = np.array([[0.99, 0.5, -0.98],
                  [0.98, -0.99, 0.1]])
    stats = layer_stats(1 - a * a, a, 0.0, ACTIVATIONS["tanh"])
    assert stats["saturated_frac"] == pytest.approx(4 / 6, rel=1e-15)
    assert stats["dead_frac"] == 0.0


def test_sigmoid_tails_are_within_three_percent_of_0_and_1():
    a = np.array([[0.02, 0.029, 0.031, 0.5, 0.969, 0.971, 0.99, 0.5]])
    assert layer_stats(a * (1 - a), a, 0.0, ACTIVATIONS["sigmoid"])["saturated_frac"] == 4 / 8
    for name in ("relu", "leaky_relu", "elu", "swish", "gelu", "softplus", "identity"):
        assert ACTIVATIONS[name].saturated is None, name  # no flat tails: NaN in the tables


# --------------------------------------------------------------------------- a hand-built network
# 784-3-10 with only pixels 0 and 1 connected; probe = two images, pixel 0 lit in one, pixel 1 in the other,
# so hidden z = the first two columns of W₀, read off directly. The output layer is all zeros: logits 0,
# softmax 0.1 everywhere.
X = np.zeros((2, 784))
X[0, 0] = X[1, 1] = 1.0
Y = np.array([0, 1])


def hand_built(activation, hidden_weights):
    config = RunConfig(layer_sizes=(784, 3, 10), activation=activation, loss="cross_entropy", backend="manual",
                       dtype="float64")
    backend = ManualBackend(config)
    for v in backend.net.params.values():
        v[...] = 0.0
    backend.net.params["0.weight"][:, :2] = hidden_weights
    return config, backend


RELU_W = [[-1, -1],  # z = (−1, −1): dead
          [2, -1],  # z = (2, −1): a = (2, 0)
          [1, 3]]  # z = (1, 3)
TANH_W = [[3, -3],  # tanh ±0.995: saturated on both
          [0, 0.5],  # 0, 0.462: never
          [2.5, 0]]  # 0.987, 0: on one of the two

# ∂E/∂W₁ = δᵀ·a with δ_nk = (0.1 − [k = y_n])/2. For relu, a₁ = (0, 2, 1), a₂ = (0, 0, 3):
# row k=0: −0.45·a₁ + 0.05·a₂ = (0, −0.9, −0.3) → 0.9;  k=1: 0.05·a₁ − 0.45·a₂ = (0, 0.1, −1.3) → 1.7;
# k ≥ 2 (8 rows): 0.05·(a₁ + a₂) = (0, 0.1, 0.2) → 0.05 each, 0.4 in all.  ‖∂E/∂W₁‖² = 0.9 + 1.7 + 0.4 = 3.
# ∂E/∂W₀ = 0: δ₀ = δ₁·W₁ and W₁ = 0.
RELU_EXPECTED = [
    dict(grad_norm=0.0, dead_frac=1 / 3, saturated_frac=math.nan, act_mean=1.0, act_std=math.sqrt(4 / 3)),
    dict(grad_norm=math.sqrt(3), dead_frac=0.0, saturated_frac=math.nan, act_mean=0.0, act_std=0.0),
]
T25, T05 = math.tanh(2.5), math.tanh(0.5)
# tanh: a₁ = (t3, 0, t2.5), a₂ = (−t3, t0.5, 0): ‖∂E/∂W₁‖² = Σ_k ‖δ_1k·a₁ + δ_2k·a₂‖², worked out per row
_rows = [(-0.45, 0.05), (0.05, -0.45)] + [(0.05, 0.05)] * 8
_a1, _a2 = np.array([math.tanh(3), 0, T25]), np.array([-math.tanh(3), T05, 0])
TANH_GRAD = math.sqrt(sum(float(np.sum((d1 * _a1 + d2 * _a2) ** 2)) for d1, d2 in _rows))
TANH_MEAN = (T25 + T05) / 6  # ±tanh 3 cancel
TANH_STD = math.sqrt((2 * math.tanh(3) ** 2 + T25**2 + T05**2) / 6 - TANH_MEAN**2)
TANH_EXPECTED = [
    dict(grad_norm=0.0, dead_frac=0.0, saturated_frac=3 / 6, act_mean=TANH_MEAN, act_std=TANH_STD),
    dict(grad_norm=TANH_GRAD, dead_frac=0.0, saturated_frac=math.nan, act_mean=0.0, act_std=0.0),
]
CASES = {"relu": (RELU_W, RELU_EXPECTED), "tanh": (TANH_W, TANH_EXPECTED)}


def check_rows(rows, expected):
    assert len(rows) == len(expected)
    for l, (row, want) in enumerate(zip(rows, expected)):
        for name, value in want.items():
            if math.isnan(value):
                assert math.isnan(row[name]), (l, name)
            else:
                assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-15), (l, name)


@pytest.mark.parametrize("activation", CASES)
def test_manual_probe_of_a_hand_built_network(activation):
    weights, expected = CASES[activation]
    _, backend = hand_built(activation, weights)
    check_rows(backend.probe(X, Y), expected)


def test_tanh_saturation_numbers_are_what_the_comment_says():
    assert math.tanh(3) > 0.97 and T25 > 0.97 and T05 < 0.97


@pytest.mark.torch
@pytest.mark.parametrize("activation", CASES)
def test_torch_probe_of_the_same_network(activation, one_torch_thread):
    import torch

    import torch_ref

    weights, expected = CASES[activation]
    config, backend = hand_built(activation, weights)
    model = torch_ref.mirror(backend.net)
    check_rows(probe_torch(model, torch_ref.Criterion("cross_entropy"), backend.points, torch.from_numpy(X),
                           torch.from_numpy(Y)), expected)


# --------------------------------------------------------------------------- the report's hidden-layer means
def study_with_layers(rows) -> report.Study:
    """Two seeds of one arm, 2 hidden layers + output, trained for 2 epochs; ``rows`` per (key, epoch, layer)."""
    layers = pd.DataFrame(rows, columns=["key", "epoch", "layer", "grad_norm", "dead_frac", "saturated_frac",
                                         "act_mean", "act_std"])
    final = pd.DataFrame({"key": ["a", "b"], "group": "g", "arm": "relu", "epochs_done": 2, "status": "ok"})
    empty = pd.DataFrame()
    tables = store.Tables(runs=final, epochs=empty, layers=layers, plan=empty, environment=empty)
    return report.Study(folder=None, name="t", tables=tables, tune=final.iloc[:0], final=final, groups=["g"],
                        arms=["relu"])


def test_report_means_count_hidden_layers_only():
    """Seeds a and b; the output layer (layer 2) is 100% 'dead' and 'saturated' and must not count."""
    rows = []
    for key, shift in (("a", 0.0), ("b", 0.1)):
        for epoch, dead in ((0, (0.2, 0.4)), (2, (0.1, 0.3))):
            rows += [(key, epoch, 0, 1e-3, dead[0] + shift, 0.5 + shift, 0.0, 1.0),
                     (key, epoch, 1, 1e-2, dead[1] + shift, 0.7 + shift, 0.0, 1.0),
                     (key, epoch, 2, 1.0, 1.0, 1.0, 0.0, 1.0)]
    rows.append(("a", 1, 0, 9.0, 0.9, 0.9, 0.0, 1.0))  # an epoch between init and end: never read
    study = study_with_layers(rows)
    layers = study.tables.layers
    assert list(is_hidden(layers)) == list(layers["layer"] < 2)  # each run's last layer is its output
    d = report.diagnostics(study).iloc[0]
    # hidden means over layers 0, 1 and seeds a (shift 0), b (shift 0.1): init (0.2 + 0.4)/2 + 0.05
    assert d["layers"] == 3
    assert d["dead_init"] == pytest.approx(0.35) and d["dead_end"] == pytest.approx(0.25)
    assert d["dead_max_init"] == pytest.approx(0.45)
    # diagnostics() gives the maximum's value, not its layer; the per-layer means (layer_means) say which
    # layer it is: layer 1 (counted from 0), i.e. 2 counted from 1
    for when, dead in (("init", (0.25, 0.45, 1.0)), ("end", (0.15, 0.35, 1.0))):
        means = layer_means(study, when)
        assert list(means["layer"]) == [0, 1, 2] and list(means["hidden"]) == [True, True, False]
        assert list(means["dead_frac"]) == pytest.approx(dead) and list(means["grad_norm"]) == pytest.approx(
            [1e-3, 1e-2, 1.0])
    hidden = layer_means(study, "init").query("hidden")
    assert int(hidden.loc[hidden["dead_frac"].idxmax(), "layer"]) + 1 == 2
    assert d["saturated_init"] == pytest.approx(0.65) and d["saturated_end"] == pytest.approx(0.65)
    assert d["grad_first_init"] == pytest.approx(1e-3) and d["grad_last_init"] == pytest.approx(1.0)
    assert d["grad_ratio_init"] == pytest.approx(1e-3) and d["grad_ratio_end"] == pytest.approx(1e-3)
