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
# # 1. The neuron
#
# A neuron takes inputs $x_1, \dots, x_n$, weighs each by $w_i$, adds a bias $b$ and passes the sum through an
# activation function $f$:
#
# $$z = \sum_i w_i x_i + b, \qquad a = f(z).$$
#
# A layer is many neurons side by side, written as one matrix product: $z = x W^\top + b$ with $W$ of shape
# (out, in), the layout of `torch.nn.Linear`, which `manual` uses too.

# %%
import numpy as np

import manual
import manual.nn
from manual.activations import get_activation

x = np.array([1.0, 0.5, -1.0])
w = np.array([0.4, -0.2, 0.3])
b = 0.2
z = np.sum(w * x) + b  # 0.4 - 0.1 - 0.3 + 0.2
sigmoid = get_activation("sigmoid").f
print(f"z = {z:.2f}, a = sigmoid(z) = {sigmoid(z):.4f}")
assert np.isclose(z, 0.2)

# %% [markdown]
# ## The sigmoid
#
# $\sigma(z) = 1 / (1 + e^{-z})$ squashes any number into (0, 1). At $z = 0.9$:

# %%
a = sigmoid(np.array(0.9))
print(f"sigmoid(0.9) = {a:.4f}")
assert round(float(a), 2) == 0.71

# %% [markdown]
# ## Softmax: scores into probabilities
#
# The output layer of a classifier turns its scores $z_k$ into probabilities $p_k = e^{z_k} / \sum_j e^{z_j}$.
# Scores (2.9, 1.3, 0.2):

# %%
scores = np.array([2.9, 1.3, 0.2])
p = np.exp(scores - scores.max())  # subtracting the max changes nothing but keeps exp from overflowing
p /= p.sum()
print("softmax(2.9, 1.3, 0.2) =", np.round(p, 2), " sum =", p.sum())
assert np.allclose(np.round(p, 2), [0.79, 0.16, 0.05])

# %% [markdown]
# ## The 784-16-16-10 network
#
# An MNIST image has 28 × 28 = 784 pixels; two hidden layers of 16 neurons and 10 outputs (one per digit).
# Each layer has a weight per (input, neuron) pair and a bias per neuron:

# %%
sizes = [784, 16, 16, 10]
by_hand = [(n_in * n_out, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
for (weights, biases), n_in, n_out in zip(by_hand, sizes[:-1], sizes[1:]):
    print(f"{n_in:>4} → {n_out:<3}: {weights:>6,} weights + {biases:>2} biases")
total = sum(w + b for w, b in by_hand)
print(f"total: {total:,} parameters")
assert total == 13_002

# %% [markdown]
# The same count from the suite's networks: `manual.MLP` (the short form) and `manual.nn` (torch's module
# system, in NumPy). Their state dicts name each tensor as PyTorch would.

# %%
mlp = manual.MLP(sizes, activation="sigmoid", loss="mse", init="normal", seed=0)
model = manual.nn.Sequential(manual.nn.Linear(784, 16), manual.nn.Sigmoid(),
                             manual.nn.Linear(16, 16), manual.nn.Sigmoid(),
                             manual.nn.Linear(16, 10))
print(model)
for key, value in model.state_dict().items():
    print(f"{key:10} {value.shape}")
print("manual.MLP:", mlp.n_params, " manual.nn.Sequential:", model.n_params)
assert mlp.n_params == model.n_params == 13_002

# %% [markdown]
# The same network as data: a list of layer strings that a run config or a study file can carry.

# %%
built = manual.nn.build(["linear 16", "sigmoid", "linear 16", "sigmoid", "linear 10"], input_shape=784, seed=0)
assert built.n_params == 13_002 and list(built.state_dict()) == list(model.state_dict())

# %% [markdown]
# One forward pass of a (random) image through it gives 10 outputs between 0 and 1:

# %%
image = np.random.default_rng(0).random((1, 784))
out = sigmoid(model(image))
print(np.round(out, 3))
assert out.shape == (1, 10) and ((0 < out) & (out < 1)).all()
