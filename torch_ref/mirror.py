"""``mirror(model)``: a ``manual.nn`` network as the same network of torch's own modules, parameters copied exactly.

Each ``manual.nn`` module names its counterpart (``torch_spec()``: ``("Linear", {"in_features": 784, …})``);
``mirror`` builds that ``torch.nn`` class with those arguments, keeps every child's name (so the state-dict keys
are the same), copies the state dict in and sets the same train/eval mode. A plug-in activation becomes its
``torch_fn`` as a module. ``Criterion`` is the loss at the top, ``manual.nn.loss_and_grads``'s twin.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import manual.nn
from manual.losses import BUILTIN_LOSSES, get_loss
from manual.nn.activation import PLUGIN
from manual.nn.loss import output_activation
from torch_ref.layers import LastStep


class PluginActivation(nn.Module):
    """A registered plug-in activation: its ``torch_fn`` as a module; autograd differentiates it."""

    def __init__(self, name: str, torch_fn=None):
        super().__init__()
        act = manual.activations.get_activation(name)  # unknown names: the error lists the valid ones
        torch_fn = torch_fn or act.torch_fn
        if torch_fn is None:
            raise ValueError(f"activation {name!r} has no torch_fn, so torch_ref cannot build it; give "
                             f"Activation({name!r}, f, df, torch_fn=...) the same function on tensors")
        self.name, self.torch_fn = name, torch_fn

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.torch_fn(z)

    def extra_repr(self) -> str:
        return self.name


TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(dtype) -> torch.dtype:
    """'float32' / 'float64' / a NumPy or torch float type → the torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in TORCH_DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; valid dtypes: {', '.join(TORCH_DTYPES)}")
    return TORCH_DTYPES[name]


# torch_spec names that are not torch.nn classes: torch_ref's own modules (class name → class)
OWN_MODULES: dict = {PLUGIN: PluginActivation, "LastStep": LastStep}


def torch_module(name: str, kwargs: dict, dtype, device) -> nn.Module:
    """``torch.nn.<name>(**kwargs)`` (or torch_ref's own module of that name), its tensors in ``dtype`` on ``device``
    (``Module.to`` casts floating-point parameters and buffers only: a batch count stays an integer)."""
    cls = OWN_MODULES[name] if name in OWN_MODULES else getattr(nn, name)
    return cls(**kwargs).to(device=device, dtype=dtype)


def build_twin(module: manual.nn.Module, dtype, device) -> nn.Module:
    """The torch module of ``module`` and, recursively, of its children (same names), parameters not yet copied."""
    name, kwargs = module.torch_spec()
    children = OrderedDict((child_name, build_twin(child, dtype, device))
                           for child_name, child in module.named_children())
    if name == "Sequential":
        return nn.Sequential(children)
    if name == "ModuleList":
        return nn.ModuleList(children.values())
    twin = torch_module(name, kwargs, dtype, device)
    for child_name, child in children.items():
        twin.add_module(child_name, child)
    return twin


def mirror(model: manual.nn.Module, device=None) -> nn.Module:
    """``model`` as torch's own modules: the same state-dict keys and values (float32 or float64 as ``model``),
    the same train/eval mode. Parameters move back with ``model.load_state_dict(to_numpy_state(twin.state_dict()))``."""
    twin = build_twin(model, torch_dtype(model.dtype), device)
    twin.load_state_dict(to_torch_state(model.state_dict(), device))
    return twin.train(model.training)


def to_torch_state(state: dict, device=None) -> dict:
    """A ``manual`` state dict (NumPy arrays) as tensors, same keys."""
    return {k: torch.as_tensor(np.asarray(v), device=device) for k, v in state.items()}


def to_numpy_state(state: dict) -> dict:
    """A torch state dict as NumPy arrays, same keys."""
    return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}


# ------------------------------------------------------------------------------ the loss
def batch_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """The batch-mean loss of output activations ``out`` (B, C), as ``manual.losses``: cross-entropy of logits
    (``F.cross_entropy``), ½Σ_k (a_k − onehot_k)² per sample, or a plug-in's ``torch_fn``. Written without
    data-dependent shapes, so that ``torch.vmap`` can map it over stacked models."""
    if loss == "cross_entropy":
        return F.cross_entropy(out, y)
    if loss == "mse":
        target = (y.unsqueeze(-1) == torch.arange(out.shape[-1], device=out.device)).to(out.dtype)
        return 0.5 * ((out - target) ** 2).sum() / out.shape[0]
    return get_loss(loss).torch_fn(out, y)


def activation_twin(name: str) -> nn.Module:
    """torch's own module for the activation registered as ``name`` (a plug-in's ``torch_fn`` otherwise)."""
    return mirror(manual.nn.activation.activation_module(name))


def check_torch_loss(loss: str) -> None:
    """Refuse a plug-in loss without ``torch_fn``: torch_ref cannot compute it (an unknown name lists the valid ones)."""
    if loss not in BUILTIN_LOSSES and get_loss(loss).torch_fn is None:
        raise ValueError(f"loss {loss!r} has no torch_fn, so torch_ref cannot compute it; give "
                         f"Loss({loss!r}, fn, torch_fn=...) the same loss on tensors")


class Criterion(nn.Module):
    """The loss at the top of a network, ``manual.nn.loss_and_grads``'s twin: the output activation (sigmoid for
    mse, identity for cross-entropy, unless named), then ``batch_loss``. ``criterion(z, y)``."""

    def __init__(self, loss: str = "cross_entropy", output: str | None = None):
        super().__init__()
        check_torch_loss(loss)
        self.loss, self.output_name = loss, output_activation(loss, output).name
        self.output = activation_twin(self.output_name)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return batch_loss(self.output(z), y, self.loss)

    def extra_repr(self) -> str:
        return f"{self.loss!r}, output={self.output_name!r}"


def build(layers, input_shape, *, activation=None, init="pytorch", seed=0, dtype="float32", device=None) -> nn.Module:
    """The network ``layers`` describes (``manual.nn.arch``) in torch's own modules: ``manual.nn.build``'s network
    mirrored, so both backends start from the same parameters and agree on every structural choice."""
    return mirror(manual.nn.build(layers, input_shape, activation=activation, init=init, seed=seed, dtype=dtype),
                  device)
