"""The words and tables of a study report, worded for any study and any number of arms.

The compare axis (``study.compare``) names the arms; every number is computed from the CSV files.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from experiments.report.study import CONFIG_COLUMNS, Study, curve_differences

UNSET = {"train_subset": "all (50,000)", "weight_decay": "the optimizer's default",
         "clip_grad_norm": "no clipping", "clip_grad_value": "no clipping"}  # how an empty cell reads
VANISHING = 0.1  # first/last-layer gradient-norm ratio at initialisation below which gradients vanish


def md_table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(ci) -> str:
    """An accuracy interval in percent: ``97.12% [96.90, 97.30%]``."""
    return ci.format(".2%")


def p_text(p: float) -> str:
    return "–" if not np.isfinite(p) else f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def sentence(where: str, text: str) -> str:
    """``**group**: text``, or ``Text`` when the study has one group."""
    return where + text if where else text[:1].upper() + text[1:]


def and_list(items: list) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def setup_text(study: Study) -> str:
    """The config columns shared by all runs, those that vary, and the procedure."""
    runs = study.tables.runs[study.tables.runs["key"].isin(study.tables.plan["key"])]
    shared, varying = [], []
    for column in CONFIG_COLUMNS:
        if column not in runs.columns:
            continue
        values = [UNSET.get(column, "–") if pd.isna(v) else str(v) for v in pd.unique(runs[column])]
        (shared if len(values) == 1 else varying).append(
            f"`{column}` = {values[0]}" if len(values) == 1 else f"`{column}` ∈ {{{', '.join(values)}}}")
    lines = []
    if study.spec.get("description"):
        lines.append(study.spec["description"])
    lines.append("Shared by every run: " + ", ".join(shared) + ".")
    if varying:
        lines.append("Varying: " + "; ".join(varying) + ".")
    seeds = sorted(study.final["seed"].unique()) if len(study.final) else []
    tune_seeds = sorted(study.tune["seed"].unique()) if len(study.tune) else []
    text = f"Compared: the {study.compare} within each group ({and_list(study.groups)})." \
        if len(study.groups) > 1 else f"Compared: the {study.compare}."
    if tune_seeds:
        text += (f" Procedure: each arm's {and_list(study.tuned)} is chosen on the validation split — the best mean "
                 f"final validation accuracy over tuning seeds {', '.join(map(str, tune_seeds))} (a value with a "
                 f"diverged seed never wins) — then the final seeds {', '.join(map(str, seeds))}, disjoint from "
                 f"the tuning seeds, are trained at that value.")
    else:
        text += f" Final seeds: {', '.join(map(str, seeds))}."
    text += (" Test accuracy is reported, never used for a choice. Arms are compared seed by seed (the same seed "
             "gives every arm the same batch order and initialisation stream): paired t-test and Wilcoxon "
             "signed-rank test, Holm-corrected over the pairs of a group. Validation: the last 10,000 training "
             "images; test: the 10,000 test images.")
    lines.append(text)
    return "\n\n".join(lines)


# --------------------------------------------------------------------------- tables
def summary_table(study: Study, summary: pd.DataFrame, group: str) -> str:
    rows = []
    rank = summary[summary["group"] == group].assign(mean=lambda d: [c.mean for c in d["test"]])
    for _, r in rank.sort_values("mean", ascending=False, na_position="last").iterrows():
        spread = f"{r['spread'][0]:.2%}–{r['spread'][1]:.2%}" if r["ok"] else "–"
        note = "**seeds disagree**" if r["disagree"] else ""
        reach = "not reached" if not r["reached"] else \
            f"{r['reached']}/{r['runs']}: epoch {r['reach_epoch']:g}, {r['reach_s']:.0f} s"
        rows.append([r["arm"], r["tuned"], f"{r['ok']}/{r['runs']}", pct(r["test"]), spread, note, reach,
                     f"{r['time']:.0f}"])
    return md_table([study.compare, "chosen", "ok runs", "test accuracy [95% interval]", "seeds' range",
                     "", f"time to {study.target:.0%} val (median)", "s / run"], rows)


def comparisons_table(table: pd.DataFrame, group: str) -> str:
    rows = [[r["arm_a"], r["arm_b"], r["n"], f"{r['mean_diff']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]",
             p_text(r["p_t"]), p_text(r["p_wilcoxon"]), p_text(r["p_holm"]), r["verdict"]]
            for _, r in table[table["group"] == group].iterrows()]
    return md_table(["arm a", "arm b", "seeds", "a − b (points) [95% CI]", "p (t)", "p (Wilcoxon)", "p Holm",
                     "verdict"], rows)


def tuning_table(study: Study) -> str:
    key = study.tuned[0] if len(study.tuned) == 1 else None
    if key is None:
        return ""
    values = sorted(study.tune[key].unique())
    rows = []
    for group in study.groups:
        for arm in study.arms_of(group):
            runs = study.runs_of(group, arm, "tune")
            chosen = study.runs_of(group, arm)
            cells = []
            for v in values:
                at = runs[runs[key] == v]
                if not len(at):
                    cells.append("")
                    continue
                cell = "diverged" if (at["status"] != "ok").any() else f"{at['final_val_acc'].mean():.2%}"
                cells.append(f"**{cell}**" if len(chosen) and chosen[key].iloc[0] == v else cell)
            rows.append([group, arm] + cells)
    return md_table(["group", study.compare] + [f"{key} {v:g}" if isinstance(v, float) else f"{key} {v}"
                                                 for v in values], rows)


def diagnostics_table(diag: pd.DataFrame) -> str:
    rows = [[r["group"], r["arm"], f"{r['grad_first_init']:.2e}", f"{r['grad_last_init']:.2e}",
             f"{r['grad_ratio_init']:.1e}", f"{r['grad_ratio_end']:.1e}", r["inactive"],
             f"{r['inactive_init']:.1%}", f"{r['inactive_end']:.1%}"]
            for _, r in diag.iterrows()]
    return md_table(["group", "arm", "‖∂E/∂W₁‖ init", "‖∂E/∂W_out‖ init", "first/last init", "first/last end",
                     "inactive means", "inactive init", "inactive end"], rows)


def diverged_table(study: Study) -> str:
    runs = pd.concat([study.tune.assign(phase="tune"), study.final.assign(phase="final")])
    bad = runs[runs["status"] == "diverged"]
    if not len(bad):
        return ""
    tuned = study.tuned
    rows = []
    for (group, arm, phase, *values), df in bad.groupby(["group", "arm", "phase"] + tuned, sort=False):
        setting = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in zip(tuned, values))
        rows.append([group, arm, phase, setting or "–", ", ".join(map(str, sorted(df["seed"]))),
                     ", ".join(map(str, df["epochs_done"].astype(int)))])
    return md_table(["group", study.compare, "phase", "setting", "seeds", "diverged in epoch"], rows)


def curve_table(diffs: dict) -> str:
    rows = [[group, a, b] + [f"{float(t[m].max()):.1e}" if m in t else "–" for m in ("train_loss", "val_loss",
                                                                                      "val_acc")]
            for (group, a, b), t in diffs.items()]
    return md_table(["group", "arm a", "arm b", "largest \\|Δ\\| train loss", "largest \\|Δ\\| val loss",
                     "largest \\|Δ\\| val acc"], rows)


# --------------------------------------------------------------------------- findings
def ranking_findings(study: Study, summary: pd.DataFrame, table: pd.DataFrame) -> list:
    """Per group: the arm with the highest mean test accuracy, and what the paired tests can say about it."""
    out = []
    for group in study.groups:
        rows = summary[(summary["group"] == group) & (summary["ok"] > 0)]
        if not len(rows):
            continue
        rows = rows.assign(mean=[c.mean for c in rows["test"]]).sort_values("mean", ascending=False)
        best = rows.iloc[0]
        where = f"**{group}**: " if len(study.groups) > 1 else ""
        if len(rows) == 1:
            out.append(sentence(where, f"{best['arm']}: test accuracy {pct(best['test'])} over {best['ok']} seeds."))
            continue
        n_pairs = int((table["group"] == group).sum())
        separable = int(((table["group"] == group) & (table["p_holm"] < 0.05)).sum())
        count = f" {separable} of {n_pairs} pair{'s are' if n_pairs != 1 else ' is'} separable."
        if np.isclose(rows["mean"], best["mean"], rtol=0, atol=1e-12).all():
            text = sentence(where, f"all {len(rows)} arms reach the same mean test accuracy, {pct(best['test'])} "
                                   f"({best['ok']} seeds).") + count
            out.append(text)
            continue
        pairs = table[(table["group"] == group) & ((table["arm_a"] == best["arm"]) | (table["arm_b"] == best["arm"]))]
        beaten = pairs[(pairs["arm_a"] == best["arm"]) & (pairs["p_holm"] < 0.05)]["arm_b"].tolist()
        tied = [a for a in rows["arm"].iloc[1:] if a not in beaten]
        text = sentence(where, f"the highest mean test accuracy is {best['arm']}'s, {pct(best['test'])} "
                               f"({best['ok']} seeds). ")
        if beaten and not tied:
            text += f"The paired tests separate it from every other {study.compare} (p_Holm < 0.05)."
        elif beaten:
            text += (f"The paired tests separate it from {and_list(beaten)} (p_Holm < 0.05), but not from "
                     f"{and_list(tied)}.")
        else:
            text += f"The paired tests cannot separate it from {and_list(tied)} with these seeds."
        text += count
        disagree = rows[rows["disagree"]]["arm"].tolist()
        if disagree:
            text += f" Seeds disagree wildly (> 5 points apart or some diverged) for {and_list(disagree)}."
        out.append(text)
    return out


def diagnostic_findings(study: Study, diag: pd.DataFrame) -> list:
    """Vanishing gradients, dead units and saturation, per group, naming the arms where they occur."""
    out = []
    for group in study.groups:
        rows = diag[diag["group"] == group].set_index("arm")
        if not len(rows):
            continue
        where = f"**{group}**: " if len(study.groups) > 1 else ""
        vanish = rows[rows["grad_ratio_init"] < VANISHING]
        if len(vanish):
            parts = [f"{arm} (first layer {r['grad_first_init']:.1e} against {r['grad_last_init']:.1e} at the output "
                     f"layer, ratio {r['grad_ratio_init']:.1e}; after training {r['grad_ratio_end']:.1e})"
                     for arm, r in vanish.iterrows()]
            out.append(sentence(where, f"vanishing gradients at initialisation for {and_list(parts)}."))
        else:
            low, high = f"{rows['grad_ratio_init'].min():.2g}", f"{rows['grad_ratio_init'].max():.2g}"
            span = f"is {low} for every arm" if low == high else f"is between {low} and {high}"
            out.append(sentence(where, f"no vanishing gradients at initialisation: the first/output-layer gradient-"
                                       f"norm ratio {span}."))
        dead = rows[(rows["inactive"] == "dead") & (rows["dead_end"] > 0.005)]
        if len(dead):
            parts = [f"{arm} {r['dead_end']:.1%} ({r['dead_init']:.1%} at initialisation, up to "
                     f"{r['dead_max_end']:.1%} in one layer)" for arm, r in dead.iterrows()]
            out.append(sentence(where, f"dead hidden units (f' = 0 on every probe image) after training: "
                                       f"{and_list(parts)}."))
        saturating = rows[rows["inactive"] == "saturated"]
        if len(saturating):
            parts = [f"{arm} {r['saturated_init']:.1%} at initialisation, {r['saturated_end']:.1%} after training"
                     for arm, r in saturating.iterrows()]
            out.append(sentence(where, f"saturated outputs (in the flat tails, per unit and image): "
                                       f"{and_list(parts)}."))
    return out


def divergence_findings(study: Study) -> list:
    runs = pd.concat([study.tune, study.final]).drop_duplicates("key")
    bad = runs[runs["status"] == "diverged"]
    if not len(bad):
        return [f"No run diverged ({len(runs)} runs)."]
    arms = bad.groupby(["group", "arm"], sort=False).size()
    final = study.final[study.final["status"] == "diverged"]
    text = (f"{len(bad)} of {len(runs)} runs diverged (loss NaN/inf or above 100× its value at initialisation: stopped, kept as `diverged`, never chosen), "
            f"in {len(arms)} arm{'s' if len(arms) != 1 else ''}")
    text += f"; {len(final)} of them among the final seeds." if len(final) else "; none among the final seeds."
    return [text + " The table under *Diverged runs* lists them."]


def coincide_findings(diffs: dict) -> list:
    out = []
    for (group, a, b), table in diffs.items():
        worst = ", ".join(f"{m} {float(table[m].max()):.1e}" for m in table.columns)
        out.append(f"{a} and {b} ({group}): the learning curves coincide on every seed and epoch (largest |Δ|: "
                   f"{worst}; float64 rounding is ~1e-16 per operation, float32's ~1e-7).")
    return out


def findings(study: Study) -> list:
    from experiments.report.study import arm_summary, comparisons, diagnostics

    summary = arm_summary(study)
    if not len(summary):
        return ["No run of the final seeds has finished yet."]
    return ranking_findings(study, summary, comparisons(study)) + coincide_findings(curve_differences(study)) + \
        diagnostic_findings(study, diagnostics(study)) + divergence_findings(study)


def environment_table(study: Study) -> str:
    env = study.tables.environment
    devices = ", ".join(sorted(study.tables.runs["device"].astype(str).unique())) if len(study.tables.runs) else "–"
    rows = [[r["name"], r["value"]] for _, r in env.iterrows()] + [["device(s) recorded by the runs", devices]]
    return md_table(["", ""], rows)


INACTIVE_TEXT = ("Measured on a fixed probe batch (the first 1,000 validation images), mean over the final seeds. "
                 "‖∂E/∂W₁‖: the first layer's weight-gradient norm; ‖∂E/∂W_out‖: the output layer's. *Inactive* "
                 "units, in the sense that applies to the activation: **dead** for activations without flat "
                 "tails (ReLU family): f'(z) = 0 on every probe image, so the unit never learns again; "
                 "**saturated** for sigmoid and tanh (Glorot & Bengio 2010): the fraction of (unit, image) "
                 "pairs whose output lies in a flat tail (|tanh| > 0.97, σ within 0.03 of 0 or 1), where f' is "
                 "under ~6% (tanh) or 12% (σ) of its peak. Fractions are means over the hidden layers.")
