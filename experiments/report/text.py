"""The words and tables of a study report, worded for any study and any number of arms.

The compare axis (``study.compare``) names the arms; every number is computed from the CSV files.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from experiments.data import N_TRAIN, N_VAL
from experiments.report.study import CONFIG_COLUMNS, Study, curve_differences, diagnostics, registered
from experiments.stats import ALPHA, WILD_SPREAD
from manual.activations import SATURATION_MARGIN

UNSET = {"train_subset": f"all ({N_TRAIN:,})", "weight_decay": "the optimizer's default",
         "clip_grad_norm": "no clipping", "clip_grad_value": "no clipping"}  # how an empty cell reads
# Gradients at initialisation, from the first/output-layer ratio of weight-gradient norms and the largest
# layer norm (layers.csv, epoch 0, probe batch). Vanishing: the first layer gets less than a tenth of the
# output layer's gradient. Exploding: it gets more than 100 times as much, or some layer's norm exceeds 100.
# The exploding thresholds sit in a gap of the depth study (results/depth, 81 arms, means over seeds): no
# arm with Xavier or He init, or with batch norm, has a ratio above 21 (the 16-hidden ReLU nets with batch
# norm: 20-21; batch norm makes the gradient grow mildly towards the input at initialisation) or a layer
# norm above 10, while N(0, 1) weights give the 8- and 16-hidden tanh nets ratios of 160 and 6.2e4 and the
# ReLU nets (2 to 16 hidden) layer norms of 140 to 9.6e12 (N(0, 1) sigmoid nets saturate and vanish
# instead). Some growth towards the input is normal (ratios of 3-6 for the ReLU and tanh nets that learn),
# so the growth threshold is wider than the vanishing one.
VANISHING = 0.1
EXPLODING_RATIO = 100.0
EXPLODING_NORM = 100.0
FEW = 0.005  # dead or saturated fractions below this (0.5%) are reported as "below 0.5%", not arm by arm
SEPARABLE = ALPHA  # the Holm-corrected p-value below which a pair is separable: the statistics' α


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


def plural(n: int, noun: str, plural_noun: str | None = None) -> str:
    """``1 pair``, ``3 pairs``."""
    return f"{n} {noun if n == 1 else plural_noun or noun + 's'}"


def value_text(key: str, value) -> str:
    """``lr 0.03``: a tuned key and its value."""
    return f"{key} {value:g}" if isinstance(value, (float, np.floating)) else f"{key} {value}"


def natural_key(text: str):
    """Sort key for the values of a config column, as text: numbers by value, layer sizes (784-64-10) by their
    widths, everything else alphabetically after them."""
    try:
        return 0, float(text), (), ""
    except ValueError:
        pass
    parts = text.split("-")
    if all(p.isdigit() for p in parts):
        return 1, float(len(parts)), tuple(int(p) for p in parts), ""  # fewer layers first
    return 2, 0.0, (), text


def mean_text(row) -> str:
    """An arm's mean test accuracy in words: ``91.15%``, ``91.86% (1 of 3 seeds diverged)`` or ``diverged
    (3 of 3 seeds, in epoch 1)``."""
    if row["ok"] == 0:
        if row["diverged"]:
            epochs = and_list(row["diverged_epochs"])
            return f"diverged ({row['diverged']} of {row['runs']} seeds, in epoch {epochs})"
        return f"no finished seed (0 of {row['runs']})"
    text = f"{row['test'].mean:.2%}"
    if row["diverged"]:
        text += f" ({row['diverged']} of {row['runs']} seeds diverged)"
    return text


def with_means(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` of ``arm_summary`` with a ``mean`` column (mean test accuracy), best first."""
    return rows.assign(mean=[c.mean for c in rows["test"]]).sort_values("mean", ascending=False,
                                                                        na_position="last", kind="stable")


def groups_text(study: Study) -> str:
    """How the groups are made, short: their names when there are a few, else how many along which axes."""
    if len(study.groups) <= 4:
        return f"within each group ({'; '.join(study.groups)})"
    labels = [study.group_labels(g) for g in study.groups]
    axes = study.group_axes
    if axes and all(labels):
        counts = [f"{a.replace('_', ' ')} ({len(dict.fromkeys(l[a] for l in labels))})" for a in axes]
        return f"within each of the {len(study.groups)} groups, one per combination of {and_list(counts)}"
    return f"within each of the {len(study.groups)} groups"


def unused_columns(runs: pd.DataFrame) -> set:
    """The config columns no run's network reads: with ``layers`` on every run, the short form's ``layer_sizes``
    and ``batch_norm``, and ``activation`` too when no layer list has the placeholder ``activation``."""
    if "layers" not in runs.columns or not len(runs) or runs["layers"].isna().any():
        return set()
    placeholder = runs["layers"].map(lambda layers: "activation" in layers.split(" | ")).any()
    return {"layer_sizes", "batch_norm"} | (set() if placeholder else {"activation"})


def setup_text(study: Study) -> str:
    """The config columns shared by all runs, those that vary, and the procedure."""
    runs = study.tables.runs[study.tables.runs["key"].isin(study.tables.plan["key"])]
    shared, varying = [], []
    unused = unused_columns(runs)
    for column in CONFIG_COLUMNS:
        if column not in runs.columns or column in unused:
            continue
        values = sorted((UNSET.get(column, "–") if pd.isna(v) else str(v) for v in pd.unique(runs[column])),
                        key=natural_key)
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
    arms = f" ({', '.join(study.arms)})" if len(study.arms) <= 12 else f" ({len(study.arms)} of them)"
    text = f"Compared: the {study.compare}{arms} {groups_text(study)}." if len(study.groups) > 1 else \
        f"Compared: the {study.compare}{arms}."
    if study.baseline:
        text += f" Baseline: {study.baseline} (each group's best {study.compare} is stated against it)."
    if tune_seeds:
        text += (f" Procedure: each arm's {and_list(study.tuned)} is chosen on the validation split — the best mean "
                 f"final validation accuracy over tuning seeds {', '.join(map(str, tune_seeds))} (a value with a "
                 f"diverged seed never wins) — then the final seeds {', '.join(map(str, seeds))}, disjoint from "
                 f"the tuning seeds, are trained at that value.")
    else:
        text += f" Final seeds: {', '.join(map(str, seeds))}."
    text += (" Test accuracy is reported, never used for a choice. Arms are compared seed by seed (the same seed "
             "gives every arm the same batch order and initialisation stream): paired t-test and Wilcoxon "
             "signed-rank test, Holm-corrected over the pairs of a group. Validation: the last "
             f"{N_VAL:,} training images; test: the 10,000 test images.")
    lines.append(text)
    return "\n\n".join(lines)


# --------------------------------------------------------------------------- tables
def summary_table(study: Study, summary: pd.DataFrame, group: str) -> str:
    rows = []
    for _, r in with_means(summary[summary["group"] == group]).iterrows():
        spread = f"{r['spread'][0]:.2%}–{r['spread'][1]:.2%}" if r["ok"] else "–"
        every = r["ok"] == 0 and r["diverged"] == r["runs"]
        note = "**every seed diverged**" if every else "**seeds disagree**" if r["disagree"] else ""
        accuracy = mean_text(r) if r["ok"] == 0 else pct(r["test"])
        reach = "not reached" if not r["reached"] else \
            f"{r['reached']}/{r['runs']}: epoch {r['reach_epoch']:g}, {r['reach_s']:.0f} s"
        rows.append([r["arm"], r["tuned"], f"{r['ok']}/{r['runs']}", accuracy, spread, note, reach,
                     f"{r['time']:.0f}"])
    return md_table([study.compare, "chosen", "ok runs", "test accuracy [95% interval]", "seeds' range",
                     "note", f"time to {study.target:.0%} val (median)", "s / run"], rows)


def comparable(table: pd.DataFrame) -> pd.Series:
    """The pairs with at least 2 seeds on which both arms finished: only those have a difference and a test."""
    return table["n"] >= 2


def comparisons_table(table: pd.DataFrame, group: str) -> str:
    """The group's comparable pairs; the pairs that cannot be compared are named below the table."""
    rows_of = table[table["group"] == group]
    rows = [[r["arm_a"], r["arm_b"], r["n"], f"{r['mean_diff']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]",
             p_text(r["p_t"]), p_text(r["p_wilcoxon"]), p_text(r["p_holm"]), r["verdict"]]
            for _, r in rows_of[comparable(rows_of)].iterrows()]
    text = md_table(["arm a", "arm b", "seeds", "a − b (points) [95% CI]", "p (t)", "p (Wilcoxon)", "p Holm",
                     "verdict"], rows) if rows else "No pair of this group can be compared."
    skipped = rows_of[~comparable(rows_of)]
    if len(skipped):
        pairs = [f"{r['arm_a']} – {r['arm_b']} ({r['n']} seed{'s' if r['n'] != 1 else ''})"
                 for _, r in skipped.iterrows()]
        text += (f"\n\nNot comparable (fewer than 2 seeds on which both finished, so no difference or test): "
                 f"{and_list(pairs)}.")
    return text


def tuning_combinations(study: Study) -> list:
    """Every combination of the tuned keys' values that some arm was tuned on, sorted: tuples in the order
    of ``study.tuned``."""
    keys = study.tuned
    combos = study.tune[keys].drop_duplicates()
    return sorted((tuple(r) for r in combos.itertuples(index=False)),
                  key=lambda c: tuple((pd.isna(v), v if not pd.isna(v) else 0) for v in c))


def tuning_table(study: Study, edges: pd.DataFrame | None = None) -> str:
    """Mean validation accuracy of the tuning seeds per arm (rows) and candidate (columns, one per combination
    of the tuned keys' values); bold = chosen; a last column flags a choice at the edge of its grid."""
    keys = study.tuned
    if not keys or not len(study.tune):
        return ""
    combos = tuning_combinations(study)
    edges = edges if edges is not None else pd.DataFrame(columns=["group", "arm", "key", "value", "edge"])
    rows = []
    for group in study.groups:
        for arm in study.arms_of(group):
            runs = study.runs_of(group, arm, "tune")
            chosen = study.runs_of(group, arm)
            picked = tuple(chosen[keys].iloc[0]) if len(chosen) else None
            cells = []
            for combo in combos:
                at = runs[np.logical_and.reduce([runs[k] == v for k, v in zip(keys, combo)])]
                if not len(at):
                    cells.append("")
                    continue
                cell = "diverged" if (at["status"] != "ok").any() else f"{at['final_val_acc'].mean():.2%}"
                cells.append(f"**{cell}**" if picked == combo else cell)
            edge = edges[(edges["group"] == group) & (edges["arm"] == arm)]
            flag = "; ".join(f"{r['edge']} ({value_text(r['key'], r['value'])})" for _, r in edge.iterrows())
            rows.append([group, arm] + cells + ([flag] if len(edges) else []))
    header = ["group", study.compare] + [", ".join(value_text(k, v) for k, v in zip(keys, c)) for c in combos]
    return md_table(header + (["chosen at the grid's edge"] if len(edges) else []), rows)


def gradient_state(row) -> str:
    """"exploding", "vanishing" or "" for a row of ``diagnostics`` (the rule at the top of this module)."""
    if row["grad_ratio_init"] > EXPLODING_RATIO or row["grad_max_init"] > EXPLODING_NORM:
        return "exploding"
    return "vanishing" if row["grad_ratio_init"] < VANISHING else ""


def percent_or_dash(value) -> str:
    return "–" if pd.isna(value) else f"{value:.1%}"


def diagnostics_table(diag: pd.DataFrame) -> str:
    rows = [[r["group"], r["arm"], f"{r['grad_first_init']:.2e}", f"{r['grad_last_init']:.2e}",
             f"{r['grad_max_init']:.2e}", f"{r['grad_ratio_init']:.1e}",
             f"{r['grad_ratio_end']:.1e}" if r["finished"] else "diverged", gradient_state(r) or "–",
             "neither" if pd.isna(r["inactive"]) else r["inactive"], percent_or_dash(r["inactive_init"]),
             percent_or_dash(r["inactive_end"]) if r["finished"] or pd.isna(r["inactive"]) else "diverged"]
            for _, r in diag.iterrows()]
    return md_table(["group", "arm", "‖∂E/∂W₁‖ init", "‖∂E/∂W_out‖ init", "largest layer init",
                     "first/last init", "first/last end", "gradients at init", "inactive means", "inactive init",
                     "inactive end"], rows)


def diverged_table(study: Study) -> str:
    runs = pd.concat([study.tune.assign(phase="tune"), study.final.assign(phase="final")])
    bad = runs[runs["status"] == "diverged"]
    if not len(bad):
        return ""
    tuned = study.tuned
    rows = []
    for (group, arm, phase, *values), df in bad.groupby(["group", "arm", "phase"] + tuned, sort=False):
        setting = ", ".join(value_text(k, v) for k, v in zip(tuned, values))
        rows.append([group, arm, phase, setting or "–", ", ".join(map(str, sorted(df["seed"]))),
                     ", ".join(map(str, df["epochs_done"].astype(int)))])
    return md_table(["group", study.compare, "phase", "setting", "seeds", "diverged in epoch"], rows)


def overview_table(study: Study, summary: pd.DataFrame) -> str:
    """Every group and arm in one table, so that groups can be compared with each other: a row per
    combination of the group axes but the last, a column per (last group axis, arm); with one group axis, a
    row per arm and a column per group. Cells: mean test accuracy of the final seeds; "" when the study
    has one group or its groups cannot be told apart by axis."""
    if len(study.groups) < 2 or not len(summary):
        return ""
    labels = {g: study.group_labels(g) for g in study.groups}
    if any(v is None for v in labels.values()):
        return ""
    cells, best = {}, {}
    for group in study.groups:
        rows = with_means(summary[summary["group"] == group])
        finished = rows[rows["ok"] > 0]
        best[group] = finished["arm"].iloc[0] if len(finished) else None
        for _, r in rows.iterrows():
            text = ("diverged" if r["diverged"] == r["runs"] else "–") if r["ok"] == 0 else \
                f"{r['mean']:.2%}" + ("†" if r["diverged"] else "")
            cells[group, r["arm"]] = f"**{text}**" if r["arm"] == best[group] and len(finished) > 1 else text
    axes = study.group_axes
    row_axes, column_axis = axes[:-1], axes[-1]
    note = (f"Mean test accuracy of the final seeds; **bold**: the best {study.compare} of its group; "
            f"diverged: every seed diverged; †: some seeds diverged (the mean is over those that finished).")
    if not row_axes:
        header = [study.compare] + [labels[g][column_axis] for g in study.groups]
        table = [[arm] + [cells.get((g, arm), "") for g in study.groups] for arm in study.arms]
        return note + "\n\n" + md_table(header, table)
    row_keys = list(dict.fromkeys(tuple(labels[g][a] for a in row_axes) for g in study.groups))
    column_labels = list(dict.fromkeys(labels[g][column_axis] for g in study.groups))
    by_key = {(tuple(labels[g][a] for a in row_axes), labels[g][column_axis]): g for g in study.groups}
    columns = [(c, arm) for c in column_labels for arm in study.arms
               if any((g := by_key.get((k, c))) is not None and (g, arm) in cells for k in row_keys)]
    header = [a.replace("_", " ") for a in row_axes] + [f"{c} · {arm}" for c, arm in columns]
    table = []
    for key in row_keys:
        table.append(list(key) + [cells.get((by_key.get((key, c)), arm), "") for c, arm in columns])
    return (f"Columns: {column_axis.replace('_', ' ')} · {study.compare}. " + note + "\n\n" + md_table(header, table))


def clipping_table(study: Study, clip: pd.DataFrame, summary: pd.DataFrame) -> str:
    """For the arms that clip: how often clipping acted (fraction of steps whose gradients it changed), and
    their test accuracy, next to the baseline's when the spec names one."""
    if not len(clip):
        return ""
    means = {(r["group"], r["arm"]): mean_text(r) for _, r in summary.iterrows()}
    reference = study.baseline
    rows = []
    for _, r in clip.iterrows():
        row = [r["group"], r["arm"], r["setting"], f"{r['mean']:.1%}", f"{r['first']:.1%}",
               f"{r['last']:.1%} (epoch {r['epochs']})", means.get((r["group"], r["arm"]), "–")]
        if reference:
            row.append(means.get((r["group"], reference), "–") if r["arm"] != reference else "–")
        rows.append(row)
    header = ["group", study.compare, "clipping", "steps clipped (mean over epochs and seeds)", "in epoch 1",
              "in the last epoch", "test accuracy"] + ([f"{reference}'s test accuracy"] if reference else [])
    return md_table(header, rows)


def curve_table(diffs: dict) -> str:
    rows = [[group, a, b] + [f"{float(t[m].max()):.1e}" if m in t else "–" for m in ("train_loss", "val_loss",
                                                                                      "val_acc")]
            for (group, a, b), t in diffs.items()]
    return md_table(["group", "arm a", "arm b", "largest \\|Δ\\| train loss", "largest \\|Δ\\| val loss",
                     "largest \\|Δ\\| val acc"], rows)


# --------------------------------------------------------------------------- findings
def pair_row(table: pd.DataFrame, group: str, a: str, b: str):
    """The comparisons row of arms ``a`` and ``b`` in ``group`` (either orientation), or None."""
    rows = table[(table["group"] == group) & (((table["arm_a"] == a) & (table["arm_b"] == b)) |
                                              ((table["arm_a"] == b) & (table["arm_b"] == a)))]
    return rows.iloc[0] if len(rows) else None


def separable_count(pairs: pd.DataFrame, skipped: int) -> str:
    """`` 1 of 3 pairs is separable.``, with the pairs that cannot be compared left out and counted."""
    n, k = len(pairs), int((pairs["p_holm"] < SEPARABLE).sum())
    kind = "comparable " if skipped else ""
    if n == 0:
        text = " No pair can be compared"
    elif n == 1:
        text = f" The one {kind}pair is {'separable' if k else 'not separable'}"
    else:
        text = f" {k} of {n} {kind}pairs {'is' if k == 1 else 'are'} separable"
    if skipped:
        text += f" ({plural(skipped, 'pair')} not comparable: fewer than 2 seeds on which both finished)"
    return text + "."


def ranking_findings(study: Study, summary: pd.DataFrame, table: pd.DataFrame) -> list:
    """Per group: the arm with the highest mean test accuracy, and what the paired tests can say about it. Arms
    without a finished seed are named and left out of the comparison; only comparable pairs are counted."""
    out = []
    for group in study.groups:
        arms = summary[summary["group"] == group]
        if not len(arms):
            continue
        where = f"**{group}**: " if len(study.groups) > 1 else ""
        pairs = table[table["group"] == group]
        usable, skipped = pairs[comparable(pairs)], int((~comparable(pairs)).sum())
        unfinished = [f"{r['arm']}: {'every seed diverged' if r['diverged'] == r['runs'] else 'no seed finished'}, "
                      f"not compared" for _, r in arms[arms["ok"] == 0].iterrows()]
        notes = "".join(f" {n}." for n in unfinished)
        rows = with_means(arms[arms["ok"] > 0])
        if not len(rows):
            out.append(sentence(where, f"no {study.compare} has a finished seed.") + notes)
            continue
        best = rows.iloc[0]
        if len(rows) == 1:
            out.append(sentence(where, f"{best['arm']}: test accuracy {pct(best['test'])} over {best['ok']} "
                                       f"seeds.") + notes)
            continue
        count = separable_count(usable, skipped)
        if np.isclose(rows["mean"], best["mean"], rtol=0, atol=1e-12).all():
            out.append(sentence(where, f"all {len(rows)} arms{' with finished seeds' if unfinished else ''} reach "
                                       f"the same mean test accuracy, "
                                       f"{pct(best['test'])} ({best['ok']} seeds).") + notes + count)
            continue
        mine = usable[(usable["arm_a"] == best["arm"]) | (usable["arm_b"] == best["arm"])]
        beaten = mine[(mine["arm_a"] == best["arm"]) & (mine["p_holm"] < SEPARABLE)]["arm_b"].tolist()
        compared = set(mine["arm_a"]) | set(mine["arm_b"])
        others = rows["arm"].iloc[1:].tolist()
        tied = [a for a in others if a in compared and a not in beaten]
        apart = [a for a in others if a not in compared]  # finished, but on too few seeds shared with the best
        text = sentence(where, f"the highest mean test accuracy is {best['arm']}'s, {pct(best['test'])} "
                               f"({best['ok']} seeds). ")
        if beaten and not tied and not apart:
            text += (f"The paired tests separate it from every other {study.compare} (p_Holm < {SEPARABLE:g})."
                     if not unfinished
                     else f"The paired tests separate it from {and_list(beaten)} (p_Holm < {SEPARABLE:g}), "
                          f"{'the only other' if len(beaten) == 1 else 'every other'} {study.compare} with finished "
                          f"seeds.")
        elif beaten:
            text += f"The paired tests separate it from {and_list(beaten)} (p_Holm < {SEPARABLE:g})"
            text += f", but not from {and_list(tied)}." if tied else "."
        elif tied:
            text += f"The paired tests cannot separate it from {and_list(tied)} with these seeds."
        if apart:
            text += f" Too few seeds shared with {and_list(apart)} to compare."
        text += notes + count
        disagree = [f"{r['arm']} (every seed diverged)" if r["ok"] == 0 and r["diverged"] == r["runs"] else r["arm"]
                    for _, r in with_means(arms[arms["disagree"]]).iterrows()]
        if disagree:
            text += (f" Seeds disagree wildly (> {WILD_SPREAD * 100:g} points apart or some diverged) for "
                     f"{and_list(disagree)}.")
        out.append(text)
    return out


def baseline_findings(study: Study, summary: pd.DataFrame, table: pd.DataFrame) -> list:
    """With a ``baseline`` in the spec, one line per group: ``none 10.58% → 91.15% with batch norm (+80.57
    points, p_Holm = 0.001)``: the baseline's mean test accuracy (or that it diverged) and the group's best arm."""
    base = study.baseline
    if not base:
        return []
    lines = []
    for group in study.groups:
        arms = summary[summary["group"] == group]
        mine = arms[arms["arm"] == base]
        if not len(mine):
            continue
        b = mine.iloc[0]
        where = f"**{group}**: " if len(study.groups) > 1 else ""
        others = with_means(arms[(arms["arm"] != base) & (arms["ok"] > 0)])
        if not len(others):
            lines.append(f"{where}{base} {mean_text(b)}; no other {study.compare} has a finished seed")
            continue
        best = others.iloc[0]
        first = base if b["ok"] and b["test"].mean >= best["mean"] else best["arm"]  # the better of the two
        pair = pair_row(table, group, best["arm"], base)
        test = ""
        if pair is not None and pair["n"] >= 2:
            diff = pair["mean_diff"] if pair["arm_a"] == first else -pair["mean_diff"]
            verdict = f"p_Holm = {pair['p_holm']:.2g}" if pair["p_holm"] < SEPARABLE else \
                f"not separable with {pair['n']} seeds"
            test = f" ({diff:+.2f} points, {verdict})" if first != base else \
                f" ({abs(diff):.2f} points below, {verdict})"
        if first == base:
            lines.append(f"{where}{base} {mean_text(b)} is already the best; the next, {best['arm']}, "
                         f"{mean_text(best)}{test}")
        else:
            lines.append(f"{where}{base} {mean_text(b)} → {mean_text(best)} with {best['arm']}{test}")
    if not lines:
        return []
    head = (f"Each group's best {study.compare} against the baseline, {base} (mean test accuracy of the final "
            f"seeds; the difference is paired, seed by seed, on the seeds both finished):")
    return [head + "".join(f"\n  - {line}" for line in lines)] if len(study.groups) > 1 else \
        [f"Against the baseline: {lines[0]}."]


def clipping_findings(study: Study, clip: pd.DataFrame) -> list:
    """How often gradient clipping acted, per clipping arm, over the groups."""
    out = []
    for arm, rows in clip.groupby("arm", sort=False):
        rows = rows.sort_values("mean", kind="stable")
        low, high = rows.iloc[0], rows.iloc[-1]
        if len(rows) == 1:
            out.append(f"{arm} ({low['setting']}) clipped the gradients in {low['mean']:.1%} of the steps (mean over "
                       f"epochs and seeds; {low['first']:.1%} in epoch 1, {low['last']:.1%} in the last).")
            continue
        half = int((rows["mean"] > 0.5).sum())
        out.append(f"{arm} ({low['setting']}) clipped the gradients in {low['mean']:.1%} ({low['group']}) to "
                   f"{high['mean']:.1%} ({high['group']}) of the steps (mean over epochs and seeds), and in more than "
                   f"half of the steps in {half} of the {len(rows)} groups; the *Gradient clipping* table has each "
                   f"group.")
    return out


def tuning_findings(study: Study, edges: pd.DataFrame) -> list:
    """The tuned choices at the edge of their grid, where the best value may lie beyond it."""
    if not len(edges):
        return []
    arms = sum(len(study.arms_of(g)) for g in study.groups)
    parts = []
    for edge, rows in edges.groupby("edge", sort=False):
        names = [r["arm"] + (f" ({r['group']})" if len(study.groups) > 1 else "") +
                 f" {value_text(r['key'], r['value'])}" for _, r in rows.iterrows()]
        listed = and_list(names) if len(names) <= 8 else \
            f"{len(names)} arms ({', '.join(sorted({value_text(r['key'], r['value']) for _, r in rows.iterrows()}))})"
        parts.append(f"at the {edge} of the grid, {listed}")
    return [f"Chosen at the edge of the tuning grid, where the best value may lie beyond it ({len(edges)} of {arms} "
            f"arms; marked in the tuning table): {'; '.join(parts)}."]


def gradient_findings(where: str, rows: pd.DataFrame) -> list:
    """Vanishing and exploding gradients at initialisation in one group (rows indexed by arm), by the rule at
    the top of this module; the arms with neither get their range."""
    out = []
    state = rows.apply(gradient_state, axis=1)
    explode, vanish = rows[state == "exploding"], rows[state == "vanishing"]
    if len(explode):
        parts = [f"{arm} (layer norms up to {r['grad_max_init']:.1e}; first layer {r['grad_first_init']:.1e} against "
                 f"{r['grad_last_init']:.1e} at the output layer, ratio {r['grad_ratio_init']:.2g})"
                 for arm, r in explode.iterrows()]
        out.append(sentence(where, f"exploding gradients at initialisation for {and_list(parts)}."))
    if len(vanish):
        parts = [f"{arm} (first layer {r['grad_first_init']:.1e} against {r['grad_last_init']:.1e} at the output "
                 f"layer, ratio {r['grad_ratio_init']:.1e}; after training "
                 f"{r['grad_ratio_end']:.1e})" if r["finished"] else
                 f"{arm} (first layer {r['grad_first_init']:.1e} against {r['grad_last_init']:.1e} at the output "
                 f"layer, ratio {r['grad_ratio_init']:.1e}; no seed finished)"
                 for arm, r in vanish.iterrows()]
        out.append(sentence(where, f"vanishing gradients at initialisation for {and_list(parts)}."))
    rest = rows[state == ""]
    if len(rest):
        low, high = f"{rest['grad_ratio_init'].min():.2g}", f"{rest['grad_ratio_init'].max():.2g}"
        span = f"is {low}" if low == high else f"is between {low} and {high}"
        who = "every arm" if len(rest) == len(rows) else and_list(rest.index.tolist())
        out.append(sentence(where, f"neither vanishing nor exploding gradients at initialisation for {who}: the "
                                   f"first/output-layer gradient-norm ratio {span}, layer norms at most "
                                   f"{rest['grad_max_init'].max():.2g}."))
    return out


def diagnostic_findings(study: Study, diag: pd.DataFrame) -> list:
    """Vanishing and exploding gradients, dead units and saturation, per group, naming the arms where they occur
    (dead and saturated only for the arms whose activation they apply to)."""
    out = []
    for group in study.groups:
        rows = diag[diag["group"] == group].set_index("arm")
        if not len(rows):
            continue
        where = f"**{group}**: " if len(study.groups) > 1 else ""
        out += gradient_findings(where, rows)
        finished = rows[rows["finished"]]
        dead = finished[(finished["inactive"] == "dead") & (finished["dead_end"] > FEW)]
        if len(dead):
            parts = [f"{arm} {r['dead_end']:.1%} ({r['dead_init']:.1%} at initialisation, up to "
                     f"{r['dead_max_end']:.1%} in one layer)" for arm, r in dead.iterrows()]
            out.append(sentence(where, f"dead hidden units (f' = 0 on every probe image) after training: "
                                       f"{and_list(parts)}."))
        frozen = finished[finished["inactive"].isna() & (finished["dead_end"] > FEW)]
        if len(frozen):
            parts = [f"{arm} {r['dead_end']:.1%} (up to {r['dead_max_end']:.1%} in one layer)"
                     for arm, r in frozen.iterrows()]
            out.append(sentence(where, f"no unit can be dead in exact arithmetic for {and_list(frozen.index.tolist())} "
                                       f"(f' is never 0 on an interval), yet after training f' rounded to 0 (underflow "
                                       f"far out in a tail) on every probe image for {and_list(parts)} of the hidden "
                                       f"units: frozen in practice."))
        saturating = rows[rows["inactive"] == "saturated"]
        low = saturating[saturating[["saturated_init", "saturated_end"]].max(axis=1).fillna(0) < FEW]
        high = saturating[~saturating.index.isin(low.index)]
        if len(high):
            parts = [f"{arm} {r['saturated_init']:.1%} → " +
                     (f"{r['saturated_end']:.1%}" if r["finished"] else "no seed finished")
                     for arm, r in high.iterrows()]
            text = (f"saturated outputs (in the flat tails, per unit and image): {and_list(parts)} (at "
                    f"initialisation → after training)")
            text += f"; below {FEW:.1%} throughout for {and_list(low.index.tolist())}." if len(low) else "."
            out.append(sentence(where, text))
        elif len(low):
            who = "every arm" if len(low) == len(rows) else and_list(low.index.tolist())
            out.append(sentence(where, f"no saturated outputs: below {FEW:.1%} of (unit, image) pairs at "
                                       f"initialisation and after training for {who}."))
    return out


def divergence_findings(study: Study) -> list:
    from experiments.runs.training import DIVERGENCE_FACTOR  # the loop's rule, loaded only where it is stated

    runs = pd.concat([study.tune, study.final]).drop_duplicates("key")
    bad = runs[runs["status"] == "diverged"]
    if not len(bad):
        return [f"No run diverged ({len(runs)} runs)."]
    arms = bad.groupby(["group", "arm"], sort=False).size()
    final = study.final[study.final["status"] == "diverged"]
    text = (f"{len(bad)} of {len(runs)} runs diverged (loss NaN/inf or above {DIVERGENCE_FACTOR:g}× its value at "
            "initialisation: stopped, kept as `diverged`, never chosen), "
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
    from experiments.report.study import arm_summary, clipping, comparisons, diagnostics, tuning_edges

    summary = arm_summary(study)
    if not len(summary):
        return ["No run of the final seeds has finished yet."]
    table = comparisons(study)
    return (baseline_findings(study, summary, table) + ranking_findings(study, summary, table) +
            coincide_findings(curve_differences(study)) + diagnostic_findings(study, diagnostics(study)) +
            time_findings(study) + clipping_findings(study, clipping(study)) +
            tuning_findings(study, tuning_edges(study)) + divergence_findings(study))


def time_findings(study: Study) -> list:
    """The gradient over time of the recurrent arms shown inside (``inside.GRADIENT_TABLE``), when measured."""
    from experiments.report.inside import GRADIENT_TABLE, first_to_last

    path = study.folder / GRADIENT_TABLE
    if not path.exists():
        return []
    ratios = first_to_last(pd.read_csv(path))
    parts = [f"{arm} {row['initialisation']:.1e} → {row['trained']:.2g}" for arm, row in ratios.iterrows()]
    return [f"Over time steps (recurrent layers, one run per arm): the gradient reaching the first step, "
            f"‖∂E/∂h_1‖ / ‖∂E/∂h_T‖ at initialisation → after training: {and_list(parts)}."]


def environment_table(study: Study) -> str:
    env = study.tables.environment
    devices = ", ".join(sorted(study.tables.runs["device"].astype(str).unique())) if len(study.tables.runs) else "–"
    rows = [[r["name"], r["value"]] for _, r in env.iterrows()] + [["device(s) recorded by the runs", devices]]
    return md_table(["", ""], rows)


def inactive_text(diag: pd.DataFrame) -> str:
    """What the per-layer table measures: the gradient rule (with the ranges this study shows) and which
    measure of inactive units applies to each of its activations."""
    from experiments.runs.training import PROBE_SIZE  # the loop's probe batch, loaded only where it is stated

    tail = 1 - SATURATION_MARGIN  # where the flat tails start; f' there as a fraction of its peak (tanh' 1, σ' 1/4):
    tanh_slope, sigmoid_slope = 1 - tail ** 2, tail * SATURATION_MARGIN / 0.25
    text = (f"Measured on a fixed probe batch (the first {PROBE_SIZE:,} validation images), mean over the final "
            "seeds. "
            "‖∂E/∂W₁‖: the first layer's weight-gradient norm; ‖∂E/∂W_out‖: the output layer's; largest layer: the "
            "largest weight-gradient norm of any layer. Gradients at initialisation are called **vanishing** when "
            f"the first/output-layer ratio is below {VANISHING:g}, and **exploding** when it is above "
            f"{EXPLODING_RATIO:g} (the gradient grows towards the input) or when some layer's norm exceeds "
            f"{EXPLODING_NORM:g}.")
    if len(diag):
        rest = diag[diag.apply(gradient_state, axis=1) == ""]
        if len(rest):
            text += (f" Here the arms with neither have ratios from {rest['grad_ratio_init'].min():.2g} to "
                     f"{rest['grad_ratio_init'].max():.2g} and layer norms up to {rest['grad_max_init'].max():.2g}.")
    text += (" *Inactive* units, in the one sense that applies to each activation: **dead** where f' is exactly 0 "
             "on an interval of z (ReLU: z < 0): f'(z) = 0 on every probe image, so the unit never learns again; "
             "**saturated** where the activation has flat tails (sigmoid, tanh; Glorot & Bengio 2010): the "
             f"fraction of (unit, image) pairs whose output lies in a flat tail (|tanh| > {tail:g}, σ within "
             f"{SATURATION_MARGIN:g} of 0 or 1), where f' is under ~{tanh_slope:.0%} (tanh) or {sigmoid_slope:.0%} "
             "(σ) of its peak; **neither** where f' > 0 everywhere "
             "(leaky ReLU, ELU, softplus, identity) or is 0 only at isolated points (GELU, Swish): no unit can be "
             "dead, and no flat tails are measured. Fractions are means over the hidden layers.")
    if len(diag) and diag["activation"].notna().any():
        kinds = diag.assign(kind=diag["inactive"].fillna("neither"))
        parts = [f"{kind} for {and_list(sorted(rows['activation'].dropna().unique()))}"
                 for kind, rows in kinds.groupby("kind", sort=False)]
        text += f" In this study: {'; '.join(parts)}."
        unknown = sorted(a for a in diag["activation"].dropna().unique() if registered(a) is None)
        if unknown:
            text += (f" ({and_list(unknown)}: a plug-in not loaded by the report, which runs no plug-in code, so its "
                     f"f' is not examined; judged from its runs: dead if some unit was recorded dead, saturated if "
                     f"saturation was recorded, else neither.)")
    return text


# --------------------------------------------------------------------------- the overview's key findings
MANY_GROUPS = 4  # a study with more groups than this is summarised across its groups in the overview


def gain_text(study: Study, row, table: pd.DataFrame, base) -> str:
    """``sigmoid, 8 hidden, xavier: none 10.58% → 91.15% with batch norm (+80.57 points, p_Holm = 0.00012)``."""
    pair = pair_row(table, row["group"], row["arm"], base["arm"])
    diff = pair["mean_diff"] if pair["arm_a"] == row["arm"] else -pair["mean_diff"]
    return (f"{row['group']}: {base['arm']} {mean_text(base)} → {mean_text(row)} with {row['arm']} "
            f"({diff:+.2f} points, p_Holm = {pair['p_holm']:.2g})")


def summary_across_groups(study: Study, summary: pd.DataFrame, table: pd.DataFrame, top: int = 3) -> list:
    """The findings of a study with many groups, in a few lines: how often each arm is its group's best, how many
    groups separate their best arm from the baseline (and the largest such gains), vanishing and exploding gradients
    at initialisation counted over the arms, and divergence."""
    out = []
    best = {}
    for group in study.groups:
        rows = with_means(summary[(summary["group"] == group) & (summary["ok"] > 0)])
        if len(rows):
            best[group] = rows.iloc[0]
    counts = pd.Series([r["arm"] for r in best.values()]).value_counts()
    out.append(f"The best {study.compare} of a group (highest mean test accuracy), over the {len(study.groups)} "
               f"groups: {and_list([f'{arm} in {n}' for arm, n in counts.items()])}.")
    base = study.baseline
    if base:
        gains = []
        for group, row in best.items():
            mine = summary[(summary["group"] == group) & (summary["arm"] == base)]
            if row["arm"] == base or not len(mine):
                continue
            pair = pair_row(table, group, row["arm"], base)
            if pair is not None and pair["n"] >= 2 and pair["p_holm"] < SEPARABLE:
                diff = pair["mean_diff"] if pair["arm_a"] == row["arm"] else -pair["mean_diff"]
                gains.append((diff, row, mine.iloc[0]))
        gains.sort(key=lambda g: -g[0])
        text = (f"Against the baseline, {base}: the group's best {study.compare} is separable from it (paired, "
                f"p_Holm < {SEPARABLE:g}) in {len(gains)} of the {len(study.groups)} groups")
        if gains:
            text += "; the largest gains: " + "; ".join(gain_text(study, row, table, b) for _, row, b in gains[:top])
        out.append(text + ".")
    diag_states, diag = [], diagnostics(study)
    if len(diag):
        state = diag.apply(gradient_state, axis=1)
        for name in ("vanishing", "exploding"):
            rows = diag[state == name]
            if len(rows):
                groups = list(dict.fromkeys(rows["group"]))
                diag_states.append(f"{name} in {plural(len(rows), 'arm')} of {plural(len(groups), 'group')}")
        if diag_states:
            out.append(f"Gradients at initialisation (vanishing: first/output-layer norm ratio below {VANISHING:g}; "
                       f"exploding: above {EXPLODING_RATIO:g}, or a layer norm above {EXPLODING_NORM:g}): "
                       f"{and_list(diag_states)}; the full report names each.")
    return out + divergence_findings(study)


def key_findings(study: Study) -> list:
    """What the overview (``results/REPORT.md``) says of a study: its findings when it has a few groups; a summary
    across the groups when it has many (the full report has every group)."""
    from experiments.report.study import arm_summary, comparisons

    if len(study.groups) <= MANY_GROUPS:
        return findings(study)
    summary = arm_summary(study)
    if not len(summary):
        return ["No run of the final seeds has finished yet."]
    return summary_across_groups(study, summary, comparisons(study))
