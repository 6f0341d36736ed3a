"""Inside the networks: first-layer filters, feature maps, and the gradient over time steps.

Figures that need a network's parameters, not only its recorded numbers. They read the models that
``experiments.runs.snapshots`` keeps (``models/<key>.npz``: one run per arm, the final run of the smallest seed,
trained again after the study) and, for the state at initialisation, build the same run's network from its
config and seed: the parameters its training started from. Every number comes from ``manual.nn`` in float64:
its forward pass for the feature maps, its backpropagation through time for ‖∂E/∂h_t‖.

‖∂E/∂h_t‖ is measured per image: for the loss of one image E_n, the norm of ∂E_n/∂h_t (the gradient reaching
the hidden state of step t, from the loss at the last step through every later step), averaged over the probe
images. A vanishing gradient over time is a curve that falls from the last step back to the first.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

import manual.nn
from manual.nn import arch
from manual.nn.conv import Conv2d
from manual.nn.recurrent import _Recurrent

from experiments.config import config_of
from experiments.files import write_csv
from experiments.report.study import Study
from experiments.runs.snapshots import kept_table, load_model

CONV_KINDS = ("conv",)
RECURRENT_KINDS = ("rnn", "lstm", "gru")
PROBE_IMAGES = 1000  # validation images over which ‖∂E_n/∂h_t‖ is averaged
MAPS_SHOWN = 6  # feature maps per convolutional layer in the feature-map figure
GRADIENT_TABLE = "gradient_over_time.csv"


def kinds(row) -> set:
    """The layer kinds of a run's network (``conv``, ``lstm``, ``linear``, …)."""
    return {arch.parse(layer).kind for layer in config_of(row).architecture()}


def shown_runs(study: Study) -> pd.DataFrame:
    """The runs to look inside: per group and arm whose network has a convolutional or recurrent layer, the
    finished final run of the smallest seed."""
    final = study.final[study.final["status"] == "ok"]
    if not len(final):
        return final
    inside = final.apply(lambda row: bool(kinds(row.to_dict()) & {*CONV_KINDS, *RECURRENT_KINDS}), axis=1)
    final = final[inside]
    return final.sort_values("seed").groupby(["group", "arm"], sort=False).head(1).reset_index(drop=True)


def network(row: dict, state: dict | None = None) -> manual.nn.Sequential:
    """The run's network in float64: at initialisation (its config's seed), or with ``state`` loaded."""
    from experiments.runs.training import build_manual

    net = build_manual(config_of(row)).to(np.float64)  # drawn as the run drew it, then widened
    if state is not None:
        net.load_state_dict(state)
    net.eval()
    return net


def gradient_over_time(net: manual.nn.Sequential, X: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """Mean over the images of ‖∂E_n/∂h_t‖ for each step t of the network's first recurrent layer, (T,)."""
    manual.nn.loss_and_grads(net, X, y, loss)
    layer = next(m for _, m in net.named_modules() if isinstance(m, _Recurrent))
    per_image = layer.grad_h[-1] * len(X)  # ∂E/∂h_t of the batch-mean loss, times B: ∂E_n/∂h_t
    return np.linalg.norm(per_image, axis=2).mean(axis=0)


class Shown(NamedTuple):
    """A shown run with a kept model: its runs.csv row, its layer kinds and its trained network (float64)."""
    row: dict
    kinds: set
    net: manual.nn.Sequential


def kept_networks(study: Study) -> list:
    """The shown runs that have a kept model, each model file read and its network built once."""
    shown = []
    for row in shown_runs(study).to_dict("records"):
        state = load_model(study.folder, row["key"])
        if state is not None:
            shown.append(Shown(row, kinds(row), network(row, state)))
    return shown


def gradient_table(shown: list, X, y) -> pd.DataFrame:
    """Per shown recurrent run: ‖∂E_n/∂h_t‖ at initialisation and trained, one row per step (``GRADIENT_TABLE``)."""
    rows = []
    for row, _, trained in (s for s in shown if s.kinds & set(RECURRENT_KINDS)):
        for when, net in (("initialisation", network(row)), ("trained", trained)):
            for t, value in enumerate(gradient_over_time(net, X, y, row["loss"]), start=1):
                rows.append({"key": row["key"], "group": row["group"], "arm": row["arm"], "when": when, "t": t,
                             "grad_h_norm": value})
    return pd.DataFrame(rows)


def conv_maps(net: manual.nn.Sequential, image: np.ndarray) -> list:
    """Per convolutional layer, its feature maps for one image after the layer that follows it (the
    activation), (channels, H, W) each."""
    steps = net.trace(image[None])
    maps = []
    for i, (_, module, _, _) in enumerate(steps):
        if isinstance(module, Conv2d):
            maps.append(steps[min(i + 1, len(steps) - 1)][3][0])
    return maps


def plot_filters(study: Study, shown: list) -> str:
    """The first convolutional layer's filters of each shown arm (``shown``: convolutional ones), one row per arm
    (input channel 0)."""
    from experiments.report.plots import save

    weights = [next(m for _, m in s.net.named_modules() if isinstance(m, Conv2d)).weight for s in shown]
    n = max(w.shape[0] for w in weights)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shown), n, figsize=(1.1 * n + 1.2, 1.2 * len(shown) + 0.8), squeeze=False)
    for r, (s, w) in enumerate(zip(shown, weights)):
        scale = np.abs(w).max()
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < w.shape[0]:
                ax.imshow(w[c, 0], cmap="RdBu_r", vmin=-scale, vmax=scale)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(s.row["arm"], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("First-layer filters after training (red > 0 > blue, one colour scale per arm)", fontsize=10)
    plt.close(fig)
    return save(fig, study, "filters.png")


def plot_feature_maps(study: Study, shown: list, image: np.ndarray) -> str:
    """One test image and the first ``MAPS_SHOWN`` feature maps of each convolutional layer (after its
    activation), one row per shown arm (``shown``: convolutional ones)."""
    from experiments.report.plots import save

    rows = [(s.row, conv_maps(s.net, image)) for s in shown]
    import matplotlib.pyplot as plt

    n_cols = 1 + sum(min(MAPS_SHOWN, len(m)) for m in rows[0][1])
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.05 * n_cols + 1.2, 1.2 * len(rows) + 1.0),
                             squeeze=False)
    side = int(round(np.sqrt(image.size)))
    for r, (row, maps) in enumerate(rows):
        panels = [("image", image.reshape(side, side))]
        for layer, m in enumerate(maps, start=1):
            panels += [(f"conv{layer}[{c}]", m[c]) for c in range(min(MAPS_SHOWN, len(m)))]
        for c, (name, picture) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(picture, cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
        axes[r, 0].set_ylabel(row["arm"], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("Feature maps of a test image after each convolution and its activation (trained networks)",
                 fontsize=10)
    plt.close(fig)
    return save(fig, study, "feature_maps.png")


def plot_gradient_over_time(study: Study, table: pd.DataFrame) -> str | None:
    """‖∂E_n/∂h_t‖ against t per arm: at initialisation and after training, side by side (log scale)."""
    from experiments.report.plots import epoch_axis, save

    if not len(table):
        return None
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, layout="constrained")
    for ax, when in zip(axes, ("initialisation", "trained")):
        for arm, rows in table[table["when"] == when].groupby("arm", sort=False):
            ax.plot(rows["t"], rows["grad_h_norm"], marker=study.marker(arm), markersize=3, color=study.color(arm),
                    label=arm)
        ax.set_yscale("log")
        ax.set_title(f"at {when}" if when == "initialisation" else "after training", fontsize=10)
        epoch_axis(ax, "time step t (row of the image read)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("mean over images of ‖∂E_n/∂h_t‖")
    fig.suptitle(f"The gradient over time: what reaches step t's hidden state from the loss at the last step "
                 f"({PROBE_IMAGES:,} validation images)", fontsize=10)
    plt.close(fig)
    return save(fig, study, "gradient_over_time.png", legend_ax=axes[0])


def first_to_last(table: pd.DataFrame) -> pd.DataFrame:
    """‖∂E/∂h_1‖ / ‖∂E/∂h_T‖ per arm (rows) at initialisation and trained (columns)."""
    ordered = table.sort_values("t")
    ratio = ordered.groupby(["arm", "when"], sort=False)["grad_h_norm"].agg(lambda v: v.iloc[0] / v.iloc[-1])
    return ratio.unstack("when")


def gradient_summary(table: pd.DataFrame) -> str:
    """A markdown table of ``first_to_last`` and a sentence on its range at initialisation and after training."""
    ratios = first_to_last(table)
    lines = ["| arm | ‖∂E/∂h_1‖ / ‖∂E/∂h_T‖ at initialisation | after training |", "|---|---|---|"]
    for arm, row in ratios.iterrows():
        lines.append(f"| {arm} | {row['initialisation']:.2g} | {row['trained']:.2g} |")
    init, trained = ratios["initialisation"], ratios["trained"]
    lines.append(f"\nAt initialisation the gradient reaching the first step is {init.min():.2g}–{init.max():.2g} of "
                 f"the last step's; after training, {trained.min():.2g}–{trained.max():.2g}.")
    return "\n".join(lines)


def kept_text(study: Study) -> str:
    """Which runs the figures show, and their test accuracy retrained against the study's."""
    table = kept_table(study.folder)
    if not len(table):
        return ""
    lines = ["| arm | seed | test accuracy in the study | retrained |", "|---|---|---|---|"]
    for row in table.to_dict("records"):
        lines.append(f"| {row['arm']} | {row['seed']} | {100 * row['study_test_acc']:.2f}% | "
                     f"{100 * row['retrained_test_acc']:.2f}% |")
    return "\n".join(lines)


def inside_parts(study: Study) -> list:
    """The report's section on the networks seen from inside ([] when no shown run has a kept model)."""
    shown = kept_networks(study)
    if not shown:
        return []
    from experiments.data import load_mnist

    data = load_mnist(train_subset=1)  # only the validation and test splits are used
    parts = ["## Inside the networks",
             "One run per arm (the final run of the smallest seed), trained again one by one with the committed "
             "code after the study (`python -m experiments study` does it; parameters in `models/`, their test "
             "accuracy in `models/models.csv`). The figures compute everything with `manual.nn` in float64.",
             kept_text(study)]
    convolutional = [s for s in shown if s.kinds & set(CONV_KINDS)]
    if convolutional:
        image = data.test.features(np.float64)[0]
        parts += [f"![first-layer filters]({plot_filters(study, convolutional)})",
                  f"![feature maps]({plot_feature_maps(study, convolutional, image)})"]
    X, y = data.val.features(np.float64)[:PROBE_IMAGES], data.val.labels[:PROBE_IMAGES]
    table = gradient_table(shown, X, y)
    if len(table):
        write_csv(table, study.folder / GRADIENT_TABLE)
        parts += ["### The gradient over time",
                  "‖∂E_n/∂h_t‖: how much of the gradient of one image's loss reaches the hidden state of step t "
                  "(the loss sits on the last step, t = T), averaged over the probe images; "
                  f"`{GRADIENT_TABLE}` holds every value. A ratio far below 1 is a gradient that vanishes "
                  "over time: the first rows of the image barely steer the weights.",
                  gradient_summary(table), f"![the gradient over time]({plot_gradient_over_time(study, table)})"]
    return parts
