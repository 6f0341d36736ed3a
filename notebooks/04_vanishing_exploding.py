# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Vanishing and exploding gradients, and their cures
#
# Backpropagation multiplies, layer after layer, by the weights and by f′(z). Sigmoid's derivative is at most
# 1/4, so through many sigmoid layers the gradient reaching the first layer **vanishes**; weights too large for
# their layer's width make it **explode**. The cures: an initialisation matched to the activation (Xavier for
# sigmoid and tanh, He for ReLU), batch normalisation, gradient clipping.
#
# Nothing is trained here: this notebook reads the committed results of two studies, `results/activations`
# (every activation on a 2- and an 8-hidden-layer net) and `results/depth` (sigmoid, tanh, ReLU × 2, 8, 16 hidden
# layers × three initialisations × three cures; 81 arms). Their full reports: `results/activations/REPORT.md`,
# `results/depth/REPORT.md`.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

ROOT = Path.cwd() if (Path.cwd() / "results").is_dir() else Path.cwd().parent  # the repository root


def study(name):
    """A study's final runs (one row per seed, with its group and arm) and its per-layer diagnostics."""
    folder = ROOT / "results" / name
    plan = pd.read_csv(folder / "plan.csv", dtype={"key": str})
    runs = pd.read_csv(folder / "runs.csv", dtype={"key": str})
    final = plan[plan["phase"] == "seeds"].drop_duplicates("key").merge(runs, on="key")
    layers = pd.read_csv(folder / "layers.csv", dtype={"key": str}).merge(final[["key", "group", "arm"]], on="key")
    return final, layers


act_runs, act_layers = study("activations")
depth_runs, depth_layers = study("depth")
print(f"activations: {len(act_runs)} final runs; depth: {len(depth_runs)} final runs")

# %% [markdown]
# ## The gradient at initialisation, layer by layer
#
# `layers.csv` holds, for every run, epoch (0 = initialisation) and layer, the norm of the weight gradient
# ‖∂E/∂W‖ on a fixed probe batch. The 8-hidden-layer nets of the activation study, at initialisation, averaged
# over seeds:

# %%
deep = act_layers[(act_layers["epoch"] == 0) & act_layers["group"].str.startswith("8 hidden")]
profile = deep.groupby(["arm", "layer"])["grad_norm"].mean().unstack("arm")
profile.index = profile.index + 1  # layer 1 = the first
print(profile[["sigmoid", "tanh", "relu", "gelu"]].to_string(float_format=lambda v: f"{v:.1e}"))

fig, ax = plt.subplots(figsize=(7, 4))
for arm in ["sigmoid", "tanh", "relu", "gelu", "identity"]:
    ax.plot(profile.index, profile[arm], marker="o", label=arm)
ax.set(yscale="log", xlabel="layer (1 = first, 9 = output)", ylabel="‖∂E/∂W‖ at initialisation (log)",
       title="8 hidden layers of 64, Xavier-style init: sigmoid's gradient vanishes")
ax.legend()
plt.show()

# %%
ratio = profile.iloc[0] / profile.iloc[-1]
print("first layer / output layer:")
print(ratio.sort_values().to_string(float_format=lambda v: f"{v:.1e}"))
assert ratio["sigmoid"] < 1e-4 < 1 < ratio["relu"]

# %% [markdown]
# The first layer of the sigmoid net gets a gradient some 10⁴–10⁵ times smaller than the output layer: it barely
# learns, and the net stays at chance.

# %%
accuracy = act_runs.groupby(["group", "arm"])["test_acc"].mean().unstack("group") * 100
print(accuracy.round(2).to_string())

# %% [markdown]
# ## The cures, from the depth study
#
# For each group (activation, depth, initialisation) the study trains three arms: no cure, batch normalisation,
# and clipping the gradient norm at 1. Mean test accuracy (%) of the final seeds; an empty cell is an arm whose
# every seed diverged:

# %%
ok = depth_runs[depth_runs["status"] == "ok"]
table = ok.groupby(["group", "arm"])["test_acc"].mean().unstack("arm")[["none", "batch norm", "clip norm 1"]] * 100
table = table.reindex(pd.unique(depth_runs["group"]))
print(table.round(2).to_string())

# %% [markdown]
# Three things stand out:
#
# - **Vanishing sigmoid**: 8 or 16 hidden sigmoid layers with Xavier or He init stay near chance without a cure;
#   batch normalisation brings them to about 91%. Clipping cannot help: it only shrinks gradients.
# - **Exploding ReLU with N(0, 1) weights**: the gradient norms at initialisation are astronomical and training
#   diverges; the matching initialisation (He) is the cure, with no other help.
# - **Clipping** rescues some N(0, 1) nets but is no free insurance elsewhere.

# %%
sigmoid8 = table.loc["sigmoid, 8 hidden (784-64×8-10), xavier"]
assert sigmoid8["none"] < 15 and sigmoid8["batch norm"] > 85
relu16 = table.loc[[g for g in table.index if g.startswith("relu, 16 hidden")]]
print(relu16.round(2).to_string())

# %%
init = depth_layers[depth_layers["epoch"] == 0]
largest = init.groupby(["group", "arm", "key"])["grad_norm"].max().groupby(["group", "arm"]).mean().unstack("arm")
largest = largest.reindex(pd.unique(depth_runs["group"]))
print("largest layer gradient norm at initialisation (mean over seeds):")
print(largest[["none", "batch norm"]].to_string(float_format=lambda v: f"{v:.1e}"))

# %% [markdown]
# ## The figures of the reports
#
# The depth study at a glance (a row per group, a column per cure, the paired difference from no cure under each
# accuracy, bold where the paired test separates it), and the per-layer profiles of every arm:

# %%
for name in ["depth/heatmap.png", "depth/layer_profiles.png", "activations/layer_profiles.png"]:
    image = plt.imread(ROOT / "results" / name)
    print(f"results/{name}: {image.shape[1]} × {image.shape[0]} px")
    if "heatmap" in name:
        fig, ax = plt.subplots(figsize=(image.shape[1] / 110, image.shape[0] / 110))
        ax.imshow(image)
        ax.set_axis_off()
        plt.show()

# %% [markdown]
# ![the depth study at a glance](../results/depth/heatmap.png)
#
# More: `results/depth/REPORT.md` (every group, every paired test, the diverged runs) and
# `results/activations/REPORT.md`.
