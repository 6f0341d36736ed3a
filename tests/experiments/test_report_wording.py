"""What the report says, on small studies written by hand (no training): arms whose every seed diverged,
the baseline line, the overview across groups, exploding and vanishing gradients, clipping activity, tuning
with several keys and at the grid's edge, the order of setup values, and which inactive-unit measure applies."""
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from experiments import report, store
from experiments.report import plots, study as study_module, text
from experiments.spec import SpecError, parse_spec

LAYERS = ["key", "epoch", "layer", "grad_norm", "dead_frac", "saturated_frac", "act_mean", "act_std"]


def make_study(arms: dict, groups=("g",), spec=None, tune=None, clip=(), activation=None) -> report.Study:
    """A study folder's tables built by hand. ``arms``: arm → test accuracy per final seed (None = that seed
    diverged in epoch 1), the same in every group; ``tune``: arm → {lr: [val acc per tuning seed]} (the best
    mean is the chosen lr); ``clip``: arms that clip at norm 1, in 40% of their steps; ``activation``: arm →
    activation (relu otherwise)."""
    runs, plan, epochs, layers = [], [], [], []
    for group in groups:
        for arm, accs in arms.items():
            grid = (tune or {}).get(arm, {0.1: [0.9]})
            chosen = max(grid, key=lambda lr: np.mean(grid[lr]))
            rows = [("tune", lr, seed, acc) for lr, accs_ in grid.items() for seed, acc in enumerate(accs_)] + \
                [("seeds", chosen, 10 + seed, acc) for seed, acc in enumerate(accs)]
            for phase, lr, seed, acc in rows:
                key = f"{group}|{arm}|{phase}|{lr}|{seed}"
                ok = acc is not None
                runs.append({"key": key, "activation": (activation or {}).get(arm, "relu"), "lr": lr, "momentum": 0.9,
                             "seed": seed,
                             "status": "ok" if ok else "diverged", "epochs_done": 2 if ok else 1,
                             "test_acc": acc if ok else math.nan, "final_val_acc": acc if ok else math.nan,
                             "final_train_loss": 0.3 if ok else math.nan, "wall_time_s": 1.0,
                             "clip_grad_norm": 1.0 if arm in clip else math.nan})
                plan.append({"study": "t", "group": group, "arm": arm, "phase": phase, "key": key})
                for epoch in range(1, (2 if ok else 1) + 1):
                    epochs.append({"key": key, "epoch": epoch, "train_loss": 0.3, "val_loss": 0.3,
                                   "val_acc": acc if ok else math.nan, "epoch_time_s": 0.5,
                                   "clip_frac": (0.6 if epoch == 1 else 0.2) if arm in clip else math.nan})
                for epoch in (0, 2) if ok else (0,):
                    layers += [(key, epoch, 0, 1.0, 0.0, math.nan, 0.0, 1.0),
                               (key, epoch, 1, 0.5, 0.0, math.nan, 0.0, 1.0)]
    runs, plan = pd.DataFrame(runs), pd.DataFrame(plan)
    tables = store.Tables(runs=runs, epochs=pd.DataFrame(epochs), layers=pd.DataFrame(layers, columns=LAYERS),
                          plan=plan, environment=pd.DataFrame(columns=["name", "value"]))
    merged = plan.merge(runs, on="key")
    return report.Study(folder=None, name="t", tables=tables, tune=merged[merged["phase"] == "tune"],
                        final=merged[merged["phase"] == "seeds"].reset_index(drop=True), groups=list(groups),
                        arms=list(arms), spec={"compare": "arm", "tuned": ["lr"], **(spec or {})})


THREE = {"good": [0.90, 0.91, 0.92], "poor": [0.50, 0.52, 0.53], "broken": [None, None, None]}


def test_an_arm_whose_every_seed_diverged_is_named_and_its_pairs_are_not_counted():
    study = make_study(THREE)
    summary, table = report.arm_summary(study), report.comparisons(study)
    finding = text.ranking_findings(study, summary, table)[0]
    assert "broken: every seed diverged, not compared." in finding
    assert "separate it from poor (p_Holm < 0.05), the only other arm with finished seeds" in finding
    assert "every other arm (p_Holm" not in finding  # the contradiction the depth report had
    assert "The one comparable pair is separable (2 pairs not comparable" in finding
    assert finding.endswith("Seeds disagree wildly (> 5 points apart or some diverged) for broken (every seed "
                            "diverged).")
    rows = text.summary_table(study, summary, "g").splitlines()
    broken = next(r for r in rows if r.startswith("| broken"))
    assert "diverged (3 of 3 seeds, in epoch 1)" in broken and "**every seed diverged**" in broken
    pairs = text.comparisons_table(table, "g")
    assert "nan" not in pairs and pairs.count("| good | poor |") == 1
    assert "Not comparable (fewer than 2 seeds on which both finished" in pairs and "good – broken (0 seeds)" in pairs


@pytest.mark.parametrize("separable, n, skipped, expected", [
    (1, 3, 0, " 1 of 3 pairs is separable."), (0, 3, 0, " 0 of 3 pairs are separable."),
    (2, 3, 0, " 2 of 3 pairs are separable."), (1, 1, 0, " The one pair is separable."),
    (0, 2, 1, " 0 of 2 comparable pairs are separable (1 pair not comparable: fewer than 2 seeds on which both "
              "finished).")])
def test_the_pair_count_agrees_with_its_number(separable, n, skipped, expected):
    pairs = pd.DataFrame({"p_holm": [0.001] * separable + [0.5] * (n - separable)})
    assert text.separable_count(pairs, skipped) == expected


def test_the_baseline_line_states_the_cure_or_that_the_baseline_diverged():
    study = make_study(THREE, groups=("deep", "shallow"), spec={"baseline": "broken"})
    summary, table = report.arm_summary(study), report.comparisons(study)
    (line,) = text.baseline_findings(study, summary, table)
    assert line.startswith("Each group's best arm against the baseline, broken")
    assert "\n  - **deep**: broken diverged (3 of 3 seeds, in epoch 1) → 91.00% with good" in line
    study.spec["baseline"] = "poor"
    (line,) = text.baseline_findings(study, summary, table)
    assert "**deep**: poor 51.67% → 91.00% with good (+39.33 points, p_Holm = " in line
    study.spec["baseline"] = "good"
    (line,) = text.baseline_findings(study, summary, table)
    assert "good 91.00% is already the best; the next, poor, 51.67% (39.33 points below" in line
    study.spec["baseline"] = "not an arm"  # a spec.json naming no arm: no line, no error
    assert text.baseline_findings(study, summary, table) == []


def test_the_overview_crosses_groups_by_their_axes():
    groups = [f"{a}, {i}" for a in ("relu", "tanh") for i in ("normal", "he")]
    study = make_study(THREE, groups=groups, spec={"groups": ["activation", "init"]})
    table = text.overview_table(study, report.arm_summary(study))
    assert ("| activation | normal · good | normal · poor | normal · broken | he · good | he · poor | "
            "he · broken |") in table
    assert "| relu | **91.00%** | 51.67% | diverged | **91.00%** | 51.67% | diverged |" in table
    # the labels come from spec.json's axes when it has them (a label may contain ", ")
    study = make_study(THREE, groups=["a, b, x", "c, x"],
                       spec={"groups": ["first", "second"], "axes": {"first": ["a, b", "c"], "second": ["x"]}})
    assert study.group_labels("a, b, x") == {"first": "a, b", "second": "x"}
    assert "| a, b | **91.00%** |" in text.overview_table(study, report.arm_summary(study))
    assert text.overview_table(make_study(THREE), report.arm_summary(make_study(THREE))) == ""  # one group


def diag_row(first, last, largest=None, finished=True):
    return {"grad_first_init": first, "grad_last_init": last, "grad_max_init": largest or max(first, last),
            "grad_ratio_init": first / last, "grad_ratio_end": 1.0, "finished": finished}


def test_exploding_gradients_are_named_by_ratio_or_by_size():
    rows = pd.DataFrame({"normal relu": diag_row(3.1e12, 6.4e12, 1.4e13), "normal tanh": diag_row(4.8e4, 0.77),
                         "xavier sigmoid": diag_row(1.5e-10, 0.68), "he relu": diag_row(0.38, 0.13),
                         "batch norm": diag_row(10.0, 0.49)}).T
    assert [text.gradient_state(r) for _, r in rows.iterrows()] == ["exploding", "exploding", "vanishing", "", ""]
    said = "\n".join(text.gradient_findings("", rows))
    assert "Exploding gradients at initialisation for normal relu (layer norms up to 1.4e+13; first layer 3.1e+12 " \
           "against 6.4e+12 at the output layer, ratio 0.48) and normal tanh (layer norms up to 4.8e+04" in said
    assert "Vanishing gradients at initialisation for xavier sigmoid (first layer 1.5e-10" in said
    assert "Neither vanishing nor exploding gradients at initialisation for he relu and batch norm: the " \
           "first/output-layer gradient-norm ratio is between 2.9 and 20, layer norms at most 10." in said
    assert text.EXPLODING_RATIO == 100 and text.EXPLODING_NORM == 100 and text.VANISHING == 0.1
    rule = text.inactive_text(pd.DataFrame())
    assert "**exploding** when it is above 100 (the gradient grows towards the input) or when some layer's norm " \
           "exceeds 100" in rule


def test_clipping_activity_is_shown_for_the_arms_that_clip():
    study = make_study(THREE, spec={"baseline": "poor"}, clip=("good",))
    clip = study_module.clipping(study)
    assert list(clip["arm"]) == ["good"] and clip["setting"].iloc[0] == "norm 1"
    assert clip["mean"].iloc[0] == pytest.approx(0.4) and clip["first"].iloc[0] == pytest.approx(0.6)
    table = text.clipping_table(study, clip, report.arm_summary(study))
    assert "| g | good | norm 1 | 40.0% | 60.0% | 20.0% (epoch 2) | 91.00% | 51.67% |" in table
    assert "poor's test accuracy" in table
    (line,) = text.clipping_findings(study, clip)
    assert line.startswith("good (norm 1) clipped the gradients in 40.0% of the steps")
    assert len(study_module.clipping(make_study(THREE))) == 0  # no arm clips: no table


def test_tuning_with_two_keys_has_a_column_per_combination():
    study = make_study({"a": [0.9, 0.9], "b": [0.8, 0.8]}, tune={"a": {0.1: [0.9], 0.3: [0.95]}, "b": {0.1: [0.9]}})
    study.spec["tuned"] = ["lr", "momentum"]
    tune = study.tune.copy()
    second = tune[tune["arm"] == "a"].assign(momentum=0.5, final_val_acc=0.5, key=lambda d: d["key"] + "m")
    study.tune = pd.concat([tune, second], ignore_index=True)
    table = text.tuning_table(study, study_module.tuning_edges(study))
    header = table.splitlines()[0]
    assert header == ("| group | arm | lr 0.1, momentum 0.5 | lr 0.1, momentum 0.9 | lr 0.3, momentum 0.5 | "
                      "lr 0.3, momentum 0.9 | chosen at the grid's edge |")
    assert "| g | a | 50.00% | 90.00% | 50.00% | **95.00%** | top (lr 0.3); top (momentum 0.9) |" in table


def test_a_choice_at_the_edge_of_its_grid_is_flagged_unless_every_candidate_tied():
    study = make_study({"top": [0.9, 0.9], "middle": [0.9, 0.9], "tied": [0.1, 0.1], "alone": [0.9, 0.9]},
                       tune={"top": {0.01: [0.8], 0.03: [0.85], 0.1: [0.9]},
                             "middle": {0.01: [0.8], 0.03: [0.95], 0.1: [0.9]},
                             "tied": {0.01: [0.1], 0.03: [0.1], 0.1: [0.1]}, "alone": {0.1: [0.9]}})
    edges = study_module.tuning_edges(study)
    assert edges[["arm", "key", "value", "edge"]].values.tolist() == [["top", "lr", 0.1, "top"]]
    (line,) = text.tuning_findings(study, edges)
    assert line == ("Chosen at the edge of the tuning grid, where the best value may lie beyond it (1 of 4 arms; "
                    "marked in the tuning table): at the top of the grid, top lr 0.1.")


def test_setup_values_are_sorted_and_many_groups_are_summarised():
    groups = [f"{a}, {d}, {i}" for a in ("sigmoid", "tanh", "relu") for d in ("2 hidden", "8 hidden", "16 hidden")
              for i in ("normal", "xavier", "he")]
    study = make_study({"none": [0.9], "bn": [0.9]}, groups=groups,
                       spec={"groups": ["activation", "layer_sizes", "init"]})
    assert text.groups_text(study) == ("within each of the 27 groups, one per combination of activation (3), layer "
                                       "sizes (3) and init (3)")
    assert sorted(["3", "1", "0", "2"], key=text.natural_key) == ["0", "1", "2", "3"]
    assert sorted(["784-64-64-64-10", "784-128-128-10", "784-64-10"], key=text.natural_key) == \
        ["784-64-10", "784-128-128-10", "784-64-64-64-10"]
    assert sorted(["no clipping", "1.0", "0.5"], key=text.natural_key) == ["0.5", "1.0", "no clipping"]
    shuffled = study_module.study_order(study, pd.DataFrame({"group": [groups[5], groups[0], groups[0]],
                                                              "arm": ["none", "bn", "none"]}))
    assert shuffled.values.tolist() == [[groups[0], "none"], [groups[0], "bn"], [groups[5], "none"]]


def test_only_the_inactive_measure_that_applies_is_used():
    measure = {name: study_module.inactive_measure(name) for name in
               ("relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "identity", "gelu", "swish")}
    assert measure == {"relu": "dead", "sigmoid": "saturated", "tanh": "saturated", "leaky_relu": None, "elu": None,
                       "softplus": None, "identity": None, "gelu": None, "swish": None}
    # an activation this process does not know (a plug-in not loaded) is judged by what its runs recorded
    assert study_module.inactive_measure("not-loaded", saturated_recorded=True) == "saturated"
    assert study_module.inactive_measure("not-loaded", dead_recorded=True) == "dead"
    assert study_module.inactive_measure("not-loaded") is None
    study = make_study({"relu": [0.9, 0.9], "elu": [0.9, 0.9]}, activation={"elu": "elu"})
    diag = report.diagnostics(study)
    assert list(diag["inactive"].fillna("neither")) == ["dead", "neither"]
    table = text.diagnostics_table(diag)
    assert "| g | elu |" in table and "| neither | – | – |" in table and "nan" not in table
    assert "In this study: dead for relu; neither for elu." in text.inactive_text(diag)
    diag = pd.DataFrame({"group": ["g", "g", "h"], "arm": ["relu", "elu", "tanh"],
                         "inactive": ["dead", None, "saturated"]})
    assert plots.inactive_panels(["g", "h"], lambda g: list(diag[diag["group"] == g]["arm"]), diag) == \
        [("g", "dead"), ("h", "saturated")]


def test_differences_spanning_orders_of_magnitude_get_a_symmetric_log_axis():
    ax = Figure().add_subplot()
    assert plots.difference_axis(ax, np.array([0.05, 0.2, -0.1, 0.3, 85.0, 86.0])) == \
        "symmetric log scale: linear within ±0.2 (shaded)"
    assert ax.get_xscale() == "symlog"
    ax = Figure().add_subplot()
    assert plots.difference_axis(ax, np.array([0.5, 1.2, -0.3, 2.0])) == "" and ax.get_xscale() == "linear"


BASELINE_SPEC = """\
name = "t"
compare = "activation"
seeds = 3
baseline = "relu"

[grid]
activation = ["relu", "tanh"]
"""


def test_the_baseline_key_must_name_a_label_of_the_compare_axis():
    spec = parse_spec(BASELINE_SPEC, "b.toml")
    assert spec.baseline == "relu" and spec.to_dict()["baseline"] == "relu"
    assert spec.to_dict()["axes"] == {"activation": ["relu", "tanh"]}
    assert parse_spec(BASELINE_SPEC.replace('baseline = "relu"\n', ""), "b.toml").to_dict()["baseline"] is None
    with pytest.raises(SpecError, match=r"^b\.toml line 4: baseline: expected one of the activation labels \(relu, "
                                        r"tanh\), got 'gelu'$"):
        parse_spec(BASELINE_SPEC.replace('"relu"\n\n', '"gelu"\n\n'), "b.toml")
    with pytest.raises(SpecError, match=r"^b\.toml line 4: baseline: expected one of .* got 3$"):
        parse_spec(BASELINE_SPEC.replace('baseline = "relu"', "baseline = 3"), "b.toml")
    with pytest.raises(SpecError, match=r"baseline: .* got 'relu'; an override of grid\.activation left it out: "
                                        r"add --set baseline=LABEL$"):
        parse_spec(BASELINE_SPEC, "b.toml", overrides=['grid.activation=["tanh", "gelu"]'])
    assert parse_spec(BASELINE_SPEC, "b.toml", overrides=["baseline=tanh"]).baseline == "tanh"
