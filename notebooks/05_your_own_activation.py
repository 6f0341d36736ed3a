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
# # 5. Your own activation: write it, check it, ablate it in a minute
#
# An activation in this suite is a function f, its derivative f′ written by hand, and (optionally) the same f on
# torch tensors, whose autograd derivative is an independent reference. Here: the inverse square root unit,
#
# $$f(z) = \frac{z}{\sqrt{1 + z^2}}, \qquad f'(z) = (1 + z^2)^{-3/2},$$
#
# an S-shaped curve like tanh whose tails approach ±1 polynomially.

# %%
import time

import numpy as np
import pandas as pd
import torch

from experiments.data import load_mnist
from experiments.gradcheck import check_activation
from manual.activations import Activation, register


def isru(z):
    return z / np.sqrt(1 + z * z)


def isru_torch(z):
    return z / torch.sqrt(1 + z * z)


# %% [markdown]
# ## A first attempt at f′, checked
#
# The quotient rule done in a hurry forgets the chain rule's factor from the square root:

# %%
def d_isru_slip(z):
    return 1 / np.sqrt(1 + z * z)  # forgot: d/dz (1 + z²)^(-1/2) contributes −z²·(1 + z²)^(-3/2)


report = check_activation(Activation("isru_slip", isru, d_isru_slip, torch_fn=isru_torch))
print(report)
print(report.failures.head().to_string(index=False))
assert not report.passed

# %% [markdown]
# The checker compares f′ with fourth-order centred differences of f on some 2,000 points from −10⁴ to 10⁴ and
# with autograd of the torch version, and names the regions where it is wrong. Now the derivative worked out:
# $f'(z) = \frac{\sqrt{1+z^2} - z \cdot z/\sqrt{1+z^2}}{1 + z^2} = (1 + z^2)^{-3/2}$.

# %%
def d_isru(z):
    return (1 + z * z) ** -1.5


isru_activation = Activation("isru", isru, d_isru, torch_fn=isru_torch)
report = check_activation(isru_activation)
print(report)
assert report.passed

# %% [markdown]
# ## Register it: it is now an activation like the built-ins
#
# `register` makes the name valid everywhere: `manual.MLP`, `manual.nn.build([... "isru" ...])`,
# `torch_ref`, `RunConfig`, the command line (`--plugin file.py`) and study specs (`plugins = ["file.py"]`).

# %%
register(isru_activation)

# %% [markdown]
# ## Ablate it in a minute
#
# A tiny study: a 784-64-10 network written as data (`"activation"` stands for the activation under test), the
# first 3,000 training images, 300 steps of Adam on batches of 64, three seeds per activation, accuracy on the
# first 2,000 test images — trained by hand with `manual.nn`, in a few seconds. Far too small for a conclusion; the
# point is that the new activation trains exactly like a built-in. For a real study (tuning, fresh seeds, paired
# tests, a report), write a spec file like `examples/relu-gelu-mish.toml` and run `python -m experiments study`.

# %%
import manual
import manual.nn
from threadpoolctl import threadpool_limits

threadpool_limits(1)  # small matrices: one BLAS thread is fastest, and fair to a shared machine
data = load_mnist(train_subset=3000)
X, y = data.train.images / 255.0, data.train.labels
X_test, y_test = data.test.images[:2000] / 255.0, data.test.labels[:2000]


def accuracy_after_training(activation: str, seed: int, steps: int = 300, batch: int = 64) -> float:
    model = manual.nn.build(["linear 64", "activation", "linear 10"], input_shape=784, activation=activation,
                            init="xavier", seed=seed)
    opt = manual.optim.Adam(model.params, lr=3e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = rng.integers(0, len(y), batch)
        loss, grads = manual.nn.loss_and_grads(model, X[rows], y[rows], "cross_entropy")
        opt.step(grads)
    return float(np.mean(model(X_test).argmax(axis=1) == y_test) * 100)


start = time.perf_counter()
runs = pd.DataFrame([{"activation": a, "seed": s, "test_acc": accuracy_after_training(a, s)}
                     for a in ["isru", "tanh", "relu"] for s in (1, 2, 3)])
print(f"{len(runs)} runs in {time.perf_counter() - start:.1f} s")
print(runs.groupby("activation")["test_acc"].agg(["mean", "min", "max"]).round(2).to_string())
assert (runs["test_acc"] > 80).all()
