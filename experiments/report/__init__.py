"""``python -m experiments report``: every plot and REPORT.md, rebuilt from the CSV files alone.

A study folder (one with ``plan.csv``, see ``experiments.store``) gets PNG plots
and a ``REPORT.md`` whose tables and findings are computed from its CSV files —
no number in the text is written by hand. ``results/REPORT.md`` gathers the
headline findings of every study and the gradient check, with links.

Accuracy plots use a log scale of the error (1 − accuracy), labelled in
accuracy, so that 97% against 98% stays visible next to a 10% run.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments import store as results_store
from experiments.files import write_atomically
from experiments.stats import mean_ci
from experiments.runs.training import RunConfig

NOUNS = {"activations": "activation", "optimizers": "optimizer", "backends": "backend"}
TITLES = {"activations": "Activation functions", "optimizers": "Optimizers",
          "backends": "The two backends side by side"}
CONFIG_COLUMNS = [f.name for f in dataclasses.fields(RunConfig)]
ACC_TICKS = (0.1, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
MIN_ERROR = 1e-3  # the top of the accuracy axes: 99.9%
DIVERGED_ERROR = 1.2  # where the accuracy axes draw diverged runs, on a row of their own below 0%
SATURATING = ("sigmoid", "tanh")  # activations whose saturation the findings quote
CURVE_METRICS = ("train_loss", "val_loss", "val_acc")
UNSET = {"train_subset": "all (50,000)", "weight_decay": "the optimizer's default",
         "clip_grad_norm": "no clipping", "clip_grad_value": "no clipping"}  # how an empty CSV cell reads


class ReportError(RuntimeError):
    """A folder that holds no study."""


@dataclass
class Study:
    """A study folder's tables, with the plan joined to the finished runs."""

    folder: Path
    name: str
    tables: results_store.Tables
    tune: pd.DataFrame  # phase "tune": seed 0 at each lr of the grid
    final: pd.DataFrame  # phase "seeds": every seed at the chosen lr
    groups: list
    arms: list  # every arm name, in the plan's order

    def arms_of(self, group: str) -> list:
        names = self.tables.plan.loc[self.tables.plan["group"] == group, "arm"]
        return list(pd.unique(names))

    def color(self, arm: str):
        return f"C{self.arms.index(arm) % 10}"


def open_study(folder: Path | str) -> Study:
    folder = Path(folder)
    tables = results_store.load(folder)
    if not len(tables.plan):
        raise ReportError(f"{folder} holds no plan.csv: it is not a study folder (run a study command first)")
    merged = tables.plan.merge(tables.runs, on="key", how="inner") if len(tables.runs) else tables.plan.iloc[:0]
    return Study(folder=folder, name=str(tables.plan["study"].iloc[0]), tables=tables,
                 tune=merged[merged["phase"] == "tune"].reset_index(drop=True),
                 final=merged[merged["phase"] == "seeds"].reset_index(drop=True),
                 groups=list(pd.unique(tables.plan["group"])), arms=list(pd.unique(tables.plan["arm"])))


# --------------------------------------------------------------------------- numbers
def arm_summary(study: Study) -> pd.DataFrame:
    """One row per (group, arm) of the seeds phase: chosen lr, runs, test accuracy mean ± 95% CI, ..."""
    rows = []
    for (group, arm), runs in study.final.groupby(["group", "arm"], sort=False):
        ok = runs[runs["status"] == "ok"]
        rows.append({"group": group, "arm": arm, "lr": runs["lr"].iloc[0], "runs": len(runs), "ok": len(ok),
                     "test": mean_ci(ok["test_acc"]), "val": mean_ci(ok["final_val_acc"]),
                     "train_loss": mean_ci(ok["final_train_loss"]), "time": runs["wall_time_s"].mean()})
    return pd.DataFrame(rows)


def curves(study: Study, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` per epoch: one row per run (indexed by key), one column per epoch."""
    epochs = study.tables.epochs
    return epochs[epochs["key"].isin(runs["key"])].pivot(index="key", columns="epoch", values=metric)


def is_hidden(layers: pd.DataFrame) -> pd.Series:
    """Which rows of a ``layers.csv`` table are hidden layers: all but each run's last (the output layer)."""
    return layers["layer"] < layers.groupby("key")["layer"].transform("max")


def layer_means(study: Study, epoch: str) -> pd.DataFrame:
    """Per-layer diagnostics at initialisation (``epoch="init"``) or at each ok run's last epoch (``"end"``),
    averaged over the seeds of each (group, arm); ``hidden`` marks the hidden layers."""
    runs = study.final
    if epoch == "end":
        runs = runs[runs["status"] == "ok"]
    layers = study.tables.layers.merge(runs[["key", "group", "arm", "epochs_done"]], on="key")
    at = layers["epochs_done"] if epoch == "end" else 0
    layers = layers[layers["epoch"] == at].copy()
    layers["hidden"] = is_hidden(layers)
    stats = ["grad_norm", "dead_frac", "saturated_frac", "act_mean", "act_std"]
    return layers.groupby(["group", "arm", "layer", "hidden"], sort=False)[stats].mean().reset_index()


def diagnostics(study: Study) -> pd.DataFrame:
    """One row per (group, arm): first- and last-layer gradient norms, dead and saturated hidden fractions."""
    rows = []
    start, end = layer_means(study, "init"), layer_means(study, "end")
    for (group, arm), init in start.groupby(["group", "arm"], sort=False):
        last = end[(end["group"] == group) & (end["arm"] == arm)]
        row = {"group": group, "arm": arm, "layers": len(init)}
        for when, df in (("init", init), ("end", last)):
            hidden = df[df["hidden"]]
            row[f"grad_first_{when}"] = df["grad_norm"].iloc[0] if len(df) else math.nan
            row[f"grad_last_{when}"] = df["grad_norm"].iloc[-1] if len(df) else math.nan
            row[f"dead_{when}"] = hidden["dead_frac"].mean()
            row[f"dead_max_{when}"] = hidden["dead_frac"].max()
            row[f"dead_max_layer_{when}"] = int(hidden.loc[hidden["dead_frac"].idxmax(), "layer"]) + 1 \
                if len(hidden) else 0
            row[f"saturated_{when}"] = hidden["saturated_frac"].mean()
        rows.append(row)
    df = pd.DataFrame(rows)
    for when in ("init", "end"):
        df[f"grad_ratio_{when}"] = df[f"grad_first_{when}"] / df[f"grad_last_{when}"]
    return df


# --------------------------------------------------------------------------- plots
def accuracy_axis(ax, label: str, best) -> None:
    """A y axis of accuracy drawn as log(1 − accuracy), from a little above ``best`` at the top down to a
    little below the worst point already drawn on ``ax`` (0% and the "diverged" row only when needed)."""
    ax.set_yscale("log")
    best = np.nanmax(np.append(np.asarray(best, dtype=float), 0.9))
    top = max(MIN_ERROR, (1 - best) / 2)
    worst = ax.dataLim.ymax if np.isfinite(ax.dataLim.ymax) else DIVERGED_ERROR
    bottom = 1.35 if worst > 0.5 else max(2 * worst, 0.05)  # bottom > top: best at the top
    ax.set_ylim(bottom, top)
    ticks = [a for a in ACC_TICKS if top <= 1 - a <= bottom]
    diverged = [DIVERGED_ERROR] if bottom > DIVERGED_ERROR else []
    ax.set_yticks(diverged + [1 - a for a in ticks], ["diverged"] * len(diverged) + [f"{a:.1%}" for a in ticks])
    ax.minorticks_off()
    ax.set_ylabel(f"{label}\n(log scale of the error)")


def error_of(acc) -> np.ndarray:
    """1 − accuracy, clipped to the accuracy axes' range."""
    return np.clip(1 - np.asarray(acc, dtype=float), MIN_ERROR, 1.0)


def run_errors(runs: pd.DataFrame, metric: str) -> np.ndarray:
    """Each run's 1 − ``metric`` for the accuracy axes, diverged runs on their own row."""
    return np.where(runs["status"] == "ok", error_of(runs[metric]), DIVERGED_ERROR)


def epoch_axis(ax, label: str = "epoch") -> None:
    ax.set_xlabel(label)
    ax.xaxis.get_major_locator().set_params(integer=True)


def band(ax, table: pd.DataFrame, color, label: str, transform=lambda v: v, clip=(0.0, np.inf)) -> float:
    """Mean over the rows (seeds) of ``table`` per column, with its 95% CI (clipped to ``clip``) as a shaded
    band; returns the largest mean."""
    stats = [mean_ci(table[c].to_numpy(dtype=float)) for c in table.columns]
    x = np.asarray(table.columns, dtype=float)
    mean = np.array([s.mean for s in stats])
    half = np.nan_to_num(np.array([s.half_width for s in stats]))
    ax.plot(x, transform(mean), color=color, label=label, marker="o", ms=3)
    ax.fill_between(x, transform(np.clip(mean - half, *clip)), transform(np.clip(mean + half, *clip)), color=color,
                    alpha=0.2, lw=0)
    return float(np.nanmax(mean)) if np.isfinite(mean).any() else math.nan


def grid_figure(n_rows: int, n_cols: int, width: float = 6.0, height: float = 3.8):
    fig = Figure(figsize=(width * n_cols + 1.8, height * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def save(fig: Figure, study: Study, name: str, legend_ax=None) -> str:
    if legend_ax is not None:
        handles, labels = legend_ax.get_legend_handles_labels()
        by_label = dict(zip(labels, handles))
        fig.legend(by_label.values(), by_label.keys(), loc="outside right center", fontsize=9)
    write_atomically(study.folder / name, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return name


def plot_learning_curves(study: Study) -> str:
    fig, axes = grid_figure(2, len(study.groups))
    for col, group in enumerate(study.groups):
        top, bottom = axes[0, col], axes[1, col]
        best = []
        for arm in study.arms_of(group):
            runs = study.final[(study.final["group"] == group) & (study.final["arm"] == arm)]
            if not len(runs):
                continue
            band(top, curves(study, runs, "train_loss"), study.color(arm), arm, clip=(1e-4, np.inf))
            best.append(band(bottom, curves(study, runs, "val_acc"), study.color(arm), arm, transform=error_of,
                             clip=(0.0, 1.0)))
        top.set_yscale("log")
        top.set_title(group)
        top.set_ylabel("training loss (log)")
        accuracy_axis(bottom, "validation accuracy", best)
        for ax in (top, bottom):
            epoch_axis(ax)
            ax.grid(alpha=0.3)
    fig.suptitle("Learning curves at the chosen learning rate\nmean over seeds, band = 95% CI")
    return save(fig, study, "learning_curves.png", axes[0, 0])


def plot_test_accuracy(study: Study, summary: pd.DataFrame) -> str:
    fig, axes = grid_figure(1, len(study.groups), height=4.2)
    for col, group in enumerate(study.groups):
        ax = axes[0, col]
        rows = summary[summary["group"] == group].reset_index(drop=True)
        for i, row in rows.iterrows():
            color = study.color(row["arm"])
            seeds = study.final[(study.final["group"] == group) & (study.final["arm"] == row["arm"])]
            ax.scatter(np.full(len(seeds), i), run_errors(seeds, "test_acc"), color=color, s=12, alpha=0.5)
            if row["test"].n:
                half = np.nan_to_num(row["test"].half_width)
                lo, hi = max(row["test"].mean - half, 0.0), min(row["test"].mean + half, 1.0)
                err = error_of(row["test"].mean)
                ax.errorbar([i], [err], yerr=[[err - error_of(hi)], [error_of(lo) - err]], color=color,
                            marker="D", ms=6, capsize=5, lw=2)
                ax.annotate(f"{row['test'].mean:.2%}", (i, err), xytext=(7, 0), textcoords="offset points",
                            fontsize=8, va="center")
        ax.set_xticks(range(len(rows)), rows["arm"], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(rows) - 0.2)
        accuracy_axis(ax, "test accuracy", [c.mean for c in rows["test"]])  # a wider CI runs off the top
        ax.set_title(group)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Final test accuracy: mean ± 95% CI (t over seeds)\ndots = single seeds")
    return save(fig, study, "test_accuracy.png")


def plot_grad_norms(study: Study) -> str:
    fig, axes = grid_figure(2, len(study.groups))
    for row, when in enumerate(("init", "end")):
        layers = layer_means(study, when)
        for col, group in enumerate(study.groups):
            ax = axes[row, col]
            for arm in study.arms_of(group):
                df = layers[(layers["group"] == group) & (layers["arm"] == arm)]
                ax.plot(df["layer"] + 1, df["grad_norm"], marker="o", ms=3, color=study.color(arm), label=arm)
            ax.set_yscale("log")
            ax.set_xlabel("layer (1 = first, last = output)")
            ax.set_ylabel("‖∂E/∂W‖ (log)")
            ax.set_title(f"{group}: {'at initialisation' if when == 'init' else 'after training'}")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
    fig.suptitle("Weight-gradient norm per layer on a fixed probe batch\n(mean over seeds)")
    return save(fig, study, "grad_norms.png", axes[0, 0])


def plot_dead_saturated(study: Study) -> str:
    fig, axes = grid_figure(2, len(study.groups))
    layers = study.tables.layers.merge(study.final[["key", "group", "arm"]], on="key")
    layers = layers[is_hidden(layers)]
    per_run = layers.groupby(["group", "arm", "key", "epoch"], sort=False)[["dead_frac", "saturated_frac"]].mean()
    per_run = per_run.reset_index()
    for row, (metric, label) in enumerate((("dead_frac", "dead units"), ("saturated_frac", "saturated units"))):
        for col, group in enumerate(study.groups):
            ax = axes[row, col]
            for arm in study.arms_of(group):
                df = per_run[(per_run["group"] == group) & (per_run["arm"] == arm)]
                if len(df):
                    band(ax, df.pivot(index="key", columns="epoch", values=metric), study.color(arm), arm,
                         clip=(0.0, 1.0))
            ax.set_ylabel(f"{label}\n(fraction of hidden units)")
            epoch_axis(ax, "epoch (0 = initialisation)")
            ax.set_title(group)
            ax.set_ylim(-0.01, min(1.02, max(0.05, ax.get_ylim()[1])))
            ax.grid(alpha=0.3)
    fig.suptitle("Dead units (f' = 0 on every probe image) and saturated units (|f'| < 1% of its peak on every\n"
                 "probe image): mean over hidden layers and seeds, band = 95% CI")
    return save(fig, study, "dead_saturated.png", axes[0, 0])


def plot_lr_sensitivity(study: Study, summary: pd.DataFrame) -> str:
    fig, axes = grid_figure(1, len(study.groups), height=4.2)
    for col, group in enumerate(study.groups):
        ax = axes[0, col]
        for arm in study.arms_of(group):
            runs = study.tune[(study.tune["group"] == group) & (study.tune["arm"] == arm)].sort_values("lr")
            color = study.color(arm)
            ax.plot(runs["lr"], error_of(runs["final_val_acc"]), color=color, marker="o", ms=4, label=arm)
            bad = runs[runs["status"] != "ok"]
            ax.scatter(bad["lr"], run_errors(bad, "final_val_acc"), color=color, marker="x", s=60, zorder=3)
            chosen = summary[(summary["group"] == group) & (summary["arm"] == arm)]["lr"]
            if len(chosen):
                best = runs[runs["lr"] == chosen.iloc[0]]
                ax.scatter(best["lr"], error_of(best["final_val_acc"]), s=120, facecolors="none",
                           edgecolors=color, lw=1.5, zorder=3)
        ax.set_xscale("log")
        lrs = sorted(study.tune.loc[study.tune["group"] == group, "lr"].unique())
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.minorticks_off()
        ax.set_xlabel("learning rate (log)")
        accuracy_axis(ax, "validation accuracy, seed 0", study.tune.loc[study.tune["group"] == group,
                                                                          "final_val_acc"])
        ax.set_title(group)
        ax.grid(alpha=0.3)
    fig.suptitle("Learning-rate sensitivity: final validation accuracy\nof seed 0 per rate (ring = chosen, × = diverged)")
    return save(fig, study, "lr_sensitivity.png", axes[0, 0])


def plot_backends(study: Study) -> str:
    fig, axes = grid_figure(2, 2, width=5.0, height=3.6)
    axes = axes.reshape(1, 4)
    runs = study.final.sort_values("arm")
    styles = {"manual": dict(ls="-", marker="o", ms=7, mfc="none"), "torch": dict(ls="--", marker="x", ms=6)}
    for ax, metric in zip(axes[0], CURVE_METRICS):
        for _, run in runs.iterrows():
            values = curves(study, runs[runs["key"] == run["key"]], metric).iloc[0]
            ax.plot(values.index, values.to_numpy(), color=study.color(run["arm"]),
                    label=f"{run['arm']} (seed {run['seed']})", **styles.get(run["arm"], {}))
        ax.set_title(metric.replace("_", " "))
        epoch_axis(ax)
        ax.grid(alpha=0.3)
    ax = axes[0, 3]
    for (metric, diff), (marker, size) in zip(curve_differences(study).items(), [("o", 9), ("s", 6), ("D", 4)]):
        ax.plot(diff.index, np.maximum(diff.to_numpy(), 1e-18), marker=marker, ms=size, mfc="none", color="0.3",
                ls=":", label=f"|Δ| {metric}")
    ax.set_yscale("log")
    ax.set_ylim(1e-19, 1e-3)
    ax.set_title("|manual − torch| (0 drawn at 1e-18)")
    epoch_axis(ax)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle("Same seed, same batches, float64:\nthe hand-written and the PyTorch backend")
    return save(fig, study, "backends.png", axes[0, 0])


def curve_differences(study: Study) -> dict:
    """metric → |manual − torch| per epoch, for the seeds both backends finished (max over seeds)."""
    runs = study.final
    out = {}
    for metric in CURVE_METRICS:
        pairs = []
        for seed, seed_runs in runs.groupby("seed"):
            by_arm = {arm: curves(study, r, metric).iloc[0] for arm, r in seed_runs.groupby("arm")}
            if {"manual", "torch"} <= by_arm.keys():
                pairs.append((by_arm["manual"] - by_arm["torch"]).abs())
        if pairs:
            out[metric] = pd.concat(pairs, axis=1).max(axis=1)
    return out


# --------------------------------------------------------------------------- text
def md_table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(ci) -> str:
    """A MeanCI of an accuracy in percent: ``97.12% ± 0.15%``."""
    return ci.format(".2%")


def setup_text(study: Study) -> str:
    """The config columns shared by all runs, and those that vary."""
    runs = study.tables.runs[study.tables.runs["key"].isin(study.tables.plan["key"])]
    shared, varying = [], []
    for column in CONFIG_COLUMNS:
        if column not in runs:  # a field added after these runs were recorded: they ran at its default ("off")
            continue
        values = [UNSET.get(column, "–") if pd.isna(v) else str(v) for v in pd.unique(runs[column])]
        if len(values) == 1:
            shared.append(f"`{column}` = {values[0]}")
        else:
            varying.append(f"`{column}` ∈ {{{', '.join(values)}}}")
    lines = ["Shared by every run: " + ", ".join(shared) + "."]
    if varying:
        lines.append("Varying: " + "; ".join(varying) + ".")
    seeds = sorted(study.final["seed"].unique()) if len(study.final) else []
    if study.name != "backends":
        lines.append(f"Procedure: each {NOUNS[study.name]}'s learning rate is chosen on the validation split "
                     f"(best final validation accuracy of seed 0 over its grid; diverged runs never win), then "
                     f"seeds {', '.join(map(str, seeds))} are trained at that rate. Test accuracy is reported, "
                     f"never used for a choice. Validation: the last 10,000 training images; test: the 10,000 "
                     f"test images.")
    return "\n\n".join(lines)


def ranking_findings(study: Study, summary: pd.DataFrame) -> list:
    noun = NOUNS[study.name]
    out = []
    for group in study.groups:
        rows = summary[(summary["group"] == group) & (summary["ok"] > 0)]
        rows = rows.assign(mean=[c.mean for c in rows["test"]]).sort_values("mean", ascending=False)
        if not len(rows):
            continue
        best, worst = rows.iloc[0], rows.iloc[-1]
        text = (f"**{group}**: the best {noun} is **{best['arm']}** with test accuracy {pct(best['test'])} "
                f"(95% CI over {best['ok']} seeds, lr {best['lr']:g})")
        if len(rows) > 1:
            second = rows.iloc[1]
            overlap = best["test"].mean - np.nan_to_num(best["test"].half_width) <= \
                second["test"].mean + np.nan_to_num(second["test"].half_width)
            text += (f"; the runner-up {second['arm']} reaches {pct(second['test'])}, "
                     f"{'an overlapping interval: not separable with these seeds' if overlap else 'a disjoint interval'}"
                     f"; the worst is {worst['arm']} with {pct(worst['test'])}")
        out.append(text + ".")
    return out


def diagnostic_findings(study: Study, diag: pd.DataFrame) -> list:
    """Vanishing gradients (first- vs output-layer gradient norm), dead units and saturation, per group."""
    out = []
    for group in study.groups:
        rows = diag[diag["group"] == group].set_index("arm")
        if not len(rows):
            continue
        where = f"**{group}**"
        low = rows["grad_ratio_init"].idxmin()
        vanish = "sigmoid" if "sigmoid" in rows.index else low
        r = rows.loc[vanish]
        if r["grad_ratio_init"] < 0.1:
            text = (f"{where}, vanishing gradients: with {vanish} the first layer's weight-gradient norm is "
                    f"{r['grad_first_init']:.2e} at initialisation against {r['grad_last_init']:.2e} for the "
                    f"output layer (ratio {r['grad_ratio_init']:.1e}); after training the ratio is "
                    f"{r['grad_ratio_end']:.1e}")
            others = rows.drop(index=vanish)
            if len(others):
                high = others["grad_ratio_init"].idxmax()
                text += f" (for comparison, {high}: {others.loc[high, 'grad_ratio_init']:.2g} at initialisation)"
            out.append(text + ".")
        elif np.isclose(rows["grad_ratio_init"].min(), rows["grad_ratio_init"].max()):
            out.append(f"{where}: no vanishing gradients — at initialisation (the same network for every arm) the "
                       f"first layer's weight-gradient norm is {r['grad_ratio_init']:.2g}× the output layer's; "
                       f"after training this ratio ranges from {rows['grad_ratio_end'].min():.2g} "
                       f"({rows['grad_ratio_end'].idxmin()}) to {rows['grad_ratio_end'].max():.2g} "
                       f"({rows['grad_ratio_end'].idxmax()}).")
        else:
            out.append(f"{where}: no vanishing gradients at initialisation — the first/output-layer gradient-norm "
                       f"ratio ranges from {rows['grad_ratio_init'].min():.2g} ({low}) to "
                       f"{rows['grad_ratio_init'].max():.2g} ({rows['grad_ratio_init'].idxmax()}).")
        dead = rows.dropna(subset=["dead_end"])
        if len(dead) and dead["dead_end"].max() > 0:
            most = "relu" if "relu" in dead.index else dead["dead_end"].idxmax()
            r = dead.loc[most]
            text = (f"{where}, dead units: with {most}, {r['dead_end']:.1%} of the hidden units are dead after "
                    f"training (mean over hidden layers; {r['dead_init']:.1%} at initialisation), the most "
                    f"{r['dead_max_end']:.1%} in layer {int(r['dead_max_layer_end'])}")
            if most != dead["dead_end"].idxmin():
                text += f"; the fewest: {dead['dead_end'].idxmin()} with {dead['dead_end'].min():.1%}"
            out.append(text + ".")
        saturating = [a for a in SATURATING if a in rows.index]
        if saturating:
            parts = [f"{a} {rows.loc[a, 'saturated_init']:.1%} at initialisation and {rows.loc[a, 'saturated_end']:.1%} "
                     f"after training" for a in saturating]
            out.append(f"{where}, saturated units (|f'| < 1% of its peak on every probe image, mean over hidden "
                       f"layers): " + "; ".join(parts) + ".")
    return out


def divergence_findings(study: Study) -> list:
    runs = pd.concat([study.tune, study.final]).drop_duplicates("key")
    bad = runs[runs["status"] == "diverged"]
    if not len(bad):
        return [f"No run diverged ({len(runs)} runs)."]
    listed = ", ".join(f"{r['arm']} ({r['group']}) lr {r['lr']:g} seed {r['seed']}" for _, r in bad.iterrows())
    return [f"{len(bad)} of {len(runs)} runs diverged (loss NaN/inf, stopped and kept as `diverged`): {listed}."]


def backend_findings(study: Study) -> list:
    diffs = curve_differences(study)
    if not diffs:
        return ["Not both backends have finished a run with the same seed yet."]
    worst = max(float(d.max()) for d in diffs.values())
    parts = ", ".join(f"{metric} {float(d.max()):.1e}" for metric, d in diffs.items())
    verdict = "the curves coincide" if worst < 1e-6 else "the curves differ"
    tests = {r["arm"]: r["test_acc"] for _, r in study.final.iterrows() if r["seed"] == study.final["seed"].min()}
    test_text = ", ".join(f"{arm} {acc:.4%}" for arm, acc in tests.items())
    return [f"Largest |manual − torch| over all epochs: {parts}: {verdict} (float64 rounding is ~1e-16 "
            f"per operation). Test accuracy: {test_text}."]


def findings(study: Study) -> list:
    if study.name == "backends":
        return backend_findings(study)
    summary = arm_summary(study)
    if not len(summary):
        return ["No run of the seeds phase has finished yet."]
    return ranking_findings(study, summary) + diagnostic_findings(study, diagnostics(study)) + \
        divergence_findings(study)


def summary_table(study: Study, summary: pd.DataFrame) -> str:
    noun = NOUNS[study.name]
    rows = [[r["group"], r["arm"], f"{r['lr']:g}", f"{r['ok']}/{r['runs']}", pct(r["test"]), pct(r["val"]),
             f"{r['train_loss'].mean:.4f}" if r["train_loss"].n else "–", f"{r['time']:.1f}"]
            for _, r in summary.iterrows()]
    return md_table(["network" if study.name == "activations" else "setup", noun, "chosen lr", "ok runs",
                     "test accuracy (95% CI)", "val accuracy", "final train loss", "s / run"], rows)


def tuning_table(study: Study, summary: pd.DataFrame) -> str:
    lrs = sorted(study.tune["lr"].unique())
    chosen = {(r["group"], r["arm"]): r["lr"] for _, r in summary.iterrows()}
    rows = []
    for group in study.groups:
        for arm in study.arms_of(group):
            runs = study.tune[(study.tune["group"] == group) & (study.tune["arm"] == arm)].set_index("lr")
            cells = []
            for lr in lrs:
                if lr not in runs.index:
                    cells.append("")
                    continue
                r = runs.loc[lr]
                cell = "diverged" if r["status"] != "ok" else f"{r['final_val_acc']:.2%}"
                cells.append(f"**{cell}**" if chosen.get((group, arm)) == lr else cell)
            rows.append([group, arm] + cells)
    return md_table(["network" if study.name == "activations" else "setup", NOUNS[study.name]] +
                    [f"lr {lr:g}" for lr in lrs], rows)


def diagnostics_table(diag: pd.DataFrame) -> str:
    rows = [[r["group"], r["arm"], f"{r['grad_first_init']:.2e}", f"{r['grad_last_init']:.2e}",
             f"{r['grad_ratio_init']:.1e}", f"{r['grad_ratio_end']:.1e}", f"{r['dead_init']:.1%}",
             f"{r['dead_end']:.1%}", f"{r['saturated_init']:.1%}", f"{r['saturated_end']:.1%}"]
            for _, r in diag.iterrows()]
    return md_table(["network", "arm", "‖∂E/∂W₁‖ init", "‖∂E/∂W_out‖ init", "first/last init",
                     "first/last end", "dead init", "dead end", "saturated init", "saturated end"], rows)


def backends_table(study: Study) -> str:
    seed = study.final["seed"].min()
    runs = study.final[study.final["seed"] == seed]
    values = {arm: {m: curves(study, r, m).iloc[0] for m in CURVE_METRICS} for arm, r in runs.groupby("arm")}
    if not {"manual", "torch"} <= values.keys():
        return ""
    rows = []
    for epoch in values["manual"]["train_loss"].index:
        row = [epoch]
        for metric in CURVE_METRICS:
            a, b = values["manual"][metric].get(epoch), values["torch"][metric].get(epoch)
            row += [f"{a:.12g}", f"{b:.12g}", f"{abs(a - b):.1e}"]
        rows.append(row)
    header = ["epoch"] + [f"{m} {side}" for m in CURVE_METRICS for side in ("manual", "torch", "abs diff")]
    return md_table(header, rows)


def environment_table(study: Study) -> str:
    env = study.tables.environment
    devices = ", ".join(sorted(study.tables.runs["device"].astype(str).unique())) if len(study.tables.runs) else "–"
    rows = [[r["name"], r["value"]] for _, r in env.iterrows()] + [["device(s) recorded by the runs", devices]]
    return md_table(["", ""], rows)


def write_study_report(folder: Path | str) -> Path:
    """Every plot of the study in ``folder`` and its REPORT.md; returns the report's path."""
    study = open_study(folder)
    title = TITLES.get(study.name, study.name)
    parts = [f"# {title}", f"Generated by `python -m experiments report` from the CSV files of this folder "
                           f"(`{study.folder}`); the numbers below are computed, not written by hand.",
             "## Setup", setup_text(study), "## Findings", "\n".join(f"- {f}" for f in findings(study))]
    if study.name == "backends":
        if len(study.final):
            parts += ["## Learning curves of both backends", f"![backends]({plot_backends(study)})",
                      backends_table(study)]
    elif len(study.final):
        summary, diag = arm_summary(study), diagnostics(study)
        parts += ["## Final test accuracy", summary_table(study, summary),
                  f"![test accuracy]({plot_test_accuracy(study, summary)})",
                  "## Learning curves", f"![learning curves]({plot_learning_curves(study)})",
                  "## Learning-rate tuning (validation accuracy of seed 0; bold = chosen)",
                  tuning_table(study, summary), f"![learning-rate sensitivity]({plot_lr_sensitivity(study, summary)})",
                  "## Gradients, dead and saturated units",
                  "Measured on a fixed probe batch (the first 1,000 validation images), mean over seeds. "
                  "‖∂E/∂W₁‖: the first layer's weight-gradient norm; ‖∂E/∂W_out‖: the output layer's; dead: "
                  "f'(z) = 0 on every probe image; saturated: |f'(z)| < 1% of the activation's largest slope on "
                  "every probe image; fractions are means over the hidden layers.",
                  diagnostics_table(diag), f"![gradient norms]({plot_grad_norms(study)})",
                  f"![dead and saturated units]({plot_dead_saturated(study)})"]
    parts += ["## Environment", environment_table(study),
              "## Files", "`runs.csv` (one row per run), `epochs.csv` (run × epoch), `layers.csv` (run × epoch × "
                          "layer; epoch 0 = initialisation), joined by `key`; `plan.csv` says which run is in "
                          "which phase; `environment.csv` where they ran."]
    return write_markdown(study.folder / "REPORT.md", parts)


def write_markdown(path: Path, parts: list) -> Path:
    """The parts, separated by blank lines, written through a temporary file."""
    return write_atomically(path, lambda tmp: tmp.write_text("\n\n".join(parts) + "\n"))


def gradcheck_summary(folder: Path) -> str | None:
    path = folder / "gradcheck.csv"
    if not path.exists():
        return None
    df = pd.read_csv(path)
    passed = df["passed"].astype(str).str.lower().isin(["true", "1"])
    return (f"{int(passed.sum())} of {len(df)} parameter tensors pass the gradient check; largest relative "
            f"error against autograd {df['max_rel_err_autograd'].max():.1e}, against finite differences "
            f"{df['max_rel_err_fd'].max():.1e} ([gradcheck.csv](gradcheck/gradcheck.csv)).")


def write_overview(root: Path | str, folders: list) -> Path:
    """``<root>/REPORT.md``: the gradient check and every study's findings, with links."""
    root = Path(root)
    parts = ["# Results", "Generated by `python -m experiments report` from the CSV files below this folder."]
    check = gradcheck_summary(root / "gradcheck")
    if check:
        parts += ["## Gradient check", check]
    for folder in folders:
        study = open_study(folder)
        link = os.path.relpath(study.folder / "REPORT.md", root)
        parts += [f"## {TITLES.get(study.name, study.name)}", f"Full report: [{link}]({link}).",
                  "\n".join(f"- {f}" for f in findings(study))]
    if folders:
        parts += ["## Environment", environment_table(open_study(folders[0]))]
    return write_markdown(root / "REPORT.md", parts)


def study_folders(root: Path) -> list:
    order = list(TITLES)
    found = [p.parent for p in Path(root).glob("*/plan.csv")]
    return sorted(found, key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name))


def run(args) -> int:
    root = Path(args.results)
    folders = study_folders(root)
    if not folders:
        print(f"no study folder (one with plan.csv) under {root}; run a study first, e.g. "
              f"`python -m experiments all --quick`")
        return 1
    for folder in folders:
        print(f"wrote {write_study_report(folder)}")
    print(f"wrote {write_overview(root, folders)}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="rebuild every plot and REPORT.md from the CSV files (no training)",
        description="Reads the CSV files of every study folder under --results (those holding plan.csv) and "
                    "writes their PNG plots (learning curves, test accuracy with 95% CIs, learning-rate "
                    "sensitivity, gradient norms per layer, dead and saturated units, the backends' curves) and "
                    "REPORT.md, then --results/REPORT.md with the headline findings of all studies. Trains "
                    "nothing.")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="folder holding the study folders (default: %(default)s)")
    p.set_defaults(run=run)
