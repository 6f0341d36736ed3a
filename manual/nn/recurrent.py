"""``RNN``, ``LSTM``, ``GRU`` and ``LastStep``, as torch.nn's (the equations and BPTT: ``manual.recurrent``).

    lstm = LSTM(28, 128)                          # batch_first: x is (B, T, 28)
    out, (h_n, c_n) = lstm.forward(x)             # out (B, T, 128); h_n, c_n (num_layers, B, 128)
    dx = lstm.backward(dout)                      # dout = ∂E/∂out, or (∂E/∂out, (∂E/∂h_n, ∂E/∂c_n))

The parameters carry torch's names, layouts and order, layer by layer: ``weight_ih_l0`` (G·H, I),
``weight_hh_l0`` (G·H, H), ``bias_ih_l0``, ``bias_hh_l0`` (G·H,), then ``weight_ih_l1`` (G·H, H) … (G = 1, 4,
3 gates for RNN, LSTM, GRU). ``num_layers`` > 1 stacks layers: layer l + 1 reads layer l's output sequence.

``backward`` takes the gradient in the shape of what ``forward`` returned: ∂E/∂output alone, or the tuple
(∂E/∂output, ∂E/∂state) in which either part may be None (it received no gradient). It returns ∂E/∂x and
keeps, on the module, ``grad_hx`` (∂E/∂ of the initial state, in hx's shape, when one was given), ``grad_h``
(∂E/∂h_t of every layer and step, (num_layers, B, T, H)) and ``grad_gates`` (∂E/∂ of every step's gate
pre-activations, (num_layers, B, T, G·H)).

``LastStep`` keeps output[:, −1] of a recurrent layer, so that a linear layer can read the last hidden state:
``Sequential(LSTM(28, 128), LastStep(), Linear(128, 10))`` reads an MNIST image row by row.
"""
from __future__ import annotations

import numpy as np

from manual import recurrent
from manual.init import INITS, draw_weight_bias
from manual.nn.init import default_generator
from manual.nn.module import Module


class _Recurrent(Module):
    """What RNN, LSTM and GRU share: the parameters, the layer loop, the state's shapes, the torch spec.

    A subclass sets ``GATES`` and ``STATES`` (1 for h, 2 for LSTM's h and c) and implements ``_layer_forward``
    and ``_layer_backward`` with the cell of ``manual.recurrent``; every array there is time-major.
    """

    GATES = 1
    STATES = 1
    TORCH_NAME = "RNN"  # the torch.nn class (a subclass with its own backward keeps its parent's)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dtype=np.float64):
        super().__init__()
        name = type(self).__name__
        for what, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name}: {what} must be an integer ≥ 1, got {value!r}")
        if batch_first is not True:
            raise ValueError(f"{name} supports only batch_first=True: inputs (batch, time, features)")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.has_bias, self.batch_first = bool(bias), True
        rows = self.GATES * self.hidden_size
        for layer in range(self.num_layers):
            columns = self.input_size if layer == 0 else self.hidden_size
            self.register_parameter(f"weight_ih_l{layer}", np.zeros((rows, columns), dtype=dtype))
            self.register_parameter(f"weight_hh_l{layer}", np.zeros((rows, self.hidden_size), dtype=dtype))
            if self.has_bias:
                self.register_parameter(f"bias_ih_l{layer}", np.zeros(rows, dtype=dtype))
                self.register_parameter(f"bias_hh_l{layer}", np.zeros(rows, dtype=dtype))
        self.grad_hx = None
        self.reset_parameters(default_generator(), "pytorch")

    def reset_parameters(self, rng, init):
        """Each tensor in turn (torch's order), drawn in float64 and cast: "pytorch" U(−1/√H, 1/√H) for every
        weight and bias (``nn.LSTM``'s default); "normal" N(0, 1); "xavier" and "he" with fan_in the weight's
        columns and fan_out its rows (``manual.init``), biases 0."""
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; valid inits: {', '.join(INITS)}")
        bound = 1.0 / np.sqrt(self.hidden_size)
        for name, value in self._parameters.items():
            if init == "pytorch":
                value[...] = rng.uniform(-bound, bound, value.shape)
            elif init == "normal":
                value[...] = rng.standard_normal(value.shape)
            elif value.ndim == 2:
                value[...] = draw_weight_bias(rng, value.shape, value.shape[1], value.shape[0], init)[0]
            else:
                value[...] = 0

    def _layer_params(self, layer: int):
        """(W_ih, W_hh, b_ih, b_hh) of one layer; the biases None without bias."""
        p = self._parameters
        return (p[f"weight_ih_l{layer}"], p[f"weight_hh_l{layer}"], p.get(f"bias_ih_l{layer}"),
                p.get(f"bias_hh_l{layer}"))

    # ------------------------------------------------------------------ the state's shapes
    def _initial_states(self, hx, batch: int, dtype) -> list:
        """hx (None, (L, B, H), or LSTM's (h0, c0)) as one tuple of (B, H) arrays per layer."""
        shape = (self.num_layers, batch, self.hidden_size)
        if hx is None:
            zeros = np.zeros((self.STATES, *shape), dtype=dtype)
            return [tuple(state[layer] for state in zeros) for layer in range(self.num_layers)]
        parts = (hx,) if self.STATES == 1 else hx
        if self.STATES == 2 and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise ValueError(f"{type(self).__name__}'s initial state is a pair (h0, c0), each {shape}")
        parts = [np.asarray(part, dtype=dtype) for part in parts]
        for part in parts:
            if part.shape != shape:
                raise ValueError(f"{type(self).__name__}: the initial state must have shape (num_layers, batch, "
                                 f"hidden_size) = {shape}, got {part.shape}")
        return [tuple(part[layer] for part in parts) for layer in range(self.num_layers)]

    def _pack_state(self, states: list):
        """Per-layer tuples of (B, H) arrays → (L, B, H), or LSTM's pair of them (torch's return shape)."""
        stacked = [np.stack([layer[k] for layer in states]) for k in range(self.STATES)]
        return stacked[0] if self.STATES == 1 else tuple(stacked)

    def _state_grads(self, dstate, batch: int, dtype) -> list:
        """∂E/∂(final state) in forward's return shape, None parts included, as per-layer tuples (None kept)."""
        parts = (dstate,) if self.STATES == 1 else (dstate if dstate is not None else (None, None))
        if self.STATES == 2 and not (isinstance(parts, (tuple, list)) and len(parts) == 2):
            raise ValueError(f"{type(self).__name__}: ∂E/∂state is a pair (∂E/∂h_n, ∂E/∂c_n) or None")
        shape = (self.num_layers, batch, self.hidden_size)
        arrays = []
        for part in parts:
            if part is not None:
                part = np.asarray(part, dtype=dtype)
                if part.shape != shape:
                    raise ValueError(f"{type(self).__name__}: ∂E/∂state has shape {shape}, got {part.shape}")
            arrays.append(part)
        return [tuple(None if a is None else a[layer] for a in arrays) for layer in range(self.num_layers)]

    # ------------------------------------------------------------------ forward and backward
    def forward(self, x, hx=None):
        """x: (B, T, input_size) → (output (B, T, H), h_n (L, B, H)); LSTM: (output, (h_n, c_n))."""
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"{type(self).__name__}({self.input_size}, {self.hidden_size}) takes (batch, time, "
                             f"{self.input_size}) inputs, got shape {x.shape}")
        if x.shape[1] < 1:
            raise ValueError(f"{type(self).__name__} needs at least one time step, got shape {x.shape}")
        dtype = self.dtype
        self.batch, self.had_hx = x.shape[0], hx is not None
        states = self._initial_states(hx, x.shape[0], dtype)
        seq = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=dtype)  # time-major (T, B, I)
        self.caches, finals = [], []
        for layer in range(self.num_layers):
            seq, final, cache = self._layer_forward(layer, seq, states[layer])
            self.caches.append(cache)
            finals.append(final)
        return seq.transpose(1, 0, 2), self._pack_state(finals)

    def backward(self, dout, input_grad=True):
        """dout = ∂E/∂output (B, T, H), or (∂E/∂output, ∂E/∂state) with None for a part that got no gradient
        → ∂E/∂x (B, T, input_size) (None if not ``input_grad``). Fills ``grads``, ``grad_h`` and ``grad_hx``."""
        dout, dstate = (dout if isinstance(dout, tuple) else (dout, None))
        dtype, T = self.dtype, self.caches[0][0].shape[0]
        shape = (self.batch, T, self.hidden_size)
        if dout is None:
            dseq = np.zeros((T, self.batch, self.hidden_size), dtype=dtype)
        else:
            dout = np.asarray(dout)
            if dout.shape != shape:
                raise ValueError(f"{type(self).__name__}: ∂E/∂output has the output's shape {shape}, got "
                                 f"{dout.shape}")
            dseq = np.ascontiguousarray(dout.transpose(1, 0, 2), dtype=dtype)
        dstates = self._state_grads(dstate, self.batch, dtype)
        self.grads, initial = {}, [None] * self.num_layers
        self._per_step = [None] * self.num_layers  # (∂E/∂h_t, ∂E/∂gates_t) of each layer, time-major
        for layer in range(self.num_layers - 1, -1, -1):
            grads = self._layer_backward(dseq, dstates[layer], self.caches[layer], input_grad or layer > 0)
            for ours, theirs in (("weight_ih", "W_ih"), ("weight_hh", "W_hh"), ("bias_ih", "b_ih"),
                                 ("bias_hh", "b_hh")):
                if theirs in grads:
                    self.grads[f"{ours}_l{layer}"] = grads[theirs]
            initial[layer] = tuple(grads[k] for k in ("h0", "c0")[:self.STATES])
            self._per_step[layer] = (grads["h"], grads["gates"])
            dseq = grads["x"]
        self.grads = {name: self.grads[name] for name in self._parameters}  # torch's order
        self.grad_hx = self._pack_state(initial) if self.had_hx else None
        return dseq.transpose(1, 0, 2) if input_grad else None

    @property
    def grad_h(self) -> np.ndarray:
        """∂E/∂h_t of every layer and step after backward, (num_layers, B, T, H) (copied out on request)."""
        return np.stack([h.transpose(1, 0, 2) for h, _ in self._per_step])

    @property
    def grad_gates(self) -> np.ndarray:
        """∂E/∂ of each step's gate pre-activations after backward, (num_layers, B, T, G·H)."""
        return np.stack([g.transpose(1, 0, 2) for _, g in self._per_step])

    # ------------------------------------------------------------------ shapes and torch
    def output_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[1] != self.input_size:
            raise ValueError(f"takes (time steps, {self.input_size}) per example, gets shape {tuple(input_shape)}")
        return (input_shape[0], self.hidden_size)

    def torch_spec(self):
        return self.TORCH_NAME, {"input_size": self.input_size, "hidden_size": self.hidden_size,
                                     "num_layers": self.num_layers, "bias": self.has_bias, "batch_first": True}

    def extra_repr(self):
        layers = f", num_layers={self.num_layers}" if self.num_layers > 1 else ""
        bias = "" if self.has_bias else ", bias=False"
        return f"{self.input_size}, {self.hidden_size}{layers}{bias}, batch_first=True"


class RNN(_Recurrent):
    """h_t = φ(x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh), φ = tanh or ReLU, as ``nn.RNN`` (``manual.recurrent``).

    forward(x, hx=None): x (B, T, I), hx (num_layers, B, H) or None (zeros) → (output (B, T, H), h_n).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = True, dtype=np.float64):
        if nonlinearity not in recurrent.NONLINEARITIES:
            raise ValueError(f"RNN: nonlinearity must be one of {', '.join(recurrent.NONLINEARITIES)}, got "
                             f"{nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dtype)

    def _layer_forward(self, layer, x, state):
        (out, h_n), cache = recurrent.rnn_forward(x, state[0], *self._layer_params(layer),
                                                  nonlinearity=self.nonlinearity)
        return out, (h_n,), cache

    def _layer_backward(self, dout, dstate, cache, input_grad):
        return recurrent.rnn_backward(dout, dstate[0], cache, input_grad=input_grad)

    def torch_spec(self):
        name, kwargs = super().torch_spec()
        return name, {**kwargs, "nonlinearity": self.nonlinearity}

    def extra_repr(self):
        return super().extra_repr() + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(_Recurrent):
    """Gates i, f, g, o (torch's order); c_t = f ⊙ c_{t−1} + i ⊙ g, h_t = o ⊙ tanh(c_t). As ``nn.LSTM``.

    forward(x, hx=None): x (B, T, I), hx a pair (h0, c0) of (num_layers, B, H) or None (zeros)
    → (output (B, T, H), (h_n, c_n)).
    """

    GATES, STATES, TORCH_NAME = 4, 2, "LSTM"

    def _layer_forward(self, layer, x, state):
        (out, h_n, c_n), cache = recurrent.lstm_forward(x, state[0], state[1], *self._layer_params(layer))
        return out, (h_n, c_n), cache

    def _layer_backward(self, dout, dstate, cache, input_grad):
        return recurrent.lstm_backward(dout, dstate[0], dstate[1], cache, input_grad=input_grad)


class GRU(_Recurrent):
    """Gates r, z, n (torch's order), the hidden bias inside the reset product; h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}.
    As ``nn.GRU``. forward(x, hx=None) → (output (B, T, H), h_n (num_layers, B, H))."""

    GATES, TORCH_NAME = 3, "GRU"

    def _layer_forward(self, layer, x, state):
        (out, h_n), cache = recurrent.gru_forward(x, state[0], *self._layer_params(layer))
        return out, (h_n,), cache

    def _layer_backward(self, dout, dstate, cache, input_grad):
        return recurrent.gru_backward(dout, dstate[0], cache, input_grad=input_grad)


class LastStep(Module):
    """A recurrent layer's output (B, T, H), or its whole (output, state) tuple → output[:, −1], (B, H).

    backward: ∂E/∂output is zero except at the last step, which gets dout; returned as (∂E/∂output, None) when
    the input was the tuple (the final state received no gradient here), as the array otherwise.
    """

    def forward(self, x):
        self.was_tuple = isinstance(x, tuple)
        out = np.asarray(x[0] if self.was_tuple else x)
        if out.ndim != 3:
            raise ValueError(f"LastStep takes a (batch, time, hidden) sequence, got shape {out.shape}")
        self.shape, self.dtype_in = out.shape, out.dtype
        return out[:, -1]

    def backward(self, dout, input_grad=True):
        self.grads = {}
        if not input_grad:
            return None
        dseq = np.zeros(self.shape, dtype=np.result_type(self.dtype_in, dout))
        dseq[:, -1] = dout
        return (dseq, None) if self.was_tuple else dseq

    def output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"keeps the last of (time steps, hidden) per example, gets shape {tuple(input_shape)}")
        return (input_shape[1],)

    def torch_spec(self):
        return "LastStep", {}
