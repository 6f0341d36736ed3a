"""Recurrent layers by hand: the step equations of RNN, LSTM and GRU, and backpropagation through time.

Each cell is a forward/backward pair in the convention of ``manual.layers``:

    (out, *final_state), cache = <cell>_forward(x, *initial_state, W_ih, W_hh, b_ih, b_hh)
    grads                      = <cell>_backward(dout, *dstate, cache)

Shapes (one layer): T time steps, B sequences in the batch, I input features, H hidden units, G gates
(RNN 1, GRU 3, LSTM 4). The arrays are **time-major** here, x: (T, B, I) and out: (T, B, H), so that each
step's slice x[t] is one contiguous (B, I) block; ``manual.nn.recurrent`` turns torch's batch-first (B, T, ·)
into this and back. The weights have torch's layout and gate order: W_ih (G·H, I), W_hh (G·H, H), b_ih and
b_hh (G·H,), the gates stacked as row blocks of H (LSTM i, f, g, o; GRU r, z, n). A bias may be None.

How the work is arranged (the same in all three cells):

- the input projection x_t·W_ihᵀ + b does not depend on the recurrence, so it is one matrix product for all
  T·B rows at once, (T·B, I)·(I, G·H), before the time loop;
- the time loop is left with one (B, H)·(H, G·H) product per step, for all gates together, and the gates'
  element-wise equations, written into preallocated arrays;
- backward runs the loop in reverse, keeping only what must be sequential (∂E/∂h_t, ∂E/∂c_t, and the
  gradient of each step's gate pre-activations); the weight gradients are sums over steps of outer products,
  so they too are single matrix products after the loop: ∂E/∂W_hh = Σ_t δ_tᵀ·h_{t−1} = δᵀ·H_prev with the
  T·B rows of every step stacked.

Backpropagation through time is the ordinary chain rule on the unrolled network: h_t is used twice, by the
output at t and by step t + 1, so its gradient is the sum of the two,

    ∂E/∂h_t = dout_t + (∂E/∂(step t+1's pre-activations))·W_hh          (and ∂E/∂h_{T−1} gets ∂E/∂h_n too),

and the shared weights collect one term per step. Every backward also returns ``"h"``: ∂E/∂h_t for each t,
(T, B, H) (the vanishing-gradient plots and the per-step checks read it), and ``"gates"``: ∂E/∂(each step's
gate pre-activations), (T, B, G·H), the δ_t below (the gradient of the input projection x_t·W_ihᵀ + b_ih).
"""
from __future__ import annotations

import numpy as np

NONLINEARITIES = ("tanh", "relu")


def sigmoid_(a):
    """σ(a) = 1/(1 + e^(−a)) in place, evaluated as ½·(1 + tanh(a/2)) (the same function: an identity).

    One tanh never overflows and never forms subnormal numbers, and it is 10 to 30 times faster here than
    ``manual.activations.sigmoid``'s exp/where form (whose e^(−|a|) turns subnormal in float32's tails, a slow
    path). Its error is absolute, within a few ε of the result's scale 1: in the far negative tail, where
    σ(a) < ε, it returns those tiny values with few correct digits (or 0), which changes nothing that uses them
    here (f ⊙ c, i ⊙ g, σ′ = σ(1 − σ) are then ε-small as they should be).
    """
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _input_projection(x, W_ih, *biases):
    """x·W_ihᵀ plus the biases that are not None, for all T·B rows in one product: (T, B, I) → (T, B, G·H)."""
    T, B, I = x.shape
    xp = (x.reshape(T * B, I) @ W_ih.T).reshape(T, B, W_ih.shape[0])
    for b in biases:
        if b is not None:
            xp += b
    return xp


def _weight_grads(delta, inputs, W_ih, x, h_prev, input_grad, delta_hh=None):
    """The sums over time of the per-step outer products, each as one matrix product over the T·B stacked rows.

    delta: (T, B, G·H), ∂E/∂(the input projection at each step); ``delta_hh`` the same for the hidden
    projection when it differs (GRU's n gate), else ``delta``. Returns ∂E/∂W_ih = Σ_t δ_tᵀ·x_t,
    ∂E/∂W_hh = Σ_t δ_hh,tᵀ·h_{t−1}, the bias gradients Σ_t Σ_batch δ, and ∂E/∂x_t = δ_t·W_ih (if input_grad).
    """
    T, B, GH = delta.shape
    d2 = delta.reshape(T * B, GH)
    dhh = d2 if delta_hh is None else delta_hh.reshape(T * B, GH)
    grads = {"W_ih": d2.T @ x.reshape(T * B, -1), "W_hh": dhh.T @ h_prev.reshape(T * B, -1)}
    if inputs["b_ih"] is not None:
        grads["b_ih"] = d2.sum(axis=0)
    if inputs["b_hh"] is not None:
        grads["b_hh"] = dhh.sum(axis=0)  # its own array even when equal to b_ih's (clipping scales each in place)
    grads["x"] = (d2 @ W_ih).reshape(T, B, -1) if input_grad else None
    return grads


# ------------------------------------------------------------------------------------------------ RNN
def rnn_forward(x, h0, W_ih, W_hh, b_ih=None, b_hh=None, *, nonlinearity: str = "tanh"):
    """The Elman RNN, as ``nn.RNN``:  h_t = φ(x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh),  φ = tanh or ReLU.

    x: (T, B, I), h0: (B, H), W_ih: (H, I), W_hh: (H, H), b_ih, b_hh: (H,) or None.
    Returns (out, h_n), cache with out: (T, B, H), the h_t of every step, and h_n = out[T−1].
    """
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, got {nonlinearity!r}")
    T, B, _ = x.shape
    H = W_hh.shape[1]
    a = _input_projection(x, W_ih, b_ih, b_hh)  # (T, B, H): the pre-activations, the recurrent term added below
    hs = np.empty((T + 1, B, H), dtype=a.dtype)  # hs[0] = h0, hs[t + 1] = h_t
    hs[0] = h0
    W_hhT = np.ascontiguousarray(W_hh.T)
    for t in range(T):
        a[t] += hs[t] @ W_hhT
        if nonlinearity == "tanh":
            np.tanh(a[t], out=hs[t + 1])
        else:
            np.maximum(a[t], 0, out=hs[t + 1])
    out = hs[1:]
    inputs = {"b_ih": b_ih, "b_hh": b_hh}
    return (out, out[-1]), (x, hs, W_ih, W_hh, inputs, nonlinearity)


def rnn_backward(dout, dh_n, cache, *, input_grad: bool = True) -> dict:
    """dout = ∂E/∂out (T, B, H), dh_n = ∂E/∂h_n (B, H) or None → {"x", "h0", "W_ih", "W_hh", "b_ih", "b_hh", "h"}.

    With a_t the pre-activation and h_t = φ(a_t), going backwards from t = T − 1:

        ∂E/∂h_t = dout_t + ∂E/∂a_{t+1}·W_hh        (the second term starts as ∂E/∂h_n at t = T − 1)
        ∂E/∂a_t = ∂E/∂h_t ⊙ φ′(a_t)                 φ′ = 1 − h_t² (tanh), [h_t > 0] (ReLU)
        ∂E/∂h_{t−1} gets ∂E/∂a_t·W_hh; at t = 0 that is ∂E/∂h0.

    Then, summed over the steps: ∂E/∂W_ih = Σ_t ∂E/∂a_tᵀ·x_t, ∂E/∂W_hh = Σ_t ∂E/∂a_tᵀ·h_{t−1},
    ∂E/∂b_ih = ∂E/∂b_hh = Σ_t Σ_batch ∂E/∂a_t, ∂E/∂x_t = ∂E/∂a_t·W_ih.
    """
    x, hs, W_ih, W_hh, inputs, nonlinearity = cache
    out = hs[1:]
    # φ′ for every step at once, from the outputs: one pass over (T, B, H) instead of T small ones
    dphi = 1 - out * out if nonlinearity == "tanh" else (out > 0).astype(out.dtype)
    delta = np.empty_like(out)  # ∂E/∂a_t
    dH = np.empty_like(out)  # ∂E/∂h_t
    dh_rec = np.zeros_like(hs[0]) if dh_n is None else np.array(dh_n, dtype=out.dtype)  # from step t + 1
    for t in range(out.shape[0] - 1, -1, -1):
        np.add(dout[t], dh_rec, out=dH[t])
        np.multiply(dH[t], dphi[t], out=delta[t])
        dh_rec = delta[t] @ W_hh
    grads = _weight_grads(delta, inputs, W_ih, x, hs[:-1], input_grad)
    grads.update(h0=dh_rec, h=dH, gates=delta)
    return grads


# ----------------------------------------------------------------------------------------------- LSTM
def lstm_forward(x, h0, c0, W_ih, W_hh, b_ih=None, b_hh=None):
    """The LSTM (Hochreiter & Schmidhuber 1997, with a forget gate), as ``nn.LSTM``. Per step, the gates'
    pre-activations a_t = x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh (B, 4H) split into row blocks i, f, g, o:

        i_t = σ(a_i)   f_t = σ(a_f)   g_t = tanh(a_g)   o_t = σ(a_o)        input, forget, cell, output
        c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                                      the cell state
        h_t = o_t ⊙ tanh(c_t)                                                the hidden state, the output

    x: (T, B, I), h0, c0: (B, H), W_ih: (4H, I), W_hh: (4H, H), b_ih, b_hh: (4H,) or None.
    Returns (out, h_n, c_n), cache; out: (T, B, H). σ is ``sigmoid_`` (no overflow for large |a|).
    """
    T, B, _ = x.shape
    H = W_hh.shape[1]
    gates = _input_projection(x, W_ih, b_ih, b_hh)  # (T, B, 4H): a_t, then overwritten by i, f, g, o
    hs = np.empty((T + 1, B, H), dtype=gates.dtype)  # hs[t + 1] = h_t, cs[t + 1] = c_t
    cs = np.empty((T + 1, B, H), dtype=gates.dtype)
    tanh_c = np.empty((T, B, H), dtype=gates.dtype)
    hs[0], cs[0] = h0, c0
    W_hhT = np.ascontiguousarray(W_hh.T)
    hh = np.empty((B, 4 * H), dtype=gates.dtype)  # h_{t−1}·W_hhᵀ, reused every step
    for t in range(T):
        a = gates[t]
        a += np.matmul(hs[t], W_hhT, out=hh)  # all four gates in one product
        sigmoid_(a[:, :2 * H])  # i, f
        np.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])  # g
        sigmoid_(a[:, 3 * H:])  # o
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        np.multiply(f, cs[t], out=cs[t + 1])
        cs[t + 1] += i * g
        np.tanh(cs[t + 1], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=hs[t + 1])
    inputs = {"b_ih": b_ih, "b_hh": b_hh}
    return (hs[1:], hs[-1], cs[-1]), (x, hs, cs, gates, tanh_c, W_ih, W_hh, inputs)


def lstm_gate_derivatives(gates):
    """The gates' activation derivatives from their values, every step at once: (T, B, 4H) → (T, B, 4H),
    σ′ = σ(1 − σ) for i, f, o and tanh′ = 1 − g² for g (one pass over all steps, not T small ones)."""
    H = gates.shape[-1] // 4
    dact = gates * (1 - gates)
    dact[..., 2 * H:3 * H] = 1 - gates[..., 2 * H:3 * H] ** 2
    return dact


def lstm_backward(dout, dh_n, dc_n, cache, *, input_grad: bool = True) -> dict:
    """dout = ∂E/∂out (T, B, H); dh_n, dc_n = ∂E/∂h_n, ∂E/∂c_n (B, H) or None
    → {"x", "h0", "c0", "W_ih", "W_hh", "b_ih", "b_hh", "h"}.

    c_t reaches E through h_t and through c_{t+1} = f_{t+1} ⊙ c_t + …, so going backwards from t = T − 1
    (dh and dc start as ∂E/∂h_n and ∂E/∂c_n):

        ∂E/∂h_t = dout_t + dh                                 dh: what step t + 1 sends back through W_hh
        ∂E/∂c_t = dc + ∂E/∂h_t ⊙ o_t ⊙ (1 − tanh²(c_t))       dc: ∂E/∂c_t through c_{t+1}, = ∂E/∂c_{t+1} ⊙ f_{t+1}

    From c_t = f ⊙ c_{t−1} + i ⊙ g and h_t = o ⊙ tanh(c_t), the gates' gradients, then through their
    activations (σ′ = σ(1 − σ), tanh′ = 1 − tanh²) to the pre-activations δ_t = ∂E/∂a_t (B, 4H):

        ∂E/∂i = ∂E/∂c_t ⊙ g_t         δ_i = ∂E/∂i ⊙ i_t(1 − i_t)
        ∂E/∂f = ∂E/∂c_t ⊙ c_{t−1}     δ_f = ∂E/∂f ⊙ f_t(1 − f_t)      (c_{t−1}, the state the gate forgets)
        ∂E/∂g = ∂E/∂c_t ⊙ i_t         δ_g = ∂E/∂g ⊙ (1 − g_t²)
        ∂E/∂o = ∂E/∂h_t ⊙ tanh(c_t)   δ_o = ∂E/∂o ⊙ o_t(1 − o_t)

    and what goes on to step t − 1:  dh = δ_t·W_hh (B, H),  dc = ∂E/∂c_t ⊙ f_t. After step 0 they are
    ∂E/∂h0 and ∂E/∂c0. The weights: ∂E/∂W_ih = Σ_t δ_tᵀ·x_t, ∂E/∂W_hh = Σ_t δ_tᵀ·h_{t−1},
    ∂E/∂b_ih = ∂E/∂b_hh = Σ_t Σ_batch δ_t, ∂E/∂x_t = δ_t·W_ih.
    """
    x, hs, cs, gates, tanh_c, W_ih, W_hh, inputs = cache
    T, B, H = tanh_c.shape
    dact = lstm_gate_derivatives(gates)
    dh_dc = gates[:, :, 3 * H:] * (1 - tanh_c * tanh_c)  # ∂h_t/∂c_t = o_t ⊙ (1 − tanh²(c_t)), every step at once
    delta = np.empty_like(gates)  # δ_t, (T, B, 4H)
    dH = np.empty_like(tanh_c)  # ∂E/∂h_t
    dh = np.zeros((B, H), dtype=gates.dtype) if dh_n is None else np.array(dh_n, dtype=gates.dtype)
    dc = np.zeros((B, H), dtype=gates.dtype) if dc_n is None else np.array(dc_n, dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        a, d = gates[t], delta[t]
        np.add(dout[t], dh, out=dH[t])
        dc += dH[t] * dh_dc[t]  # now ∂E/∂c_t
        np.multiply(dc, a[:, 2 * H:3 * H], out=d[:, :H])  # ∂E/∂i = ∂E/∂c_t ⊙ g
        np.multiply(dc, cs[t], out=d[:, H:2 * H])  # ∂E/∂f = ∂E/∂c_t ⊙ c_{t−1}
        np.multiply(dc, a[:, :H], out=d[:, 2 * H:3 * H])  # ∂E/∂g = ∂E/∂c_t ⊙ i
        np.multiply(dH[t], tanh_c[t], out=d[:, 3 * H:])  # ∂E/∂o = ∂E/∂h_t ⊙ tanh(c_t)
        d *= dact[t]  # through the activations: δ_t
        dc *= a[:, H:2 * H]  # ∂E/∂c_{t−1} through c_t = f ⊙ c_{t−1} + …
        dh = d @ W_hh  # ∂E/∂h_{t−1} through the four gates of step t
    grads = _weight_grads(delta, inputs, W_ih, x, hs[:-1], input_grad)
    grads.update(h0=dh, c0=dc, h=dH, gates=delta)
    return grads


# ------------------------------------------------------------------------------------------------ GRU
def gru_forward(x, h0, W_ih, W_hh, b_ih=None, b_hh=None):
    """The GRU (Cho et al. 2014), as ``nn.GRU``, gates r, z, n as row blocks of H, the hidden bias b_hn inside the
    reset product (torch's and cuDNN's placement; the paper puts r before the product with W_hn):

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)                       reset gate
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)                       update gate
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))            the candidate
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}  = n_t + z_t ⊙ (h_{t−1} − n_t)

    With the input projection p = x·W_ihᵀ + b_ih (T, B, 3H) and the hidden one q = h_{t−1}·W_hhᵀ + b_hh (B, 3H),
    r, z = σ(p_rz + q_rz) and n = tanh(p_n + r ⊙ q_n). x: (T, B, I), h0: (B, H), W_ih: (3H, I), W_hh: (3H, H).
    Returns (out, h_n), cache; out: (T, B, H).
    """
    T, B, _ = x.shape
    H = W_hh.shape[1]
    p = _input_projection(x, W_ih, b_ih)  # (T, B, 3H)
    gates = np.empty_like(p)  # r, z, n of every step
    q_n = np.empty((T, B, H), dtype=p.dtype)  # W_hn h_{t−1} + b_hn, which ∂E/∂r needs
    hs = np.empty((T + 1, B, H), dtype=p.dtype)
    hs[0] = h0
    W_hhT = np.ascontiguousarray(W_hh.T)
    for t in range(T):
        q = hs[t] @ W_hhT
        if b_hh is not None:
            q += b_hh
        g = gates[t]
        np.add(p[t, :, :2 * H], q[:, :2 * H], out=g[:, :2 * H])
        sigmoid_(g[:, :2 * H])  # r, z
        r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        q_n[t] = q[:, 2 * H:]
        np.multiply(r, q_n[t], out=n)
        n += p[t, :, 2 * H:]
        np.tanh(n, out=n)
        np.subtract(hs[t], n, out=hs[t + 1])  # h_t = n + z ⊙ (h_{t−1} − n)
        hs[t + 1] *= z
        hs[t + 1] += n
    inputs = {"b_ih": b_ih, "b_hh": b_hh}
    return (hs[1:], hs[-1]), (x, hs, gates, q_n, W_ih, W_hh, inputs)


def gru_backward(dout, dh_n, cache, *, input_grad: bool = True) -> dict:
    """dout = ∂E/∂out (T, B, H), dh_n = ∂E/∂h_n (B, H) or None → {"x", "h0", "W_ih", "W_hh", "b_ih", "b_hh", "h"}.

    Going backwards from t = T − 1, with ∂E/∂h_t = dout_t + dh (dh from step t + 1, at first ∂E/∂h_n), from
    h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}:

        ∂E/∂n = ∂E/∂h_t ⊙ (1 − z)               δ_n = ∂E/∂n ⊙ (1 − n²)           (n's pre-activation)
        ∂E/∂z = ∂E/∂h_t ⊙ (h_{t−1} − n)         δ_z = ∂E/∂z ⊙ z(1 − z)
        ∂E/∂r = δ_n ⊙ q_n                       δ_r = ∂E/∂r ⊙ r(1 − r)           (n's pre-activation has r ⊙ q_n)

    The input projection p gets δ^p = [δ_r, δ_z, δ_n]; the hidden projection q gets δ^q = [δ_r, δ_z, δ_n ⊙ r]
    (q_n enters through the reset product). h_{t−1} reaches E directly (z ⊙ h_{t−1}) and through q:

        dh = ∂E/∂h_t ⊙ z + δ^q_t·W_hh,   which after step 0 is ∂E/∂h0.

    The weights: ∂E/∂W_ih = Σ_t δ^pᵀ_t·x_t, ∂E/∂b_ih = Σ δ^p, ∂E/∂W_hh = Σ_t δ^qᵀ_t·h_{t−1}, ∂E/∂b_hh = Σ δ^q,
    ∂E/∂x_t = δ^p_t·W_ih.
    """
    x, hs, gates, q_n, W_ih, W_hh, inputs = cache
    T, B, H = q_n.shape
    h_prev = hs[:-1]
    r, z, n = gates[:, :, :H], gates[:, :, H:2 * H], gates[:, :, 2 * H:]
    # every step at once: the activations' derivatives, ∂h_t/∂n = 1 − z and ∂h_t/∂z = h_{t−1} − n
    dn_pre = (1 - z) * (1 - n * n)  # ∂h_t/∂(n's pre-activation)
    dz_pre = (h_prev - n) * z * (1 - z)  # ∂h_t/∂(z's pre-activation)
    dr_pre = q_n * r * (1 - r)  # ∂(n's pre-activation)/∂(r's pre-activation)
    delta_p = np.empty_like(gates)  # δ^p_t (T, B, 3H)
    delta_q = np.empty_like(gates)  # δ^q_t
    dH = np.empty_like(q_n)
    dh = np.zeros((B, H), dtype=gates.dtype) if dh_n is None else np.array(dh_n, dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        dp, dq = delta_p[t], delta_q[t]
        np.add(dout[t], dh, out=dH[t])
        np.multiply(dH[t], dn_pre[t], out=dp[:, 2 * H:])  # δ_n
        np.multiply(dH[t], dz_pre[t], out=dp[:, H:2 * H])  # δ_z
        np.multiply(dp[:, 2 * H:], dr_pre[t], out=dp[:, :H])  # δ_r
        dq[:, :2 * H] = dp[:, :2 * H]
        np.multiply(dp[:, 2 * H:], r[t], out=dq[:, 2 * H:])  # δ_n ⊙ r
        dh = dq @ W_hh
        dh += dH[t] * z[t]
    grads = _weight_grads(delta_p, inputs, W_ih, x, h_prev, input_grad, delta_hh=delta_q)
    grads.update(h0=dh, h=dH, gates=delta_p)
    return grads
