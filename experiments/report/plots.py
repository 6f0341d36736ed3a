"""The plots of a study report: one panel per group, one colour and marker per arm.

Accuracy is in % everywhere. Accuracy axes use a log scale of the error (1 − accuracy) with ticks labelled
in accuracy, so that 97% against 98% stays visible next to a 10% run. Arms that coincide stay visible:
each arm has its own marker and a small horizontal offset within its group; dead and saturated units get
panels of their own, and arms that sit at 0% throughout are named in a note instead of being drawn on top
of each other. Differences that span orders of magnitude get a symmetric-log axis, so the small ones stay
readable next to the large ones.
"""
from __future__ import annotations

import math
import textwrap

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, SymmetricalLogLocator

from experiments.files import write_atomically
from experiments.report.study import CURVE_METRICS, Study, curves, is_hidden, layer_means
from experiments.stats import ALPHA, accuracy_ci, mean_ci

ACC_TICKS = (0.1, 0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999)
MIN_ERROR = 1e-3  # the top of the accuracy axes: 99.9%
DIVERGED_ERROR = 1.2  # where the accuracy axes draw diverged runs, on a row of their own below 0%


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


def style(study: Study, arm: str) -> dict:
    return {"color": study.color(arm), "marker": study.marker(arm), "label": arm}


def band(ax, table: pd.DataFrame, study: Study, group: str, arm: str, transform=lambda v: v,
         clip=(0.0, np.inf), interval=mean_ci) -> float:
    """Mean over the rows (seeds) of ``table`` per column, shifted by the arm's offset, with its 95%
    interval as a shaded band; returns the largest mean."""
    stats = [interval(table[c].to_numpy(dtype=float)) for c in table.columns]
    x = np.asarray(table.columns, dtype=float) + study.offset(group, arm)
    mean = np.array([s.mean for s in stats])
    low = np.where(np.isnan([s.low for s in stats]), mean, [s.low for s in stats])
    high = np.where(np.isnan([s.high for s in stats]), mean, [s.high for s in stats])
    ax.plot(x, transform(mean), ms=4, lw=1.2, **style(study, arm))
    ax.fill_between(x, transform(np.clip(low, *clip)), transform(np.clip(high, *clip)), color=study.color(arm),
                    alpha=0.15, lw=0)
    return float(np.nanmax(mean)) if np.isfinite(mean).any() else math.nan


DPI = 110  # every figure is written at this resolution
MAX_WIDTH_PX = 3000  # no figure is wider than this: a laptop screen shows it whole, without zooming
MAX_WIDTH = MAX_WIDTH_PX / DPI  # inches
LEGEND_WIDTH = 1.8  # inches on the right for the figure's legend
MAX_COLUMNS = 4  # at most this many panels side by side; more groups wrap onto further rows


class WrappedAxes:
    """``axes[row, col]`` of a figure whose ``n_cols`` logical columns (one per group) wrap after ``cols``
    columns: logical row r becomes a block of rows, and the unused places are hidden."""

    def __init__(self, axes, n_rows: int, n_cols: int, cols: int):
        self.axes, self.cols, self.blocks = axes, cols, -(-n_cols // cols)
        for r in range(n_rows):
            for c in range(n_cols, self.blocks * cols):
                self[r, c].set_visible(False)

    def __getitem__(self, index):
        row, col = index
        return self.axes[row * self.blocks + col // self.cols, col % self.cols]


def panel_columns(n_cols: int, wrap: int | None = None) -> int:
    """How many panels sit side by side: all of them up to ``MAX_COLUMNS``; beyond that ``wrap`` when given (the
    size of a study's last group axis, so that each column of panels holds one of its values), else
    ``MAX_COLUMNS``."""
    if n_cols <= MAX_COLUMNS:
        return max(n_cols, 1)
    return wrap if wrap and 1 < wrap <= MAX_COLUMNS else MAX_COLUMNS


def grid_figure(n_rows: int, n_cols: int, width: float = 6.0, height: float = 3.8, wrap: int | None = None):
    """A figure of ``n_rows`` × ``n_cols`` panels (a column per group), wrapped after ``panel_columns`` columns
    and never wider than ``MAX_WIDTH_PX`` (panels are narrowed to fit)."""
    cols = panel_columns(n_cols, wrap)
    blocks = -(-n_cols // cols)
    width = min(width, (MAX_WIDTH - LEGEND_WIDTH) / cols)
    fig = Figure(figsize=(width * cols + LEGEND_WIDTH, height * n_rows * blocks), layout="constrained")
    return fig, WrappedAxes(fig.subplots(n_rows * blocks, cols, squeeze=False), n_rows, n_cols, cols)


def study_wrap(study: Study, n_panels: int) -> int | None:
    """For a figure with a panel per group: the number of values of the study's last group axis, so that panels
    wrap into rows of that many (the depth study: a row per activation and depth, a column per init)."""
    axes = study.group_axes
    if n_panels != len(study.groups) or len(axes) < 2:
        return None
    labels = [study.group_labels(g) for g in study.groups]
    if not all(labels):
        return None
    return len(dict.fromkeys(label[axes[-1]] for label in labels))


def wrapped(fig: Figure, text: str, fontsize: float = 12) -> str:
    """``text`` with each of its lines wrapped to the figure's width (about 11 characters per inch at 12 pt),
    so that a title never runs past the edge of a one-panel figure."""
    width = max(40, int(fig.get_figwidth() * 11 * 12 / fontsize))
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def save(fig: Figure, study: Study, name: str, legend_ax=None) -> str:
    """Write the figure as ``name`` in the study's folder (titles wrapped to its width; one legend for all
    panels, from ``legend_ax``, on the right)."""
    if fig.get_suptitle():
        fig.suptitle(wrapped(fig, fig.get_suptitle()))
    if fig.get_supxlabel():
        fig.supxlabel(wrapped(fig, fig.get_supxlabel(), 9), fontsize=9)
    if legend_ax is not None:
        handles, labels = legend_ax.get_legend_handles_labels()
        by_label = dict(zip(labels, handles))
        fig.legend(by_label.values(), by_label.keys(), loc="outside right center", fontsize=9)
    write_atomically(study.folder / name, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return name


def plot_test_accuracy(study: Study, summary: pd.DataFrame) -> str:
    fig, axes = grid_figure(1, len(study.groups), height=4.2, wrap=study_wrap(study, len(study.groups)))
    for col, group in enumerate(study.groups):
        ax = axes[0, col]
        rows = summary[summary["group"] == group].reset_index(drop=True)
        for i, row in rows.iterrows():
            color, seeds = study.color(row["arm"]), study.runs_of(group, row["arm"])
            jitter = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else np.zeros(len(seeds))
            ax.scatter(i + jitter, run_errors(seeds, "test_acc"), color=color, s=14, alpha=0.6,
                       marker=study.marker(row["arm"]))
            ci = row["test"]
            # labels run upwards beside the arm's own diamond, so they never reach the next arm's dots
            label = dict(textcoords="offset points", fontsize=8, rotation=90, ha="left")
            if ci.n:
                err = error_of(ci.mean)
                low, high = (ci.low, ci.high) if ci.n > 1 else (ci.mean, ci.mean)
                ax.errorbar([i + 0.3], [err], yerr=[[err - error_of(high)], [error_of(low) - err]], color=color,
                            marker="D", ms=6, capsize=4, lw=2)
                flag = "*" if row["disagree"] else ""
                ax.annotate(f"{ci.mean:.2%}{flag}", (i + 0.3, err), xytext=(5, 0), va="center",
                            color="firebrick" if flag else "black", **label)
            elif len(seeds):
                ax.annotate("every seed diverged*", (i + 0.3, DIVERGED_ERROR), xytext=(-4, 6), va="bottom",
                            color="firebrick", **label)
        ax.set_xticks(range(len(rows)), rows["arm"], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(rows) + 0.2)
        accuracy_axis(ax, "test accuracy", [c.mean for c in rows["test"]])
        ax.set_title(group)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Final test accuracy: mean with 95% interval (t on the logit scale, inside [0, 100]%)\n"
                 "dots = single seeds (left), diamond = mean (right); * = seeds disagree wildly (> 5 points apart "
                 "or some diverged)")
    return save(fig, study, "test_accuracy.png")


def nice(value: float) -> float:
    """``value`` rounded down to 1, 2 or 5 times a power of ten."""
    power = 10 ** math.floor(math.log10(value))
    return max(m for m in (1, 2, 5) if m * power <= value) * power


def difference_axis(ax, bounds: np.ndarray) -> str:
    """A linear x axis for differences, or — when they span more than 20 times their median size — a symmetric
    log axis, linear within ±(that median, rounded), so that small intervals stay readable beside a huge
    one; returns a note saying which."""
    size = np.abs(bounds[np.isfinite(bounds)])
    if not len(size) or size.max() <= 20 * max(np.median(size), 1e-12) or size.max() < 1:
        return ""
    linear = nice(max(float(np.median(size)), 0.01))
    ax.set_xscale("symlog", linthresh=linear, linscale=1.0)
    ax.axvspan(-linear, linear, color="0.93", lw=0, zorder=0)
    ax.xaxis.set_major_locator(SymmetricalLogLocator(linthresh=linear, base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.tick_params(axis="x", labelsize=8)
    return f"symmetric log scale: linear within ±{linear:g} (shaded)"


def plot_comparisons(study: Study, table: pd.DataFrame) -> str | None:
    """Per group, every comparable pair's mean per-seed difference with its 95% interval (a forest plot);
    pairs without 2 seeds on which both finished are named in the panel instead."""
    groups = [g for g in study.groups if (table["group"] == g).any()]
    if not groups:
        return None
    most = max(int(((table["group"] == g) & (table["n"] >= 2)).sum()) for g in groups)
    fig, axes = grid_figure(1, len(groups), width=6.5, height=max(2.2, 0.32 * most + 1.6),
                            wrap=study_wrap(study, len(groups)))
    for col, group in enumerate(groups):
        ax = axes[0, col]
        rows = table[table["group"] == group].reset_index(drop=True)
        skipped, rows = rows[rows["n"] < 2], rows[rows["n"] >= 2].reset_index(drop=True)
        y = np.arange(len(rows))[::-1]
        significant = rows["p_holm"] < 0.05
        for yi, (_, r), sig in zip(y, rows.iterrows(), significant):
            color = "tab:blue" if sig else "0.55"
            centre = r["mean_diff"]
            low, high = (r["ci_low"], r["ci_high"]) if np.isfinite(r["ci_low"]) else (centre, centre)
            ax.errorbar([centre], [yi], xerr=[[centre - low], [high - centre]], color=color, marker="o", ms=5,
                        capsize=3, lw=1.5)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [f"{r['arm_a']} − {r['arm_b']}" for _, r in rows.iterrows()], fontsize=8)
        scale = difference_axis(ax, rows[["ci_low", "ci_high", "mean_diff"]].to_numpy(dtype=float).ravel())
        ax.set_xlabel("difference in test accuracy (percentage points)" + (f"\n{scale}" if scale else ""))
        if len(skipped):
            names = ", ".join(f"{r['arm_a']} − {r['arm_b']}" for _, r in skipped.iterrows())
            ax.text(0.01, 0.99, f"not comparable (< 2 seeds both finished):\n{names}", transform=ax.transAxes,
                    fontsize=7, va="top", color="firebrick", wrap=True)
            ax.set_ylim(-0.7, max(len(rows), 1) + 0.9)
        ax.set_title(group)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle("Paired differences per seed: mean with 95% CI\nblue = separable (Holm-corrected paired "
                 "t-test, p < 0.05), grey = not separable")
    return save(fig, study, "comparisons.png")


def plot_learning_curves(study: Study) -> str:
    fig, axes = grid_figure(2, len(study.groups), wrap=study_wrap(study, len(study.groups)))
    for col, group in enumerate(study.groups):
        top, bottom = axes[0, col], axes[1, col]
        best = []
        for arm in study.arms_of(group):
            runs = study.runs_of(group, arm)
            if not len(runs):
                continue
            band(top, curves(study, runs, "train_loss"), study, group, arm, clip=(1e-4, np.inf))
            best.append(band(bottom, curves(study, runs, "val_acc"), study, group, arm, transform=error_of,
                             clip=(0.0, 1.0), interval=accuracy_ci))
        top.set_yscale("log")
        top.set_title(group)
        top.set_ylabel("training loss (log)")
        accuracy_axis(bottom, "validation accuracy", best)
        if study.target:
            bottom.axhline(1 - study.target, color="0.4", lw=0.8, ls=":")
        for ax in (top, bottom):
            epoch_axis(ax)
            ax.grid(alpha=0.3)
    fig.suptitle(f"Learning curves of the final seeds: mean, band = 95% interval\n(dotted: the "
                 f"{study.target:.0%} validation target; arms shifted slightly along x so none hides another)")
    return save(fig, study, "learning_curves.png", axes[0, 0])


def plot_tuning(study: Study, summary: pd.DataFrame) -> str | None:
    """Mean validation accuracy of the tuning seeds per candidate (ring = chosen, × = a seed diverged)."""
    if not len(study.tune) or len(study.tuned) != 1:
        return None
    key = study.tuned[0]
    fig, axes = grid_figure(1, len(study.groups), height=4.2, wrap=study_wrap(study, len(study.groups)))
    for col, group in enumerate(study.groups):
        ax = axes[0, col]
        tune = study.tune[study.tune["group"] == group]
        numeric = pd.api.types.is_numeric_dtype(tune[key]) and (tune[key] > 0).all()
        for arm in study.arms_of(group):
            runs = study.runs_of(group, arm, "tune")
            if not len(runs):
                continue
            score = pd.Series({value: r["final_val_acc"].mean() if (r["status"] == "ok").all() else np.nan
                               for value, r in runs.groupby(key)}, dtype=float)
            x = score.index.to_numpy(dtype=float)
            # arms side by side within ±0.075 decades of each candidate (grid points are ≥ 0.5 decades apart)
            shift = 10 ** study.offset(group, arm, 0.15) if numeric else 1.0
            err = np.where(np.isnan(score.to_numpy(dtype=float)), DIVERGED_ERROR, error_of(score))
            ax.plot(x * shift, err, ls="-", ms=5, **style(study, arm))
            bad = np.isnan(score.to_numpy(dtype=float))
            ax.scatter(x[bad] * shift, err[bad], color=study.color(arm), marker="x", s=60, zorder=3)
            chosen = study.runs_of(group, arm)
            if len(chosen):
                at = float(chosen[key].iloc[0])
                hit = np.isclose(x, at)
                ax.scatter(x[hit] * shift, err[hit], s=130, facecolors="none", edgecolors=study.color(arm),
                           lw=1.5, zorder=3)
        if numeric:
            ax.set_xscale("log")
        values = sorted(tune[key].unique())
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.set_xlabel(key.replace("_", " ") + (" (log)" if numeric else ""))
        accuracy_axis(ax, "validation accuracy,\nmean of the tuning seeds", tune["final_val_acc"])
        ax.set_title(group)
        ax.grid(alpha=0.3)
    seeds = sorted(study.tune["seed"].unique())
    fig.suptitle(f"Tuning: final validation accuracy, mean over tuning seed{'s' if len(seeds) > 1 else ''} "
                 f"{', '.join(map(str, seeds))}\n"
                 f"(ring = chosen; × = a seed diverged; arms shifted slightly along x)")
    return save(fig, study, "tuning.png", axes[0, 0])


def plot_layer_profiles(study: Study) -> str:
    """Per layer: weight-gradient norm at initialisation (log) and after training, activation std at
    initialisation; one line per arm, a column per group."""
    fig, axes = grid_figure(3, len(study.groups), wrap=study_wrap(study, len(study.groups)))
    init, end = layer_means(study, "init"), layer_means(study, "end")
    panels = ((init, "grad_norm", "‖∂E/∂W‖ at initialisation (log)", True),
              (init, "act_std", "activation std at initialisation (log)", True),
              (end, "grad_norm", "‖∂E/∂W‖ after training (log)", True))
    for row, (layers, metric, label, log) in enumerate(panels):
        for col, group in enumerate(study.groups):
            ax = axes[row, col]
            for arm in study.arms_of(group):
                df = layers[(layers["group"] == group) & (layers["arm"] == arm)]
                ax.plot(df["layer"] + 1 + study.offset(group, arm, 0.3), df[metric], ms=4, lw=1.2,
                        **style(study, arm))
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("layer (1 = first, last = output)")
            ax.set_ylabel(label)
            ax.set_title(group)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
    fig.suptitle("Per-layer profiles on a fixed probe batch (first 1,000 validation images), mean over seeds:\n"
                 "vanishing gradients fall to the left, exploding ones rise; activation std is the forward view")
    return save(fig, study, "layer_profiles.png", axes[0, 0])


INACTIVE_LABELS = {"dead": "dead hidden units (%)\nf' = 0 on every probe image",
                   "saturated": "saturated outputs (%)\nin the flat tails, per unit and image"}
NEAR_ZERO = 0.1  # percent: arms that never exceed it are named in a note on the panel, not drawn


def inactive_panels(groups: list, arms_of, diag: pd.DataFrame) -> list:
    """The panels of the inactive-units figure: (group, measure) for each group and each measure ("dead",
    "saturated") that applies to at least one of its arms (``diag``'s ``inactive``; ``arms_of(group)``)."""
    kind = {(r["group"], r["arm"]): r["inactive"] for _, r in diag.iterrows()}
    return [(group, which) for group in groups for which in ("dead", "saturated")
            if any(kind.get((group, arm)) == which for arm in arms_of(group))]


def plot_inactive_units(study: Study, diag: pd.DataFrame) -> str:
    """Over training, the fraction of inactive hidden units in the one sense that applies to each arm's
    activation (``diagnostics``' ``inactive``): a panel per group and measure, so dead and saturated lines
    never share an axis; arms that stay below ``NEAR_ZERO`` are named on the panel, and arms to which
    neither measure applies are named under the figure."""
    layers = study.tables.layers.merge(study.final[["key", "group", "arm"]], on="key")
    layers = layers[is_hidden(layers)]
    per_run = layers.groupby(["group", "arm", "key", "epoch"], sort=False)[["dead_frac", "saturated_frac"]] \
        .mean().reset_index()
    kind = {(r["group"], r["arm"]): r["inactive"] for _, r in diag.iterrows()}
    unfinished = {(r["group"], r["arm"]) for _, r in diag.iterrows() if not r["finished"]}
    last_epoch = float(per_run["epoch"].max()) if len(per_run) else 1.0
    panels = inactive_panels(study.groups, study.arms_of, diag)
    neither = list(dict.fromkeys(arm for (group, arm), which in kind.items() if pd.isna(which)))
    fig, axes = grid_figure(1, max(len(panels), 1), height=4.0, wrap=study_wrap(study, len(panels)))
    for col, (group, which) in enumerate(panels):
        ax = axes[0, col]
        flat = []
        for arm in study.arms_of(group):
            df = per_run[(per_run["group"] == group) & (per_run["arm"] == arm)]
            if kind.get((group, arm)) != which or not len(df):
                continue
            table = df.pivot(index="key", columns="epoch", values=f"{which}_frac") * 100
            mean = np.array([mean_ci(table[c]).mean for c in table.columns])
            if np.nanmax(np.append(mean, 0)) < NEAR_ZERO:
                flat.append(f"{arm} ({'0%' if np.nanmax(np.append(mean, 0)) == 0 else f'< {NEAR_ZERO:g}%'})")
                continue
            x = np.asarray(table.columns, dtype=float) + study.offset(group, arm)
            ax.plot(x, mean, ls="-" if which == "dead" else "--", ms=4, lw=1.2, color=study.color(arm),
                    marker=study.marker(arm),
                    label=arm + (" (every seed diverged)" if (group, arm) in unfinished else ""))
        ax.set_ylabel(INACTIVE_LABELS[which], fontsize=9)
        epoch_axis(ax, "epoch (0 = initialisation)")
        ax.set_title(f"{group}: {which}", fontsize=10)
        ax.set_ylim(-1, max(5, ax.get_ylim()[1] * 1.15))
        ax.set_xlim(-0.4, last_epoch + 0.4)
        ax.grid(alpha=0.3)
        if flat:
            ax.text(0.02, 0.97, f"below {NEAR_ZERO:g}% throughout (not drawn):\n" + "\n".join(flat),
                    transform=ax.transAxes, fontsize=7, va="top", color="0.3")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    if not panels:
        axes[0, 0].set_axis_off()
    fig.suptitle("Inactive hidden units over training, mean over hidden layers and seeds, each in its sense\n"
                 "dead (solid): f' = 0 on every probe image (where f' is 0 on an interval, as ReLU's)\n"
                 "saturated (dashed): outputs in flat tails, |tanh| > 0.97 or σ within 0.03 of 0 or 1 (Glorot & "
                 "Bengio 2010)")
    if neither:
        fig.supxlabel(f"Neither applies (f' > 0 everywhere, or 0 only at isolated points: no unit can be dead; no "
                      f"flat tails measured), not shown: {', '.join(neither)}", fontsize=9)
    return save(fig, study, "inactive_units.png")


def plot_curve_differences(study: Study, diffs: dict) -> str:
    fig, axes = grid_figure(1, 1, width=6.0, height=3.6)
    ax = axes[0, 0]
    for i, ((group, a, b), table) in enumerate(diffs.items()):
        for metric, marker in zip(CURVE_METRICS, "osD"):
            if metric in table:
                ax.plot(table.index + 0.05 * i, np.maximum(table[metric].to_numpy(), 1e-18), marker=marker, ls=":",
                        mfc="none", label=f"{a} − {b}: {metric}" + (f" ({group})" if len(study.groups) > 1 else ""))
    ax.set_yscale("log")
    ax.set_ylim(1e-19, 1e-5)
    ax.set_ylabel("largest |difference| over seeds\n(0 drawn at 1e-18)")
    epoch_axis(ax)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.suptitle("Arms whose learning curves coincide: the largest difference per epoch")
    return save(fig, study, "curve_differences.png")


def heatmap_baselines(study: Study, summary: pd.DataFrame) -> dict:
    """Each group's reference arm for the heatmap: the spec's ``baseline`` when the group has it, else the group's
    best arm (highest mean test accuracy of the seeds that finished); None for a group with no finished seed."""
    out = {}
    for group in study.groups:
        rows = summary[summary["group"] == group]
        if study.baseline and (rows["arm"] == study.baseline).any():
            out[group] = study.baseline
            continue
        finished = rows[rows["ok"] > 0]
        means = [c.mean for c in finished["test"]]
        out[group] = finished["arm"].iloc[int(np.nanargmax(means))] if len(finished) else None
    return out


def heatmap_cells(study: Study, summary: pd.DataFrame, table: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (group, arm) of the heatmap: the mean test accuracy (NaN when no seed finished), whether every
    seed diverged, the group's reference arm, the paired difference from it in points (arm − reference) and whether
    that difference is separable (Holm-corrected paired t-test, p_Holm < ``alpha``)."""
    reference = heatmap_baselines(study, summary)
    rows = []
    for _, r in summary.iterrows():
        group, arm, ref = r["group"], r["arm"], reference.get(r["group"])
        diff, p_holm = math.nan, math.nan
        pair = table[(table["group"] == group) & (((table["arm_a"] == arm) & (table["arm_b"] == ref)) |
                                                  ((table["arm_a"] == ref) & (table["arm_b"] == arm)))]
        if ref is not None and arm != ref and len(pair) and pair["n"].iloc[0] >= 2:
            sign = 1 if pair["arm_a"].iloc[0] == arm else -1
            diff, p_holm = sign * float(pair["mean_diff"].iloc[0]), float(pair["p_holm"].iloc[0])
        rows.append({"group": group, "arm": arm, "mean": r["test"].mean if r["ok"] else math.nan,
                     "diverged": r["ok"] == 0 and r["diverged"] == r["runs"],
                     "partly": r["ok"] > 0 and r["diverged"] > 0,
                     "reference": ref, "diff": diff, "p_holm": p_holm,
                     "separable": bool(np.isfinite(p_holm) and p_holm < alpha)})
    return pd.DataFrame(rows, columns=["group", "arm", "mean", "diverged", "partly", "reference", "diff", "p_holm",
                                       "separable"])


def plot_heatmap(study: Study, summary: pd.DataFrame, table: pd.DataFrame) -> str | None:
    """The study at a glance, for a study with more than one group: a row per group, a column per arm (the compare
    axis), the mean test accuracy in each cell, coloured by it, and the paired difference from the group's
    reference arm (the spec's baseline, else the group's best arm) underneath, bold with a ▲/▼ when separable."""
    if len(study.groups) < 2 or not len(summary):
        return None
    cells = heatmap_cells(study, summary, table)
    arms = [a for a in study.arms if (cells["arm"] == a).any()]
    groups = [g for g in study.groups if (cells["group"] == g).any()]
    grid = np.full((len(groups), len(arms)), np.nan)
    for _, c in cells.iterrows():
        grid[groups.index(c["group"]), arms.index(c["arm"])] = c["mean"]
    label_width = min(4.5, 0.075 * max(len(g) for g in groups) + 0.4)
    cell_width = max(1.2, min(1.7, 0.11 * max(len(a) for a in arms) + 0.3))
    width = min(MAX_WIDTH, label_width + cell_width * len(arms) + 1.4)
    fig = Figure(figsize=(width, 0.45 * max(len(groups), 4) + 2.2), layout="constrained")
    ax = fig.add_subplot()
    finite = grid[np.isfinite(grid)]
    low = float(finite.min()) if len(finite) else 0.0
    high = float(finite.max()) if len(finite) else 1.0
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # grey: no finished seed
    image = ax.imshow(np.ma.masked_invalid(grid) * 100, cmap=cmap, aspect="auto", vmin=low * 100,
                      vmax=max(high, low + 1e-3) * 100)
    by_place = {(c["group"], c["arm"]): c for _, c in cells.iterrows()}
    fontsize = 8 if len(arms) > 6 else 9
    for i, group in enumerate(groups):
        for j, arm in enumerate(arms):
            c = by_place.get((group, arm))
            if c is None:
                continue
            dark = not np.isfinite(c["mean"]) or (c["mean"] - low) / max(high - low, 1e-12) < 0.6
            color = "white" if dark and np.isfinite(c["mean"]) else "black"
            if c["diverged"]:
                text = "diverged"
            elif not np.isfinite(c["mean"]):
                text = "–"
            else:
                text = f"{c['mean']:.2%}" + ("†" if c["partly"] else "")
            if arm == c["reference"]:
                text += "\n(ref.)"
                ax.add_patch(Rectangle((j - 0.48, i - 0.48), 0.96, 0.96, fill=False, edgecolor="white", lw=2.5))
            elif np.isfinite(c["diff"]):
                mark = ("▲" if c["diff"] > 0 else "▼") if c["separable"] else ""
                text += f"\n{round(c['diff'], 2) + 0.0:+.2f}{mark}"  # + 0.0: never "-0.00"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=color,
                    fontweight="bold" if c["separable"] else "normal", linespacing=1.1)
    ax.set_xticks(range(len(arms)), arms, rotation=30 if len(arms) > 4 else 0,
                  ha="right" if len(arms) > 4 else "center")
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(groups)), groups, fontsize=9)
    axes = study.group_axes
    labels = [study.group_labels(g) for g in groups]
    if len(axes) > 1 and all(labels):  # a line between the blocks of the first group axis
        first = [label[axes[0]] for label in labels]
        for i in range(1, len(groups)):
            if first[i] != first[i - 1]:
                ax.axhline(i - 0.5, color="white", lw=3)
    fig.colorbar(image, ax=ax, shrink=0.6, label="mean test accuracy (%)")
    reference = f"the baseline, {study.baseline}" if study.baseline else "the group's best arm"
    fig.suptitle(wrapped(fig, f"Mean test accuracy of the final seeds: a row per group, a column per "
                              f"{study.compare}; under it, the paired difference from {reference} (ref.), in "
                              f"points.\nBold with ▲/▼: separable (Holm-corrected paired t-test, p < {ALPHA:g}); "
                              f"grey: no finished seed; †: some seeds diverged (mean of those that finished).", 10), fontsize=10)
    write_atomically(study.folder / "heatmap.png", lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return "heatmap.png"
