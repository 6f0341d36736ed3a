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
# # 3. Exercises: worked solutions
#
# Each exercise gives a layer's forward pass, `forward(**inputs) -> (out, cache)`, and asks for its backward pass,
# `backward(dout, cache) -> {input name: ∂E/∂input}`, where `dout` = ∂E/∂out arrives from the layer above (the
# convention of CS231n's `layers.py`). Write yours in the cell marked **YOUR CODE**; the code there now is a
# plausible first attempt with a mistake in it, so the notebook runs as it is.
#
# The checker, `experiments.gradcheck.check_backward(forward, backward, inputs)`, draws a random `dout`, compares
# every element of your gradients with centred finite differences of Σ out·dout, and says **which elements are
# wrong and by how much** (`report.failures`: input, index, analytic, numeric, abs_err, rel_err, worst first).
# The line `check()` prints first is in the style of the "backprop ninja" exercise: per input, whether every
# element agrees, and the largest difference.
#
# These are the worked solutions of `notebooks/03_exercises.py`: every check passes (the last cell asserts it).

# %%
import numpy as np

from experiments.gradcheck import check_backward

rng = np.random.default_rng(0)
results = {}


def check(name, forward, backward, inputs):
    """Check ``backward`` against finite differences of ``forward`` and print what is wrong, element by element."""
    report = check_backward(forward, backward, inputs, name=name)
    for key, x in inputs.items():
        if not (isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)):
            continue
        wrong = report.failures[report.failures["input"] == key]
        if any(f"gradient {key!r} has" in p or f"for input {key!r}" in p for p in report.problems):
            print(f"{name:24} d{key:6} | all close: False | missing, wrong shape or not finite: see below")
            continue
        maxdiff = wrong["abs_err"].max() if len(wrong) else 0.0
        print(f"{name:24} d{key:6} | all close: {str(wrong.empty):5} | wrong elements: {len(wrong):3} of "
              f"{x.size:3} | max |analytic − numeric|: {maxdiff:.1e}")
    print(report)
    if len(report.failures):
        print(report.failures.head(5).to_string(index=False))
    results[name] = report.passed
    return report


# %% [markdown]
# ## Exercise 1: the affine layer
#
# $\text{out} = x W^\top + b$ for a batch x (B, D), W (M, D), b (M,). Hint: each gradient has the shape of its
# input; $\partial E/\partial W = \text{dout}^\top x$ sums over the batch, and so does $\partial E/\partial b$.

# %%
def affine_forward(x, W, b):
    return x @ W.T + b, (x, W)


# %%
# ---------------------------------------------------------------- SOLUTION: affine_backward
def affine_backward(dout, cache):
    x, W = cache
    dx = dout @ W                  # (B, M)·(M, D)
    dW = dout.T @ x                # (M, B)·(B, D): W's own layout, summed over the batch
    db = dout.sum(axis=0)          # every example adds its own dout
    return {"x": dx, "W": dW, "b": db}


# %%
affine_inputs = {"x": rng.standard_normal((4, 5)), "W": rng.standard_normal((3, 5)), "b": rng.standard_normal(3)}
check("affine", affine_forward, affine_backward, affine_inputs);

# %% [markdown]
# ## Exercise 2: ReLU
#
# $\text{out} = \max(x, 0)$ element-wise. The upstream gradient flows through where x > 0 and stops elsewhere.

# %%
def relu_forward(x):
    return np.maximum(x, 0), x


# %%
# ---------------------------------------------------------------- SOLUTION: relu_backward
def relu_backward(dout, cache):
    x = cache
    return {"x": dout * (x > 0)}   # the chain rule: upstream gradient times the local derivative


# %%
check("relu", relu_forward, relu_backward, {"x": rng.standard_normal((4, 6))});

# %% [markdown]
# ## Exercise 3: softmax with cross-entropy
#
# Scores z (B, C) and integer labels y: $p = \text{softmax}(z)$, $L = -\frac1B \sum_i \log p_{i, y_i}$ (the mean
# over the batch, as `F.cross_entropy`). The labels are not differentiated: the checker passes them through.

# %%
def softmax_ce_forward(z, y):
    shifted = z - z.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    return np.array(loss), (p, y)


# %%
# ---------------------------------------------------------------- SOLUTION: softmax_ce_backward
def softmax_ce_backward(dout, cache):
    p, y = cache
    dz = p.copy()
    dz[np.arange(len(y)), y] -= 1  # p − onehot(y): ∂L/∂z of one example's loss
    return {"z": dz / len(y) * dout}  # the loss is the batch mean, so each example's share is 1/B


# %%
check("softmax_cross_entropy", softmax_ce_forward, softmax_ce_backward,
      {"z": rng.standard_normal((5, 4)), "y": np.array([0, 3, 1, 1, 2])});

# %% [markdown]
# ## Exercise 4: batch normalisation (training mode)
#
# $\mu = \frac1B\sum_i x_i$, $\sigma^2 = \frac1B\sum_i (x_i - \mu)^2$, $\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}$,
# $\text{out} = \gamma \hat x + \beta$, per feature. The trap: μ and σ² depend on every $x_i$ of the batch, so each
# input's gradient has three paths — through $\hat x$ directly, through μ and through σ².

# %%
EPS = 1e-5


def batchnorm_forward(x, gamma, beta):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    std = np.sqrt(var + EPS)
    xhat = (x - mu) / std
    return gamma * xhat + beta, (xhat, gamma, std)


# %%
# ---------------------------------------------------------------- SOLUTION: batchnorm_backward
def batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    B = len(xhat)
    dxhat = dout * gamma
    # the three paths (through x̂, μ and σ²) collected: ∂E/∂x = (B·dx̂ − Σdx̂ − x̂·Σ(dx̂·x̂)) / (B·std)
    dx = (B * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (B * std)
    return {"x": dx, "gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0)}


# %%
check("batchnorm", batchnorm_forward, batchnorm_backward,
      {"x": rng.standard_normal((6, 3)) * 2 + 1, "gamma": rng.standard_normal(3), "beta": rng.standard_normal(3)});

# %% [markdown]
# ## Still to come: convolution and LSTM
#
# <!-- EXERCISES TO COME: conv2d_backward (manual.nn.Conv2d), lstm_step_backward (manual.nn.LSTM) -->
# The convolution (`manual.nn.Conv2d`, pooling) and recurrent (`manual.nn.LSTM`) layers are being added to
# `manual.nn`. Their exercises go here, in the same form: a forward pass given, the backward pass yours, the
# checker to tell you which elements are wrong. Until then, you can check any layer of your own the same way —
# `check("my layer", my_forward, my_backward, {"x": ...})`.

# %% [markdown]
# ## Summary

# %%
for name, passed in results.items():
    print(f"{name:24} {'passed' if passed else 'not yet: see its report above'}")
assert all(results.values()), results
