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

import manual.nn
from experiments.gradcheck import check_backward
from experiments.gradcheck.recurrent import check_recurrent

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
# ## Exercise 5: 2-D convolution
#
# Images x (N, C, H, W), kernels w (F, C, kh, kw) (F output channels, C input channels), biases b (F,), stride s
# and padding p, as torch's `Conv2d` (a cross-correlation: the kernel is not flipped). xp is x with p zeros on
# every side, and output position (i, j) sees the window xp[:, :, i·s : i·s + kh, j·s : j·s + kw]:
#
#     out[n, f, i, j] = b[f] + Σ_{c, r, q} w[f, c, r, q] · xp[n, c, i·s + r, j·s + q]      out (N, F, Ho, Wo)
#
# Hint: each output is an affine layer (exercise 1) on its window, so w[f] gets dout[n, f, i, j] · window and the
# window gets dout[n, f, i, j] · w[f]. The trap is sharing: the kernel is used at every position, and windows
# overlap (here, 3 × 3 with stride 2: rows and columns 1 and 3 of x lie under two windows), so each collects one
# term per use. The padding is no input: drop its gradient. The checker names elements x[n, c, h, w] and
# w[out, in, kh, kw].

# %%
def conv_forward(x, w, b, stride=1, padding=0):
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho, Wo = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    out = np.zeros((N, F, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]  # (N, C, kh, kw)
            out[:, :, i, j] = np.einsum("nckl,fckl->nf", window, w) + b             # every image, every filter
    return out, (x, w, stride, padding)


# %%
# ---------------------------------------------------------------- SOLUTION: conv_backward
def conv_backward(dout, cache):
    x, w, stride, padding = cache
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            rows, cols = slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw)
            # out[:, :, i, j] is an affine layer on this window: ∂E/∂w[f] = Σ_n dout[n, f, i, j]·window[n] and
            # ∂E/∂window[n] = Σ_f dout[n, f, i, j]·w[f]. Both are shared, so both add up (+=): the kernel over
            # every position, and a pixel over every window it lies under.
            dw += np.einsum("nf,nckl->fckl", dout[:, :, i, j], xp[:, :, rows, cols])  # (F, C, kh, kw)
            dxp[:, :, rows, cols] += np.einsum("nf,fckl->nckl", dout[:, :, i, j], w)  # (N, C, kh, kw)
    dx = dxp[:, :, padding:padding + H, padding:padding + W]  # the padding is no input: its gradient is dropped
    # b[f] is in every out[n, f, i, j]. (manual.conv.conv_backward computes the same without the loops over
    # positions: one matrix product on the windows copied into columns, im2col.)
    return {"x": dx, "w": dw, "b": dout.sum(axis=(0, 2, 3))}


# %%
check("conv", conv_forward, conv_backward,
      {"x": rng.standard_normal((2, 2, 5, 5)), "w": rng.standard_normal((3, 2, 3, 3)), "b": rng.standard_normal(3),
       "stride": 2, "padding": 1});

# %% [markdown]
# ## Exercise 6: an LSTM, backpropagation through time
#
# One LSTM layer, torch's gate order and layout, time-major: x (T, B, I), h_t and c_t (B, H). At each step t the
# gates' pre-activations a_t (B, 4H) are four column blocks of H, one per gate:
#
#     a_t = x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh           W_ih (4H, I), W_hh (4H, H), b_ih, b_hh (4H,)
#     i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)      input, forget, cell, output gate
#     c_t = f ⊙ c_{t−1} + i ⊙ g                               ⊙ element-wise
#     h_t = o ⊙ tanh(c_t)                                     out[t] = h_t
#
# Backpropagation through time is the chain rule on the unrolled loop, from t = T − 1 down to 0. h_t is used twice
# (by out[t] and by step t + 1's gates), and so is c_t (by h_t and by c_{t+1}): each gradient is the sum of both
# paths. `lstm_backward(dout, dh_n, dc_n, cache)` gets dout (T, B, H) and the final state's gradients (B, H) (zeros
# when nothing flows in); dh and dc carry what step t + 1 sends back, at first dh_n and dc_n, after step 0 ∂E/∂h0
# and ∂E/∂c0. Every step uses the same weights, so their gradients are sums over t. Return also "h", ∂E/∂h_t of
# every step (T, B, H), and "gates", ∂E/∂a_t of every step (T, B, 4H).
#
# Two checkers look at it: `check`, element by element as before (x[t, b, i]; row k of a weight is unit k mod H
# of gate k // H), and `check_recurrent`, which runs your backward inside `manual.nn.LSTM` (parameters
# weight_ih_l0 = W_ih, weight_hh_l0, bias_ih_l0, bias_hh_l0) against autograd of torch's `nn.LSTM`. It names the
# tensor, the gate, the units and the first time step from which a gradient is wrong ("weight_hh_l0, forget
# gate, units 1 and 3: wrong from t = 2"), and the step and gate where the error enters.

# %%
def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh):
    T, B, _ = x.shape
    H = h0.shape[1]
    hs, cs = np.zeros((T + 1, B, H)), np.zeros((T + 1, B, H))  # hs[t + 1] = h_t, hs[0] = h0; cs the same for c
    hs[0], cs[0] = h0, c0
    gates = np.zeros((T, B, 4 * H))  # i, f, g, o of every step (after their activations)
    for t in range(T):
        a = x[t] @ W_ih.T + b_ih + hs[t] @ W_hh.T + b_hh  # (B, 4H)
        i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        cs[t + 1] = f * cs[t] + i * g
        hs[t + 1] = o * np.tanh(cs[t + 1])
        gates[t] = np.concatenate([i, f, g, o], axis=1)
    return (hs[1:], hs[-1], cs[-1]), (x, hs, cs, gates, W_ih, W_hh)  # (out, h_n, c_n), cache


# %%
# ---------------------------------------------------------------- SOLUTION: lstm_backward
def lstm_backward(dout, dh_n, dc_n, cache):
    x, hs, cs, gates, W_ih, W_hh = cache
    T, B, H = dout.shape
    dh, dc = dh_n.copy(), dc_n.copy()                 # what step t + 1 sends back to h_t and c_t
    dH, delta = np.zeros((T, B, H)), np.zeros((T, B, 4 * H))
    for t in reversed(range(T)):
        i, f, g, o = np.split(gates[t], 4, axis=1)    # (B, H) each
        tanh_c = np.tanh(cs[t + 1])
        dH[t] = dout[t] + dh                          # h_t feeds out[t] and step t + 1
        dc = dc + dH[t] * o * (1 - tanh_c ** 2)       # c_t feeds h_t = o ⊙ tanh(c_t) and c_{t+1} (dc so far)
        # c_t = f ⊙ c_{t−1} + i ⊙ g and h_t = o ⊙ tanh(c_t): each gate's gradient is its partner in the product
        di, df, dg, do = dc * g, dc * cs[t], dc * i, dH[t] * tanh_c
        # through the activations to δ_t = ∂E/∂a_t (B, 4H): σ′ = σ(1 − σ) for i, f, o; g = tanh(a_g), tanh′ = 1 − g²
        delta[t] = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)],
                                  axis=1)
        dc = dc * f                                   # ∂E/∂c_{t−1} through c_t = f ⊙ c_{t−1} + i ⊙ g
        dh = delta[t] @ W_hh                          # ∂E/∂h_{t−1} through a_t: (B, 4H)·(4H, H)
    # every step uses the same weights: Σ_t δ_tᵀ·x_t, Σ_t δ_tᵀ·h_{t−1} and Σ_t Σ_batch δ_t, each one product or
    # sum over the T·B rows of every step stacked; ∂E/∂x_t = δ_t·W_ih (T, B, 4H)·(4H, I)
    d = delta.reshape(T * B, 4 * H)
    return {"x": delta @ W_ih, "h0": dh, "c0": dc, "W_ih": d.T @ x.reshape(T * B, -1),
            "W_hh": d.T @ hs[:-1].reshape(T * B, H), "b_ih": d.sum(axis=0), "b_hh": d.sum(axis=0),
            "h": dH, "gates": delta}


# %%
class YourLSTM(manual.nn.LSTM):
    """``manual.nn.LSTM`` running the forward pass above and your backward pass (what ``check_recurrent`` checks)."""

    def _layer_forward(self, layer, x, state):
        (out, h_n, c_n), cache = lstm_forward(x, state[0], state[1], *self._layer_params(layer))
        return out, (h_n, c_n), cache

    def _layer_backward(self, dout, dstate, cache, input_grad):
        dh_n, dc_n = (np.zeros_like(dout[0]) if d is None else d for d in dstate)  # None: nothing flows in
        return lstm_backward(dout, dh_n, dc_n, cache)


def lstm_sequence_forward(**inputs):
    """The layer as `check` sees it: its output is the sequence out (T, B, H)."""
    (out, h_n, c_n), cache = lstm_forward(**inputs)
    return out, cache


def lstm_sequence_backward(dout, cache):
    """Nothing flows into h_n and c_n but through out (h_n = out[T − 1]); ``check`` compares the inputs' gradients."""
    zeros = np.zeros_like(dout[0])
    grads = lstm_backward(dout, zeros, zeros, cache)
    return {name: grads[name] for name in ("x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh")}


# %%
manual.nn.manual_seed(0)
lstm = YourLSTM(input_size=3, hidden_size=4)  # its parameters: U(−1/√H, 1/√H), as nn.LSTM's
p = lstm.params
x_seq, h0, c0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
check("lstm", lstm_sequence_forward, lstm_sequence_backward,
      {"x": x_seq, "h0": h0, "c0": c0, "W_ih": p["weight_ih_l0"], "W_hh": p["weight_hh_l0"],
       "b_ih": p["bias_ih_l0"], "b_hh": p["bias_hh_l0"]})
# manual.nn.LSTM is batch-first, x (B, T, I), and its initial state is (h0, c0), each (layers, B, H)
through_time = check_recurrent(lstm, x_seq.transpose(1, 0, 2), (h0[None], c0[None]))
print(through_time)
results["lstm through time"] = through_time.passed

# %% [markdown]
# ## Summary
#
# Check any layer of your own the same way: `check("my layer", my_forward, my_backward, {"x": ...})`.

# %%
for name, passed in results.items():
    print(f"{name:24} {'passed' if passed else 'not yet: see its report above'}")
assert all(results.values()), results
