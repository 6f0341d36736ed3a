"""A fully connected network trained by hand-written backpropagation.

Notation (one layer l = 1 … L, a mini-batch of B rows at once):

    z_l = a_{l−1} · W_lᵀ + b_l        W_l: (n_l, n_{l−1}),  a_{l−1}: (B, n_{l−1})
    a_l = f(z_l)                      f: the hidden activation (g for the output layer)

Backward, by the chain rule, starting from δ_L = ∂E/∂z_L given by the loss:

    ∂E/∂W_l = δ_lᵀ · a_{l−1}           (sum over the batch is the matrix product)
    ∂E/∂b_l = Σ_batch δ_l
    δ_{l−1} = (δ_l · W_l) ⊙ f'(z_{l−1})   (each hidden unit sums over the next layer's units)

Parameters are stored in a dict under PyTorch's names (``layers.0.weight``,
``layers.0.bias``, …) with ``nn.Linear``'s (out, in) layout, so they move to
and from ``torch_ref`` with no renaming.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations import get_activation
from .init import init_params
from .losses import DEFAULT_OUTPUT_ACTIVATION, get_loss

DTYPES = {"float32": np.float32, "float64": np.float64}


def as_dtype(dtype) -> type:
    """'float32' / 'float64' / np.float32 / np.float64 → the NumPy scalar type."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
    return DTYPES[name]


def check_layer_sizes(layer_sizes) -> list[int]:
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}")
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in sizes):
        raise ValueError(f"layer_sizes must be positive integers, got {sizes}")
    return [int(n) for n in sizes]


class Trace(NamedTuple):
    """What the forward pass keeps for the backward pass (CS231n's "cache")."""

    inputs: list  # a_{l−1}, the input of each layer, (B, n_{l−1})
    pre_activations: list  # z_l of each layer, (B, n_l)
    output: np.ndarray  # a_L = g(z_L), (B, n_L)


class MLP:
    """A multi-layer perceptron with every gradient derived by hand.

    Args:
        layer_sizes: e.g. ``[784, 16, 16, 10]``: input width, hidden widths, output width.
        activation: hidden-layer activation, a name from ``manual.activations.ACTIVATIONS``.
        loss: ``"mse"`` (½Σ squared error, sigmoid outputs) or ``"cross_entropy"`` (softmax).
        init: ``"normal"``, ``"xavier"``, ``"he"`` or ``"pytorch"`` (see ``manual.init``).
        seed: seeds the initial parameters.
        dtype: ``float64`` for verification, ``float32`` for speed.
        output_activation: the output units' activation; default sigmoid for mse,
            identity (logits into softmax) for cross-entropy.
    """

    def __init__(self, layer_sizes, activation="sigmoid", loss="mse", init="normal", seed=0,
                 dtype=np.float64, output_activation=None):
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.activation = get_activation(activation)
        self.loss_fn = get_loss(loss)
        self.output_activation = get_activation(output_activation or DEFAULT_OUTPUT_ACTIVATION[loss])
        self.loss_name, self.init, self.seed = loss, init, seed
        self.dtype = as_dtype(dtype)
        self.params = init_params(self.layer_sizes, init, seed, self.dtype)

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def weight(self, l: int) -> np.ndarray:
        return self.params[f"layers.{l}.weight"]

    def bias(self, l: int) -> np.ndarray:
        return self.params[f"layers.{l}.bias"]

    # ---------------------------------------------------------------- forward
    def trace(self, X, *, validate: bool = True) -> Trace:
        """Forward pass keeping every layer's input and pre-activation (``validate``: see ``loss_and_grads``)."""
        a = self._check_inputs(X) if validate else X
        inputs, zs = [], []
        n_layers = self.n_layers
        for l in range(n_layers):
            f = self.activation if l < n_layers - 1 else self.output_activation
            z = a @ self.weight(l).T + self.bias(l)  # z_l = a_{l−1}·W_lᵀ + b_l
            inputs.append(a)
            zs.append(z)
            a = f.f(z)  # a_l = f(z_l)
        return Trace(inputs, zs, a)

    def forward(self, X) -> np.ndarray:
        """Output activations a_L, shape (B, n_out): sigmoid outputs for mse, logits for cross-entropy."""
        return self.trace(X).output

    def predict(self, X) -> np.ndarray:
        """Predicted class index per row."""
        return self.forward(X).argmax(axis=1)

    def loss(self, X, y) -> float:
        trace = self.trace(X)
        return self.loss_fn(trace.pre_activations[-1], self._check_labels(y, len(trace.output)),
                            self.output_activation).loss

    # --------------------------------------------------------------- backward
    def loss_and_grads(self, X, y, *, validate: bool = True) -> tuple[float, dict]:
        """Batch-mean loss and ∂E/∂θ for every parameter, keyed like ``state_dict()``.

        ``validate=False`` skips the checks of ``X`` and ``y`` for a batch taken from
        arrays that ``check_batch`` has already accepted (the training loop's case:
        the checks would cost as much as a small mini-batch's arithmetic).
        """
        trace = self.trace(X, validate=validate)
        if validate:
            y = self._check_labels(y, len(trace.output))
        # δ_L = ∂E/∂z_L; f'(z_{l−1}) below comes from a_{l−1} = f(z_{l−1}) where f allows it
        loss, delta = self.loss_fn(trace.pre_activations[-1], y, self.output_activation, trace.output)
        grads = {}
        for l in reversed(range(self.n_layers)):
            grads[f"layers.{l}.weight"] = delta.T @ trace.inputs[l]  # ∂E/∂W_l = δ_lᵀ·a_{l−1}
            grads[f"layers.{l}.bias"] = delta.sum(axis=0)  # ∂E/∂b_l = Σ_batch δ_l
            if l > 0:  # δ_{l−1} = (δ_l·W_l) ⊙ f'(z_{l−1})
                delta = (delta @ self.weight(l)) * self.activation.derivative(trace.pre_activations[l - 1],
                                                                               trace.inputs[l])
        return loss, {k: grads[k] for k in self.params}  # in state_dict order

    # ------------------------------------------------------------ parameters
    def state_dict(self) -> dict:
        """A copy of every parameter, ``layers.{i}.weight`` (out, in) and ``layers.{i}.bias`` (out,)."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state: dict) -> None:
        """Copy parameters in (cast to this network's dtype); keys and shapes must match exactly."""
        check_state_dict(state, {k: v.shape for k, v in self.params.items()})
        for k in self.params:
            self.params[k][...] = np.asarray(state[k], dtype=self.dtype)

    # ------------------------------------------------------------ validation
    def check_batch(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """``X`` and ``y`` checked and converted (``X`` to this network's dtype), e.g. a whole split at once."""
        X = self._check_inputs(X)
        return X, self._check_labels(y, len(X))

    def _check_inputs(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array (batch, {self.layer_sizes[0]}), got shape {X.shape}")
        if X.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"X has {X.shape[1]} features per row but the input layer has "
                             f"{self.layer_sizes[0]} units")
        if not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"X must be numeric, got dtype {X.dtype}")
        X = X.astype(self.dtype, copy=False)
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values")
        return X

    def _check_labels(self, y, batch: int) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != batch:
            raise ValueError(f"y must be {batch} integer class indices (shape ({batch},)), got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
        n_classes = self.layer_sizes[-1]
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            bad = y[(y < 0) | (y >= n_classes)][0]
            raise ValueError(f"label {bad} is outside [0, {n_classes}) for a network with {n_classes} outputs")
        return y


def check_state_dict(state: dict, expected_shapes: dict) -> None:
    """Refuse a state dict with missing keys, extra keys or wrong shapes, naming the key and both shapes."""
    missing = [k for k in expected_shapes if k not in state]
    extra = [k for k in state if k not in expected_shapes]
    if missing:
        raise ValueError(f"state_dict is missing key(s) {missing}; expected keys {list(expected_shapes)}")
    if extra:
        raise ValueError(f"state_dict has unexpected key(s) {extra}; expected keys {list(expected_shapes)}")
    for k, shape in expected_shapes.items():
        got = tuple(np.shape(state[k]))
        if got != tuple(shape):
            raise ValueError(f"state_dict[{k!r}] has shape {got} but this network expects {tuple(shape)}")
