"""Inside the networks: the runs a report shows are trained again and kept, and its figures come from them.

A tiny study of a convolutional and a recurrent arm (500 images, one epoch) end to end: the study keeps one model
per arm in ``models/`` whose retrained test accuracy equals the study's run (trained one by one, the same code and
seed); a second study command trains nothing again; the report shows the filters, the feature maps and the
gradient over time, whose numbers are checked against their definition.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from experiments.config import RunConfig, config_of, run_columns
from experiments.report import inside
from experiments.report.study import open_study
from experiments.runs import snapshots
from experiments.store import load

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py

SPEC = """\
name = "tiny-inside"
description = "A small CNN and a small RNN, one epoch on 500 images."
compare = "net"
seeds = 2

[base]
optimizer = "Adam"
lr = 0.003
epochs = 1
train_subset = 500
batch_size = 50

[[grid.net]]
label = "cnn"
layers = ["unflatten 1 28 28", "conv 3 5", "relu", "maxpool 2", "flatten", "linear 10"]

[[grid.net]]
label = "rnn"
layers = ["unflatten 28 28", "rnn 8", "last", "linear 10"]
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("inside")
    (root / "tiny.toml").write_text(SPEC)
    assert main(["study", str(root / "tiny.toml"), "--out", str(root / "tiny"), "--no-progress", "--device", "cpu",
                 "--workers", "1"]) == 0
    return root / "tiny"


def test_every_committed_run_row_gives_back_its_config_and_key():
    rows = 0
    for folder in ("activations", "depth", "optimizers", "backends", "cnn", "recurrent"):
        for row in load(ROOT / "results" / folder).runs.to_dict("records"):
            assert config_of(row).key() == row["key"]
            rows += 1
    assert rows > 700


def test_config_of_reads_back_the_architecture_as_data():
    config = RunConfig(layers=("unflatten 28 28", "gru 16", "last", "linear 10"), clip_grad_norm=1.0, seed=3)
    row = {"key": config.key(), **run_columns(config)}
    assert config_of(row) == config
    with pytest.raises(ValueError, match="config of another key"):
        config_of({**row, "seed": 4})


def test_one_model_per_arm_is_kept_and_retrains_to_the_studys_accuracy(study):
    kept = snapshots.kept_table(study)
    final = open_study(study).final
    assert sorted(kept["arm"]) == ["cnn", "rnn"]
    for row in kept.to_dict("records"):
        assert row["seed"] == final[final["arm"] == row["arm"]]["seed"].min()  # the smallest final seed
        assert row["retrained_test_acc"] == row["study_test_acc"]  # trained one by one: the same numbers
        state = snapshots.load_model(study, row["key"])
        net = inside.network(final[final["key"] == row["key"]].iloc[0].to_dict(), state)
        assert set(net.state_dict()) == set(state)


def test_a_second_study_command_trains_no_model_again(study):
    stamps = {p.name: p.stat().st_mtime_ns for p in (study / "models").glob("*.npz")}
    assert main(["study", str(study.parent / "tiny.toml"), "--out", str(study), "--no-progress", "--device", "cpu",
                 "--workers", "1"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (study / "models").glob("*.npz")} == stamps


def test_the_report_shows_the_filters_feature_maps_and_gradient_over_time(study):
    text = (study / "REPORT.md").read_text()
    for figure in ("filters.png", "feature_maps.png", "gradient_over_time.png"):
        assert f"]({figure})" in text and (study / figure).stat().st_size > 1000
    table = pd.read_csv(study / inside.GRADIENT_TABLE)
    assert set(table["arm"]) == {"rnn"}  # the convolutional arm has no time steps
    assert sorted(table["when"].unique()) == ["initialisation", "trained"]
    assert table.groupby("when")["t"].apply(list).map(lambda t: t == list(range(1, 29))).all()


def test_the_gradient_over_time_is_the_mean_per_image_norm_of_the_bptt_gradient(study):
    """Measured per image: a batch of the same image twice gives that image's own ‖∂E/∂h_t‖, and the last step's
    value is the norm of the output layer's weights applied to the image's δ (h_T feeds only the linear layer)."""
    row = inside.shown_runs(open_study(study)).set_index("arm").loc["rnn"].to_dict()
    net = inside.network(row, snapshots.load_model(study, row["key"]))
    rng = np.random.default_rng(0)
    X, y = rng.random((1, 784)), np.array([3])
    one = inside.gradient_over_time(net, X, y, "cross_entropy")
    twice = inside.gradient_over_time(net, np.repeat(X, 2, axis=0), np.repeat(y, 2), "cross_entropy")
    np.testing.assert_allclose(twice, one, rtol=1e-12)
    z = net.forward(X)[0]
    delta = np.exp(z - z.max()) / np.exp(z - z.max()).sum() - np.eye(10)[3]  # ∂E/∂z of softmax cross-entropy
    weight = net.state_dict()["3.weight"]
    np.testing.assert_allclose(one[-1], np.linalg.norm(delta @ weight), rtol=1e-10)
    assert one.shape == (28,) and (one > 0).all()


def test_a_study_of_mlps_keeps_no_model():
    mlp = pd.DataFrame([{**run_columns(RunConfig()), "key": RunConfig().key(), "status": "ok", "group": "g",
                         "arm": "a"}])
    assert not inside.kinds(mlp.iloc[0].to_dict()) & {*inside.CONV_KINDS, *inside.RECURRENT_KINDS}
