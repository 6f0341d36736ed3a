"""A deliberately broken LSTM backward, and what ``experiments.gradcheck.recurrent.check_recurrent`` says about it.

The bug: the forget gate's gradient uses the new cell state c_t where the equations need the one it forgets,
c_{t−1} (c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t, so ∂c_t/∂f_t = c_{t−1}). ``python examples/broken_lstm.py`` prints:

    BrokenLSTM (3, 8, batch_first=True): FAILED (2784 comparisons)
      the error enters at t = 0: forget gate, all 8 units (∂E/∂(pre-activation) of step 0 when backpropagation starts there)
      weight_ih_l0, forget gate, all 8 units: wrong from t = 0 (max abs err 0.74, rel 0.13)
      bias_ih_l0, forget gate, all 8 units: wrong from t = 0 (max abs err 0.32, rel 0.049)
      bias_hh_l0, forget gate, all 8 units: wrong from t = 0 (max abs err 0.32, rel 0.049)
      input x, time steps 0–9: wrong from t = 0 (max abs err 0.069, rel 0.12)
      weight_ih_l0, input, cell and output gates, all 8 units: wrong from t = 1 (max abs err 0.073, rel 0.013)
      weight_hh_l0, forget gate, all 8 units: wrong from t = 1 (max abs err 0.1, rel 0.047)
      bias_ih_l0, input, cell and output gates, all 8 units: wrong from t = 1 (max abs err 0.045, rel 0.0068)
      bias_hh_l0, input, cell and output gates, all 8 units: wrong from t = 1 (max abs err 0.045, rel 0.0068)
      weight_hh_l0, input, cell and output gates, all 8 units: wrong from t = 2 (max abs err 0.016, rel 0.0073)
      step by step against autograd (∂E/∂h_t, and the gates' ∂E/∂(pre-activation) summed over the batch): wrong at 10 of 10 (layer, step)s, from the last back:
        layer 0, t = 9: ‖∂E/∂h_t‖ manual 8.541, autograd 8.541, rel err 0; gates rel err 0.19
        layer 0, t = 8: ‖∂E/∂h_t‖ manual 6.077, autograd 6.064, rel err 0.037; gates rel err 0.1
        layer 0, t = 7: ‖∂E/∂h_t‖ manual 7.285, autograd 7.278, rel err 0.013; gates rel err 0.11
        layer 0, t = 6: ‖∂E/∂h_t‖ manual 5.54, autograd 5.53, rel err 0.021; gates rel err 0.18
        layer 0, t = 5: ‖∂E/∂h_t‖ manual 6.516, autograd 6.546, rel err 0.019; gates rel err 0.06
        layer 0, t = 4: ‖∂E/∂h_t‖ manual 5.336, autograd 5.333, rel err 0.013; gates rel err 0.34
        layer 0, t = 3: ‖∂E/∂h_t‖ manual 5.568, autograd 5.537, rel err 0.02; gates rel err 0.15
        layer 0, t = 2: ‖∂E/∂h_t‖ manual 5.441, autograd 5.444, rel err 0.012; gates rel err 0.073
        … 2 more
      finite differences: weight_ih_l0: a random directional derivative is -23.425 by backward, -22.6562 by finite differences (allowed 4.8e-06)
      finite differences: weight_hh_l0: a random directional derivative is -3.70157 by backward, -3.16472 by finite differences (allowed 1.8e-06)
      finite differences: bias_ih_l0: a random directional derivative is -10.5996 by backward, -10.4256 by finite differences (allowed 2.9e-06)
      finite differences: bias_hh_l0: a random directional derivative is -5.92266 by backward, -6.32822 by finite differences (allowed 2.2e-06)
      (float64 copy; B = 4, T = 10, H = 8, 1 layer(s), zero initial state; random ∂E/∂output and ∂E/∂state, seed 0; against autograd of torch's LSTM (tolerance 1e-08 of each tensor's largest entry; rel: the largest error divided by that entry); time located by truncating the objective to the outputs t ≤ s)
      (finite differences: 2 random directions per parameter, step 6.1e-06·max(1, max|θ|), relative tolerance 1.5e-07 plus the rounding noise of a T-step sequence (64·ε·Σ_t (t+1)·|out_t·dout_t| / step: grows like T²))

How to read it. The first line says where the error enters: in the forget gate, at t = 0, the first step
whose gradient backpropagation computes (there c_{−1} = 0 but c_0 is not). The tensor lines say when each
gradient turns wrong as the objective takes in more steps: ``weight_ih_l0``'s forget rows and the biases at
t = 0; ``weight_hh_l0``'s forget rows one step later (at t = 0 its gradient is multiplied by h_{−1} = 0, which
hides the error); the other three gates from t = 1 in ``weight_ih_l0`` and t = 2 in ``weight_hh_l0``, because
∂E/∂h_{t−1} = δ_t·W_hh carries the wrong δ_f into every gate of the step before. Step by step, ∂E/∂h_9 is right
(nothing has come back yet) and the gates of step 9 already are not; every earlier ∂E/∂h_t is wrong.
"""
from __future__ import annotations

import numpy as np

import manual.nn
from manual.recurrent import _weight_grads, lstm_gate_derivatives


def broken_lstm_backward(dout, dh_n, dc_n, cache, *, input_grad=True):
    """``manual.recurrent.lstm_backward`` with one character wrong: ∂E/∂f = ∂E/∂c_t ⊙ c_t (should be c_{t−1})."""
    x, hs, cs, gates, tanh_c, W_ih, W_hh, inputs = cache
    T, B, H = tanh_c.shape
    dact = lstm_gate_derivatives(gates)
    dh_dc = gates[:, :, 3 * H:] * (1 - tanh_c * tanh_c)
    delta, dH = np.empty_like(gates), np.empty_like(tanh_c)
    dh = np.zeros((B, H)) if dh_n is None else np.array(dh_n)
    dc = np.zeros((B, H)) if dc_n is None else np.array(dc_n)
    for t in range(T - 1, -1, -1):
        a, d = gates[t], delta[t]
        dH[t] = dout[t] + dh
        dc += dH[t] * dh_dc[t]
        d[:, :H] = dc * a[:, 2 * H:3 * H]
        d[:, H:2 * H] = dc * cs[t + 1]  # THE BUG: cs[t + 1] is c_t; the forget gate multiplies c_{t−1} = cs[t]
        d[:, 2 * H:3 * H] = dc * a[:, :H]
        d[:, 3 * H:] = dH[t] * tanh_c[t]
        d *= dact[t]
        dc *= a[:, H:2 * H]
        dh = d @ W_hh
    grads = _weight_grads(delta, inputs, W_ih, x, hs[:-1], input_grad)
    grads.update(h0=dh, c0=dc, h=dH, gates=delta)
    return grads


class BrokenLSTM(manual.nn.LSTM):
    """``manual.nn.LSTM`` whose backward is ``broken_lstm_backward``."""

    def _layer_backward(self, dout, dstate, cache, input_grad):
        return broken_lstm_backward(dout, dstate[0], dstate[1], cache, input_grad=input_grad)


def main() -> str:
    from experiments.gradcheck.recurrent import check_recurrent

    manual.nn.manual_seed(0)
    lstm = BrokenLSTM(3, 8)
    x = np.random.default_rng(0).standard_normal((4, 10, 3))
    return str(check_recurrent(lstm, x))


if __name__ == "__main__":
    print(main())
