"""The two ways people usually train an MNIST MLP, written here as the benchmark's baselines.

- ``PerExampleLoop``: textbook backpropagation one example at a time, as Nielsen's
  ``network.py`` does it (``update_mini_batch`` calls ``backprop(x, y)`` for each
  example of the mini-batch, with x a column vector, sums the gradients, and
  steps once with their average). Plain NumPy, in ``manual``'s activations,
  losses and optimizers, so only the loop differs from ``manual.MLP``.
- ``DataLoaderWay``: the PyTorch MNIST example's input pipeline —
  ``torchvision.datasets.MNIST`` with the ``ToTensor`` transform (one PIL image
  per example), a ``DataLoader`` with ``shuffle=True`` (``num_workers=0`` unless
  asked: the data are read in the training process), and each batch copied to
  the device — driving ``torch_ref.MLP`` and ``torch.optim``.

Both start from the seed's ``manual.init`` parameters, like every other implementation.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

import manual
import torch_ref
from manual.activations import get_activation
from manual.losses import DEFAULT_OUTPUT_ACTIVATION, softmax

from experiments.data import DEFAULT_ROOT, N_TRAIN, ensure_mnist_files
from experiments.runs.training import RunConfig, make_torch_optimizer


class PerExampleLoop:
    """Backpropagation one example at a time inside each mini-batch (Nielsen's ``network.py``), in NumPy."""

    def __init__(self, config: RunConfig, dtype: str = "float64"):
        params = manual.init.init_params(config.layer_sizes, config.init, config.seed, manual.network.as_dtype(dtype))
        self.n_layers = len(config.layer_sizes) - 1
        for l in range(self.n_layers):  # biases as column vectors, like the weights' outputs
            params[f"layers.{l}.bias"] = params[f"layers.{l}.bias"].reshape(-1, 1)
        self.params = params
        self.weights = [params[f"layers.{l}.weight"] for l in range(self.n_layers)]
        self.biases = [params[f"layers.{l}.bias"] for l in range(self.n_layers)]
        self.activation = get_activation(config.activation)
        self.output = get_activation(DEFAULT_OUTPUT_ACTIVATION[config.loss])
        self.loss = config.loss
        self.opt = manual.optim.get_optimizer(config.optimizer)(params, **config.optimizer_kwargs())
        self.dtype = manual.network.as_dtype(dtype)

    def prepare(self, split):
        """Each example as a column vector x of shape (784, 1), its target as a one-hot column t of shape (10, 1)."""
        targets = np.eye(self.weights[-1].shape[0], dtype=self.dtype)[split.labels]
        return split.features(self.dtype)[:, :, None], targets[:, :, None]

    def output_error(self, z: np.ndarray, a: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        """The example's loss and δ_L = ∂E/∂z_L, from z_L, a_L = g(z_L) and the target t (columns)."""
        if self.loss == "mse":  # E = ½‖a − t‖², δ = (a − t) ⊙ g'(z)
            diff = a - t
            return 0.5 * float(np.sum(diff * diff)), diff * self.output.derivative(z, a)
        p = softmax(a.T).T  # E = −log softmax(a)_y, δ = (softmax(a) − t) ⊙ g'(z)
        return -math.log(float(np.sum(p * t))), (p - t) * self.output.derivative(z, a)

    def backprop(self, x: np.ndarray, t: np.ndarray) -> tuple[float, list, list]:
        """One example's loss and ∂E/∂b, ∂E/∂W per layer: x is (n_in, 1), everything a column vector."""
        activation, activations, zs = x, [x], []
        for l, (W, b) in enumerate(zip(self.weights, self.biases)):
            f = self.activation if l < self.n_layers - 1 else self.output
            z = np.dot(W, activation) + b
            zs.append(z)
            activation = f.f(z)
            activations.append(activation)
        loss, delta = self.output_error(zs[-1], activation, t)
        nabla_b, nabla_w = [None] * self.n_layers, [None] * self.n_layers
        nabla_b[-1], nabla_w[-1] = delta, np.dot(delta, activations[-2].T)
        for l in range(2, self.n_layers + 1):
            sp = self.activation.derivative(zs[-l], activations[-l])
            delta = np.dot(self.weights[-l + 1].T, delta) * sp
            nabla_b[-l], nabla_w[-l] = delta, np.dot(delta, activations[-l - 1].T)
        return loss, nabla_b, nabla_w

    def update_mini_batch(self, X, T, idx) -> float:
        """Sum the examples' gradients, step once with their mean; the mini-batch's summed loss."""
        nabla_b = [np.zeros_like(b) for b in self.biases]
        nabla_w = [np.zeros_like(W) for W in self.weights]
        total = 0.0
        for i in idx:
            loss, delta_b, delta_w = self.backprop(X[i], T[i])
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_b)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_w)]
            total += loss
        grads = {}
        for l in range(self.n_layers):
            grads[f"layers.{l}.weight"], grads[f"layers.{l}.bias"] = nabla_w[l] / len(idx), nabla_b[l] / len(idx)
        self.opt.step(grads)
        return total

    def train_epoch(self, X, T, order: np.ndarray, batch_size: int) -> float:
        """One pass over ``order`` in mini-batches (as ``training.ManualBackend``); the mean loss."""
        total = 0.0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for start in range(0, len(order), batch_size):
                total += self.update_mini_batch(X, T, order[start:start + batch_size])
        return total / len(order)

    def sync(self):
        pass


@functools.lru_cache(maxsize=2)
def torchvision_train_set(root: str = str(DEFAULT_ROOT), n_train: int = N_TRAIN):
    """The first ``n_train`` torchvision MNIST training images, each converted by ``ToTensor`` when read."""
    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    ensure_mnist_files(root)
    full = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    return Subset(full, range(n_train))


class DataLoaderWay:
    """The PyTorch MNIST example's loop: ``DataLoader`` batches of ``ToTensor`` images, copied to the device."""

    def __init__(self, config: RunConfig, device: str = "cpu", root: Path | str = DEFAULT_ROOT,
                 n_train: int = N_TRAIN, num_workers: int = 0):
        import torch
        from torch.utils.data import DataLoader

        self.torch, self.device = torch, device
        self.loader = DataLoader(torchvision_train_set(str(root), n_train), batch_size=config.batch_size,
                                 shuffle=True, num_workers=num_workers,
                                 generator=torch.Generator().manual_seed(config.seed))
        self.model = torch_ref.MLP(config.layer_sizes, config.activation, config.loss, config.init, config.seed,
                                   dtype=torch.float32, device=device)
        self.opt = make_torch_optimizer(config, self.model.parameters(), device)  # as training.TorchBackend's

    def train_examples(self, n_examples: int) -> float:
        """Train on the loader's batches (a fresh shuffled epoch) until ``n_examples`` are seen; the mean loss."""
        total, seen = self.torch.zeros((), device=self.device), 0
        for images, labels in self.loader:
            images, labels = images.to(self.device), labels.to(self.device)
            self.opt.zero_grad(set_to_none=True)
            loss = self.model.loss(images.view(len(images), -1), labels, validate=False)
            loss.backward()
            self.opt.step()
            total += loss.detach() * len(labels)  # summed on the device, as training.TorchBackend does
            seen += len(labels)
            if seen >= n_examples:
                break
        return float(total) / seen if seen else math.nan

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
