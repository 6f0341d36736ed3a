"""A fully connected network trained by hand-written backpropagation.

Notation (one layer l = 1 … L, a mini-batch of B rows at once):

    z_l = a_{l−1} · W_lᵀ + b_l        W_l: (n_l, n_{l−1}),  a_{l−1}: (B, n_{l−1})
    a_l = f(z_l)                      f: the hidden activation (g for the output layer)

With ``batch_norm=True`` each hidden layer normalises z_l over the batch before f (the original
paper's order): a_l = f(BN(z_l)) with BN's own γ_l, β_l.

The network is a sequence of layers, each a forward/backward pair from ``manual.layers``
(linear, batch norm, activation). The forward pass runs them in order and keeps each one's cache;
the backward pass is the chain rule, written once: starting from δ_L = ∂E/∂z_L given by the loss,
every layer, last to first, turns ∂E/∂(its output) into ∂E/∂(its input) and ∂E/∂(its parameters):

    linear:       ∂E/∂W_l = δ_lᵀ · a_{l−1},   ∂E/∂b_l = Σ_batch δ_l,   ∂E/∂a_{l−1} = δ_l · W_l
    activation:   δ_{l−1} = ∂E/∂a_{l−1} ⊙ f'(z_{l−1})
    batch norm:   ∂E/∂γ, ∂E/∂β and ∂E/∂z through the batch mean and variance (``layers.batchnorm_backward``)

so without batch norm, δ_{l−1} = (δ_l·W_l) ⊙ f'(z_{l−1}): each hidden unit sums over the next layer's units.

Parameters are stored in a dict under PyTorch's names (``layers.0.weight``, ``layers.0.bias``, …;
batch norm's ``norms.0.weight`` = γ, ``norms.0.bias`` = β, …, and then no bias in the linear layer
before it: BN subtracts the batch mean, so that bias's gradient would be exactly 0) with ``nn.Linear``'s (out, in) layout,
and batch norm's running estimates in ``buffers`` (``norms.0.running_mean``, ``norms.0.running_var``,
``norms.0.num_batches_tracked``), so they move to and from ``torch_ref`` with no renaming.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import layers
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


# ---------------------------------------------------------------------------- the layers of the network
# Each wraps a pair from manual.layers around the network's parameter dicts (looked up by name at
# every call, so load_state_dict and the optimizers, which update the arrays in place, are always seen):
# forward(x) -> (out, cache); backward(dout, cache) -> (∂E/∂x or None, {parameter key: gradient}).
class Linear:
    """z = x·Wᵀ + b with parameters ``{name}.weight`` (out, in) and ``{name}.bias`` (out,) (``bias=False``: none)."""

    def __init__(self, params: dict, name: str, input_grad: bool, bias: bool = True):
        self.params, self.input_grad = params, input_grad  # the first layer's input (the data) needs no gradient
        self.weight, self.bias = f"{name}.weight", f"{name}.bias" if bias else None

    def forward(self, x):
        return layers.linear_forward(x, self.params[self.weight], self.params[self.bias] if self.bias else None)

    def backward(self, dout, cache):
        grads = layers.linear_backward(dout, cache, input_grad=self.input_grad)
        if self.bias:
            return grads.get("x"), {self.weight: grads["W"], self.bias: grads["b"]}
        return grads.get("x"), {self.weight: grads["W"]}


class Activation:
    """a = f(x) element-wise; no parameters."""

    def __init__(self, activation):
        self.activation = activation

    def forward(self, x):
        return layers.activation_forward(x, activation=self.activation)

    def backward(self, dout, cache):
        return layers.activation_backward(dout, cache)["x"], {}


class BatchNorm:
    """Batch normalisation with γ, β in ``params`` and the running estimates in ``buffers`` (``nn.BatchNorm1d``'s keys)."""

    def __init__(self, params: dict, buffers: dict, name: str):
        self.params, self.buffers, self.training = params, buffers, True
        self.weight, self.bias = f"{name}.weight", f"{name}.bias"
        self.stats = {k: f"{name}.{k}" for k in ("running_mean", "running_var", "num_batches_tracked")}

    def forward(self, x):
        return layers.batchnorm_forward(x, self.params[self.weight], self.params[self.bias], training=self.training,
                                        **{k: self.buffers[key] for k, key in self.stats.items()})

    def backward(self, dout, cache):
        grads = layers.batchnorm_backward(dout, cache)
        return grads["x"], {self.weight: grads["gamma"], self.bias: grads["beta"]}


class Trace(NamedTuple):
    """What the forward pass computed, layer by layer (for the diagnostics)."""

    inputs: list  # a_{l−1}, the input of each linear layer, (B, n_{l−1})
    pre_activations: list  # what f is applied to in each layer, (B, n_l): z_l, or BN(z_l) with batch norm
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
        batch_norm: batch normalisation between each hidden linear layer and its activation
            (γ = 1, β = 0, running mean 0 and variance 1 at the start, as ``nn.BatchNorm1d``);
            those linear layers then have no bias (``layers.{i}.weight`` only): β takes its place.

    Like a ``torch.nn.Module`` it is in training mode until ``eval()``; the mode matters only with
    batch norm (batch statistics and running-estimate updates in training, running estimates in eval).
    """

    def __init__(self, layer_sizes, activation="sigmoid", loss="mse", init="normal", seed=0,
                 dtype=np.float64, output_activation=None, batch_norm: bool = False):
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.activation = get_activation(activation)
        self.loss_fn = get_loss(loss)
        self.output_activation = get_activation(output_activation or DEFAULT_OUTPUT_ACTIVATION[loss])
        self.loss_name, self.init, self.seed = loss, init, seed
        self.dtype = as_dtype(dtype)
        self.batch_norm, self.training = bool(batch_norm), True
        self.params = init_params(self.layer_sizes, init, seed, self.dtype)
        self.buffers: dict = {}  # batch norm's running estimates: state, not parameters (no optimizer touches them)
        hidden = self.layer_sizes[1:-1]
        if self.batch_norm:
            for i, n in enumerate(hidden):
                # No bias before batch norm: BN subtracts the batch mean, so ∂E/∂b would be exactly 0 (β does its
                # job). The seed still draws it, so the weights are those of the same seed without batch norm.
                del self.params[f"layers.{i}.bias"]
                self.params[f"norms.{i}.weight"] = np.ones(n, dtype=self.dtype)  # γ
                self.params[f"norms.{i}.bias"] = np.zeros(n, dtype=self.dtype)  # β
                self.buffers[f"norms.{i}.running_mean"] = np.zeros(n, dtype=self.dtype)
                self.buffers[f"norms.{i}.running_var"] = np.ones(n, dtype=self.dtype)
                self.buffers[f"norms.{i}.num_batches_tracked"] = np.zeros((), dtype=np.int64)
        # linear → [batch norm] → activation for each hidden layer, then the output layer's linear part;
        # the output activation g belongs with the loss, whose gradient ∂E/∂z_L already includes g'.
        self.layers = []
        for i in range(len(hidden)):
            self.layers.append(Linear(self.params, f"layers.{i}", input_grad=i > 0, bias=not self.batch_norm))
            if self.batch_norm:
                self.layers.append(BatchNorm(self.params, self.buffers, f"norms.{i}"))
            self.layers.append(Activation(self.activation))
        self.layers.append(Linear(self.params, f"layers.{len(hidden)}", input_grad=len(hidden) > 0))

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def weight(self, l: int) -> np.ndarray:
        return self.params[f"layers.{l}.weight"]

    # ------------------------------------------------------------------ mode
    def train(self, mode: bool = True) -> "MLP":
        """Training mode (the default), as ``nn.Module.train``: batch norm uses and tracks batch statistics."""
        self.training = bool(mode)
        for layer in self.layers:
            if isinstance(layer, BatchNorm):
                layer.training = self.training
        return self

    def eval(self) -> "MLP":
        """Evaluation mode, as ``nn.Module.eval``: batch norm uses its running estimates."""
        return self.train(False)

    # ---------------------------------------------------------------- forward
    def _forward(self, X) -> tuple[np.ndarray, list]:
        """z_L and every layer's cache: each layer's output is the next one's input."""
        caches = []
        for layer in self.layers:
            X, cache = layer.forward(X)
            caches.append(cache)
        return X, caches

    def trace(self, X, *, validate: bool = True) -> Trace:
        """Forward pass keeping every layer's input and pre-activation (``validate``: see ``loss_and_grads``)."""
        z, caches = self._forward(self._check_inputs(X) if validate else X)
        inputs = [cache[0] for layer, cache in zip(self.layers, caches) if isinstance(layer, Linear)]  # (x, W)
        pre = [cache[0] for layer, cache in zip(self.layers, caches) if isinstance(layer, Activation)]  # (x, a, f)
        return Trace(inputs, pre + [z], self.output_activation.f(z))

    def forward(self, X) -> np.ndarray:
        """Output activations a_L, shape (B, n_out): sigmoid outputs for mse, logits for cross-entropy."""
        return self.trace(X).output

    def predict(self, X) -> np.ndarray:
        """Predicted class index per row."""
        return self.forward(X).argmax(axis=1)

    def loss(self, X, y) -> float:
        trace = self.trace(X)
        return self.loss_fn(trace.pre_activations[-1], self._check_labels(y, len(trace.output)),
                            self.output_activation, trace.output).loss

    # --------------------------------------------------------------- backward
    def loss_and_grads(self, X, y, *, validate: bool = True) -> tuple[float, dict]:
        """Batch-mean loss and ∂E/∂θ for every parameter, keyed like ``params`` (torch's ``named_parameters()``).

        ``validate=False`` skips the checks of ``X`` and ``y`` for a batch taken from
        arrays that ``check_batch`` has already accepted (the training loop's case:
        the checks would cost as much as a small mini-batch's arithmetic).
        """
        if validate:
            X = self._check_inputs(X)
            y = self._check_labels(y, len(X))
        z, caches = self._forward(X)
        loss, delta = self.loss_fn(z, y, self.output_activation)  # δ_L = ∂E/∂z_L
        grads = {}
        for layer, cache in zip(reversed(self.layers), reversed(caches)):  # the chain rule, last layer first
            delta, layer_grads = layer.backward(delta, cache)  # ∂E/∂(layer input), ∂E/∂(layer parameters)
            grads.update(layer_grads)
        return loss, {k: grads[k] for k in self.params}  # in the parameters' order

    # ------------------------------------------------------------ parameters
    def state_dict(self) -> dict:
        """A copy of every parameter and buffer, in ``torch_ref.MLP.state_dict()``'s order and keys:
        ``layers.{i}.weight`` (out, in), ``layers.{i}.bias`` (out,) (none before batch norm), then with batch
        norm, per hidden layer,
        ``norms.{i}.weight`` (γ), ``.bias`` (β), ``.running_mean``, ``.running_var``, ``.num_batches_tracked``."""
        state = {k: v.copy() for k, v in self.params.items() if k.startswith("layers.")}
        for i in range(len(self.layer_sizes) - 2 if self.batch_norm else 0):
            for name in ("weight", "bias"):
                state[f"norms.{i}.{name}"] = self.params[f"norms.{i}.{name}"].copy()
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                state[f"norms.{i}.{name}"] = self.buffers[f"norms.{i}.{name}"].copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Copy parameters and buffers in (cast to this network's dtype; the batch count stays an integer).

        Everything is checked before anything is assigned: keys and shapes must match exactly, values must
        be finite numbers, running variances non-negative and batch counts non-negative integers.
        """
        check_state_dict(state, {k: v.shape for k, v in self.state_dict().items()})
        for k, target in [*self.params.items(), *self.buffers.items()]:
            target[...] = as_array(state[k])  # cast to the target's dtype as it is assigned

    # ------------------------------------------------------------ validation
    def check_batch(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """``X`` and ``y`` checked and converted (``X`` to this network's dtype), e.g. a whole split at once."""
        X = self._check_inputs(X)
        return X, self._check_labels(y, len(X))

    def _check_inputs(self, X) -> np.ndarray:
        return check_inputs(X, self.layer_sizes[0], self.dtype)

    def _check_labels(self, y, batch: int) -> np.ndarray:
        return check_labels(y, batch, self.layer_sizes[-1])


def check_inputs(X, n_inputs: int, dtype) -> np.ndarray:
    """``X`` as a (B, n_inputs) array of ``dtype`` (None: its own) with B ≥ 1 and only finite values, or a
    ValueError saying why.

    Shared with ``torch_ref.MLP``, so both networks refuse the same inputs with the same messages.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (batch, {n_inputs}), got shape {X.shape}")
    if X.shape[1] != n_inputs:
        raise ValueError(f"X has {X.shape[1]} features per row but the input layer has {n_inputs} units")
    if X.shape[0] == 0:
        raise ValueError(f"X is an empty batch (shape {X.shape}): give at least one row")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"X must be numeric, got dtype {X.dtype}")
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    return X


def check_labels(y, batch: int, n_classes: int) -> np.ndarray:
    """``y`` as ``batch`` integer class indices in [0, n_classes), or a ValueError saying why (shared with torch_ref)."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != batch:
        raise ValueError(f"y must be {batch} integer class indices (shape ({batch},)), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)][0]
        raise ValueError(f"label {bad} is outside [0, {n_classes}) for a network with {n_classes} outputs")
    return y


def as_array(value) -> np.ndarray:
    """A state-dict value as a NumPy array: arrays and numbers as they are; a torch tensor (anything with ``detach``:
    manual never imports torch), possibly on a GPU or requiring gradients, copied to the CPU."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def check_state_dict(state: dict, expected_shapes: dict) -> None:
    """Refuse a state dict with missing keys, extra keys, wrong shapes or bad values, naming the key.

    Values may be NumPy arrays, numbers or tensors (anything with ``detach``/``cpu``/``numpy``; manual never
    imports torch). Every value must be real and finite; ``running_var`` non-negative; ``num_batches_tracked``
    a non-negative integer.
    """
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
    for k in expected_shapes:
        value = as_array(state[k])
        if value.dtype == bool or not np.issubdtype(value.dtype, np.number) \
                or np.issubdtype(value.dtype, np.complexfloating):
            raise ValueError(f"state_dict[{k!r}] must hold real numbers, got dtype {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"state_dict[{k!r}] contains NaN or infinite values")
        if k.endswith(".running_var") and np.any(value < 0):
            raise ValueError(f"state_dict[{k!r}] has negative entries: a variance is never negative")
        if k.endswith(".num_batches_tracked") and (value < 0 or value != np.round(value)):
            raise ValueError(f"state_dict[{k!r}] must be a non-negative integer count, got {value}")
