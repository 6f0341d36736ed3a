"""Reports are rebuilt from the CSV files alone, with numbers computed from them, for the built-in studies."""
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from experiments import report

from experiments.runs import training
from experiments.cli import main
from experiments.stats import accuracy_ci

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py

PLOTS = ["test_accuracy.png", "comparisons.png", "learning_curves.png", "tuning.png", "layer_profiles.png",
         "inactive_units.png"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A tiny activation study and a tiny backends study, trained once through the command line."""
    root = tmp_path_factory.mktemp("results")
    tiny = ["--train-subset", "500", "--epochs", "1", "--no-progress", "--device", "cpu", "--workers", "1"]
    with np.errstate(all="ignore"):
        assert main(["activations", "--out", str(root / "activations"), "--seeds", "2", "--activations", "relu",
                     "sigmoid", "--lrs", "0.03", "0.3", "--set", "tune.seeds=1", *tiny]) == 0
        assert main(["backends", "--out", str(root / "backends"), "--seeds", "2", *tiny]) == 0
    return root


@pytest.fixture
def copy(results, tmp_path, monkeypatch):
    """A copy of the results holding only the CSV files (no study.db), where training would fail the test."""
    shutil.copytree(results, tmp_path / "results", ignore=shutil.ignore_patterns("*.png", "*.md", "study.db*"))
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("the report must not train"))
    return tmp_path / "results"


def findings(root, study="activations") -> str:
    """The findings REPORT.md states, as text."""
    return "\n".join(report.findings(report.open_study(root / study)))


def test_report_rebuilds_every_plot_and_report_from_csv_alone(copy):
    assert not list(copy.rglob("*.png")) and not list(copy.rglob("*.md"))
    assert main(["report", "--results", str(copy)]) == 0
    for name in PLOTS:
        assert (copy / "activations" / name).stat().st_size > 10_000
    assert (copy / "backends" / "curve_differences.png").exists()
    assert len(pd.read_csv(copy / "activations" / "comparisons.csv")) == 2  # one pair per group
    text = (copy / "activations" / "REPORT.md").read_text()
    for name in PLOTS:
        assert f"]({name})" in text
    for heading in ("## Findings", "## Final test accuracy", "## Paired comparisons", "## Tuning", "## Environment"):
        assert heading in text
    overview = (copy / "REPORT.md").read_text()
    assert "activations/REPORT.md" in overview and "backends/REPORT.md" in overview


def test_report_numbers_come_from_the_csv(copy):
    runs = pd.read_csv(copy / "activations" / "runs.csv", dtype={"key": str})
    plan = pd.read_csv(copy / "activations" / "plan.csv", dtype={"key": str})
    final = plan[plan["phase"] == "seeds"].merge(runs, on="key")
    shallow = final[final["layer_sizes"] == "784-128-128-10"]
    best = shallow.groupby("arm")["test_acc"].mean().idxmax()
    ci = accuracy_ci(shallow[shallow["arm"] == best]["test_acc"])
    assert f"the highest mean test accuracy is {best}'s, {ci.format('.2%')}" in findings(copy)

    runs.loc[runs["key"].isin(shallow["key"]), "test_acc"] = 0.5  # change the data: the text follows
    runs.to_csv(copy / "activations" / "runs.csv", index=False)
    assert "all 2 arms reach the same mean test accuracy, 50.00% [50.00, 50.00%]" in findings(copy)


def test_report_quotes_the_deep_sigmoid_gradients_and_relu_dead_units(copy):
    text = findings(copy)
    deep = report.diagnostics(report.open_study(copy / "activations"))
    sigmoid = deep[(deep["arm"] == "sigmoid") & deep["group"].str.startswith("8 hidden")].iloc[0]
    assert f"vanishing gradients at initialisation for sigmoid (first layer {sigmoid['grad_first_init']:.1e}" in text
    relu = deep[(deep["arm"] == "relu")]
    assert ("dead hidden units (f' = 0 on every probe image) after training: relu" in text) == \
        bool((relu["dead_end"] > 0.005).any())
    # sigmoid's saturation is quoted arm by arm, or as "below 0.5%" when it stays that low (as in 1 tiny epoch);
    # each activation gets only the measure that applies to it: relu is never "saturated", sigmoid never "dead"
    assert re.search(r"saturated outputs \(in the flat tails, per unit and image\): sigmoid \d|"
                     r"no saturated outputs: below 0\.5% [^\n]* for sigmoid", text)
    assert not re.search(r"saturated outputs[^\n]*relu", text)
    assert not re.search(r"dead hidden units[^\n]*sigmoid", text)


def test_backends_report_shows_the_curves_coincide(copy):
    assert "manual and torch (backends): the learning curves coincide" in findings(copy, "backends")
    (pair, table), = report.curve_differences(report.open_study(copy / "backends")).items()
    assert pair == ("backends", "manual", "torch") and float(table.max().max()) < 1e-10
    comparisons = pd.read_csv(copy / "backends" / "comparisons.csv")
    assert comparisons["verdict"].str.startswith("not separable with 2 seeds").all()


def test_a_diverged_run_shows_in_the_report(copy):
    runs = pd.read_csv(copy / "activations" / "runs.csv", dtype={"key": str})
    runs.loc[0, ["status", "test_acc", "final_val_acc"]] = ["diverged", np.nan, np.nan]
    runs.to_csv(copy / "activations" / "runs.csv", index=False)
    assert re.search(r"1 of \d+ runs diverged", findings(copy))


def test_report_on_a_study_folder_itself_rebuilds_that_study(copy, capsys):
    folder = copy / "activations"
    assert main(["report", "--results", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {folder / 'REPORT.md'}"
    assert "## Findings" in (folder / "REPORT.md").read_text()  # its own report, not an overview over it
    assert not (copy / "REPORT.md").exists() and not (copy / "backends" / "REPORT.md").exists()


def test_report_without_studies_says_so(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: no study folder (one with plan.csv) under {tmp_path}")


@pytest.mark.parametrize("errors, lowest_tick", [([0.03, 0.05], "90.0%"), ([0.03, 0.6], "diverged"),
                                                 ([0.03, report.DIVERGED_ERROR], "diverged")])
def test_accuracy_axis_reaches_down_only_as_far_as_the_worst_point(errors, lowest_tick):
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    ax.scatter([0, 1], errors)
    report.accuracy_axis(ax, "accuracy", [1 - e for e in errors])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    bottom, top = ax.get_ylim()
    assert labels[0] == lowest_tick and bottom >= max(errors) and top <= min(errors)
    assert ("diverged" in labels) == (lowest_tick == "diverged")


def test_a_study_with_groups_gets_a_heatmap_with_separable_differences_marked(copy):
    """Groups as rows, arms as columns, mean test accuracy per cell; the difference from the group's reference
    arm (the best, without a baseline in the spec) is marked separable exactly when p_Holm < α."""
    from experiments.report.plots import heatmap_cells
    from experiments.stats import ALPHA

    assert main(["report", "--results", str(copy)]) == 0
    assert "](heatmap.png)" in (copy / "activations" / "REPORT.md").read_text()
    assert not (copy / "backends" / "heatmap.png").exists()  # one group: nothing to lay out
    study = report.open_study(copy / "activations")
    summary, table = report.arm_summary(study), report.comparisons(study)
    cells = heatmap_cells(study, summary, table)
    assert len(cells) == len(summary) and set(cells["group"]) == set(study.groups)
    for group, rows in cells.groupby("group"):
        best = rows.loc[rows["mean"].idxmax(), "arm"]
        assert (rows["reference"] == best).all()
        other = rows[rows["arm"] != best].iloc[0]
        pair = table[(table["group"] == group)].iloc[0]
        assert abs(abs(other["diff"]) - abs(pair["mean_diff"])) < 1e-12 and other["diff"] <= 0
        assert other["separable"] == (pair["p_holm"] < ALPHA)


def test_the_heatmap_uses_the_spec_baseline_when_there_is_one(copy):
    import json

    from experiments.report.plots import heatmap_cells

    spec_path = copy / "activations" / "spec.json"
    spec = json.loads(spec_path.read_text())
    spec_path.write_text(json.dumps({**spec, "baseline": "sigmoid"}))
    study = report.open_study(copy / "activations")
    cells = heatmap_cells(study, report.arm_summary(study), report.comparisons(study))
    assert (cells["reference"] == "sigmoid").all()
    assert cells.loc[cells["arm"] == "sigmoid", "diff"].isna().all()
    relu = cells[cells["arm"] == "relu"].set_index("group")["diff"]
    means = cells.pivot(index="group", columns="arm", values="mean")
    # the paired difference over the seeds both finished: the difference of the means when every seed finished
    assert np.allclose(relu, (means["relu"] - means["sigmoid"]) * 100, atol=1e-9)


@pytest.mark.parametrize("groups", [1, 3, 9, 27, 40])
def test_no_figure_is_wider_than_a_laptop_screen(groups):
    """Any number of groups fits within MAX_WIDTH_PX: panels wrap into rows and narrow to fit."""
    from experiments.report.plots import DPI, MAX_WIDTH_PX, grid_figure

    for width, wrap in ((6.0, None), (6.5, None), (6.0, 3)):
        fig, _ = grid_figure(3, groups, width=width, wrap=wrap)
        assert fig.get_figwidth() * DPI <= MAX_WIDTH_PX


def test_committed_figures_fit_a_laptop_screen_and_factorial_studies_have_heatmaps():
    """Every committed study figure is at most MAX_WIDTH_PX wide; the depth study (27 groups × 3 cures) has its
    heatmap, embedded in its report and in the overview."""
    from pathlib import Path

    from matplotlib.image import imread

    from experiments.report.plots import MAX_WIDTH_PX

    results = Path(__file__).resolve().parents[2] / "results"
    pngs = [p for p in results.glob("*/*.png") if (p.parent / "plan.csv").exists()]
    assert pngs
    for png in pngs:
        assert imread(png).shape[1] <= MAX_WIDTH_PX, png
    assert imread(results / "depth" / "heatmap.png").shape[0] > 27 * 30  # a readable row per group
    assert "](heatmap.png)" in (results / "depth" / "REPORT.md").read_text()
    assert "](depth/heatmap.png)" in (results / "REPORT.md").read_text()
