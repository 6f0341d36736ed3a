"""A study end to end on a tiny subset: spec file → plan → CSV → comparisons → report; a planted difference
(a linear net against ReLU) is judged significant, two identical arms are not separable; plan.csv
accumulates; the dry run trains nothing."""
import json

import numpy as np
import pandas as pd
import pytest

from experiments import report
from experiments.cli import main
from experiments.runs import training
from experiments.stats import COMPARISON_COLUMNS

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py

# 1,000 training images, one epoch: the linear net (identity) learns faster than ReLU this early, by about
# 10 points on every seed; "relu again" is the same config as "relu" under another label.
SPEC = """\
name = "planted"
description = "A linear net against ReLU, and ReLU against itself."
compare = "net"
seeds = 5
target = 0.5

[base]
layer_sizes = [784, 64, 10]
optimizer = "SGD"
momentum = 0.9
epochs = 1
train_subset = 1000

[grid]
net = [
  { label = "relu", activation = "relu" },
  { label = "relu again", activation = "relu" },
  { label = "linear", activation = "identity" },
]

[tune]
lr = [0.02, 0.05]
seeds = 1
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    (root / "planted.toml").write_text(SPEC)
    with np.errstate(all="ignore"):
        assert main(["study", str(root / "planted.toml"), "--out", str(root / "planted"), "--no-progress",
                     "--device", "cpu", "--workers", "1"]) == 0  # the pool has tests of its own (test_execute)
    return root / "planted"


def test_the_plan_tunes_on_tuning_seeds_and_trains_fresh_final_seeds(study):
    plan = pd.read_csv(study / "plan.csv", dtype={"key": str})
    runs = pd.read_csv(study / "runs.csv", dtype={"key": str}).set_index("key")
    assert list(plan.columns) == ["study", "group", "arm", "phase", "key"] and set(plan["study"]) == {"planted"}
    seeds = {phase: set(runs.loc[plan[plan["phase"] == phase]["key"], "seed"]) for phase in ("tune", "seeds")}
    assert seeds == {"tune": {0}, "seeds": {1, 2, 3, 4, 5}}  # fresh: disjoint from the tuning seed
    assert len(plan[plan["phase"] == "tune"]) == 3 * 2 and len(plan[plan["phase"] == "seeds"]) == 3 * 5
    assert len(runs) == 2 * 2 + 2 * 5  # "relu again" has the same keys as "relu": trained once
    assert json.loads((study / "spec.json").read_text())["compare"] == "net"


def test_the_planted_difference_is_significant_and_identical_arms_are_not_separable(study):
    table = pd.read_csv(study / "comparisons.csv")
    assert list(table.columns) == COMPARISON_COLUMNS and len(table) == 3 and (table["n"] == 5).all()
    planted = table[(table["arm_a"] == "linear") | (table["arm_b"] == "linear")]
    assert (planted["p_holm"] < 0.05).all() and (planted["mean_diff"] > 5).all()
    assert all(v.startswith("linear > relu") for v in planted["verdict"])
    same = table[~table.index.isin(planted.index)].iloc[0]
    assert same["verdict"] == "not separable with 5 seeds: identical on every seed" and same["mean_diff"] == 0


def test_the_report_is_built_from_the_folder_whatever_its_name(study, tmp_path, monkeypatch):
    text = (study / "REPORT.md").read_text()
    for heading in ("## Findings", "## Paired comparisons", "## Tuning", "## Per-layer gradients",
                    "## Learning curves that coincide"):
        assert heading in text
    assert "The highest mean test accuracy is linear's" in text and "separate it from every other net" in text
    assert "runner-up" not in text and "the worst" not in text
    for plot in ("test_accuracy.png", "comparisons.png", "learning_curves.png", "tuning.png", "layer_profiles.png",
                 "inactive_units.png", "curve_differences.png"):
        assert f"]({plot})" in text and (study / plot).stat().st_size > 5_000
    # a copy under any other name, CSV files only: the report is rebuilt without training
    import shutil

    shutil.copytree(study, tmp_path / "results" / "my-own-study", ignore=shutil.ignore_patterns("*.png", "*.md"))
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("the report must not train"))
    assert main(["report", "--results", str(tmp_path / "results")]) == 0
    assert "linear > relu" in (tmp_path / "results" / "my-own-study" / "REPORT.md").read_text()
    assert "my-own-study/REPORT.md" in (tmp_path / "results" / "REPORT.md").read_text()


def test_a_rerun_with_another_arm_adds_it_and_keeps_the_others(study, tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "planted"
    shutil.copytree(study, folder)
    calls = []
    real = training.train

    def counted(config, *args, **kwargs):
        calls.append(config.activation)
        return real(config, *args, **kwargs)

    monkeypatch.setattr(training, "train", counted)
    with np.errstate(all="ignore"):
        assert main(["study", str(study.parent / "planted.toml"), "--out", str(folder), "--no-progress", "--workers", "1", "--no-stack", "--device",
                     "cpu", "--set", 'grid.net=[{label = "tanh", activation = "tanh"}]']) == 0
    assert calls == ["tanh"] * (2 + 5)  # only the new arm trains
    plan = pd.read_csv(folder / "plan.csv")
    assert set(plan["arm"]) == {"relu", "relu again", "linear", "tanh"}  # plan.csv accumulates
    assert set(report.open_study(folder).final["arm"]) == {"relu", "relu again", "linear", "tanh"}
    assert len(pd.read_csv(folder / "comparisons.csv")) == 6  # every pair of the 4 arms


def test_dry_run_prints_the_plan_and_an_estimate_without_training(study, capsys, monkeypatch):
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("a dry run must not train"))
    spec = study.parent / "planted.toml"
    assert main(["study", str(spec), "--out", str(study), "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 arms" in out and "tuning runs: 4 (0 not yet in the store)" in out
    assert "final runs: 10 (0 not yet in the store)" in out and "estimated time with 2 worker(s)" in out
    before = {p.name: p.stat().st_mtime_ns for p in study.iterdir()}
    assert main(["study", str(spec), "--out", str(study.parent / "empty"), "--dry-run"]) == 0
    assert "tuning runs: 4 (4 not yet in the store)" in capsys.readouterr().out
    assert not (study.parent / "empty").exists()  # a dry run writes nothing: no folder, no study.db
    assert {p.name: p.stat().st_mtime_ns for p in study.iterdir()} == before
