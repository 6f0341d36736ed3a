"""The per-layer diagnostics every run records (``layers.csv``), for any architecture and either backend.

A row describes one *weighted* layer (linear, convolution, recurrent) on the probe batch: the norm of its
weights' gradient ‖∂E/∂W‖ (all its weight tensors together, biases left out) and the activation applied to its
output — the first activation module after it, before the next weighted layer; for the last weighted layer the
loss's output activation (sigmoid for squared error, identity before the softmax):

- ``dead_frac``: the fraction of units whose f′ is exactly 0 on every probe example (ReLU's dead units);
- ``saturated_frac``: the fraction of (example, unit) outputs in the activation's flat tails (``act.saturated``,
  Glorot & Bengio 2010: |tanh| > 1 − SATURATION_MARGIN, σ within SATURATION_MARGIN of 0 or 1); NaN for an
  activation without such tails, where it would only repeat ``dead_frac``;
- ``act_mean``, ``act_std``: of those outputs.

A unit is one output feature: a linear layer's unit, a convolution's (channel, row, column), a recurrent layer's
(time step, hidden unit). A weighted layer followed by no activation (an LSTM, whose nonlinearities are inside
it) has its output described with ``dead_frac`` and ``saturated_frac`` NaN.

The layers are found on the ``manual.nn`` network (``probe_points``); the torch twin (``torch_ref.mirror``) has
the same child names, so one list of points serves both: f′ by hand on the manual side, by autograd of PyTorch's
own modules on the torch side.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

import manual.nn
from manual.activations import ACTIVATIONS

WEIGHTED = ("Linear", "Conv2d", "RNN", "LSTM", "GRU")  # torch_spec names of the layers a row describes


class ProbePoint(NamedTuple):
    layer: str  # child name of the weighted layer in the Sequential
    weights: tuple  # state-dict keys of its weight tensors
    activation: str | None  # child name of the activation after it, or None
    act_name: str | None  # that activation's registered name; None: the loss's output activation (last layer) or none


def probe_points(model: manual.nn.Sequential) -> list[ProbePoint]:
    """One point per weighted layer of ``model``, in order, with the activation applied to its output."""
    children = list(model.named_children())
    points = []
    for i, (name, module) in enumerate(children):
        if module.torch_spec()[0] not in WEIGHTED:
            continue
        activation = act_name = None
        for later_name, later in children[i + 1:]:
            if later.torch_spec()[0] in WEIGHTED:
                break
            if isinstance(later, manual.nn.Activation):
                activation, act_name = later_name, later.name
                break
        weights = tuple(f"{name}.{p}" for p in module._parameters if p.startswith("weight"))
        points.append(ProbePoint(name, weights, activation, act_name))
    return points


def layer_stats(derivative, activation: np.ndarray, grad_norm: float, act) -> dict:
    """One row from f′(z) and a = f(z) over the probe batch, shapes (B, …) (``derivative`` None: no activation).

    ``act`` is the ``manual.activations.Activation`` (None: no activation): its ``saturated`` mask, if any.
    """
    activation = np.asarray(activation).reshape(len(activation), -1)
    saturated = math.nan if act is None or act.saturated is None else float(np.mean(act.saturated(activation)))
    dead = math.nan
    if derivative is not None:
        dead = float(np.mean(np.all(np.asarray(derivative).reshape(len(derivative), -1) == 0, axis=0)))
    with np.errstate(over="ignore", invalid="ignore"):  # an exploding net's mean and std are inf or NaN, quietly
        return {"grad_norm": grad_norm, "dead_frac": dead, "saturated_frac": saturated,
                "act_mean": float(activation.mean()), "act_std": float(activation.std())}


def grad_norm(grads: dict, keys) -> float:
    """‖(∂E/∂W₁, ∂E/∂W₂, …)‖: the L2 norm of a layer's weight gradients together (one tensor: its norm)."""
    return math.hypot(*(float(np.linalg.norm(grads[k])) for k in keys))


def first_output(out):
    """A recurrent layer returns (output, state): its output sequence; any other layer's output as it is."""
    return out[0] if isinstance(out, tuple) else out


@contextmanager
def batch_statistics(net, buffers):
    """Run the block in training mode with the running estimates ``buffers`` restored afterwards, then eval mode.

    The per-layer diagnostics see what training sees: batch norm normalising with the probe batch's own
    statistics. (Evaluation mode at initialisation would use the initial running estimates, mean 0 and
    variance 1, i.e. no normalisation at all, and show a batch-norm network's gradients as those of the
    same network without it.) Without batch norm the mode changes nothing.
    """
    buffers = list(buffers)
    saved = [b.clone() if hasattr(b, "clone") else b.copy() for b in buffers]
    net.train()
    try:
        yield
    finally:
        for b, value in zip(buffers, saved):
            b[...] = value
        net.eval()


def probe_manual(net: manual.nn.Sequential, points, X, y, loss: str) -> list[dict]:
    """The rows of a ``manual.nn`` network: f′ by hand (``Activation.df``)."""
    with np.errstate(over="ignore", invalid="ignore"), batch_statistics(net, net.buffers.values()):
        steps = {name: (x, out) for name, _, x, out in net.trace(X)}
        z = first_output(list(steps.values())[-1][1])
        _, grads = manual.nn.loss_and_grads(net, X, y, loss)
    rows = []
    for i, point in enumerate(points):
        if point.activation is not None:
            act = ACTIVATIONS[point.act_name]
            x, a = steps[point.activation]
            rows.append(layer_stats(act.df(x), a, grad_norm(grads, point.weights), act))
        elif i == len(points) - 1:
            act = manual.nn.loss.output_activation(loss)
            rows.append(layer_stats(act.df(z), act.f(z), grad_norm(grads, point.weights), act))
        else:
            out = first_output(steps[point.layer][1])
            rows.append(layer_stats(None, out, grad_norm(grads, point.weights), None))
    return rows


def probe_torch(model, criterion, points, X, y) -> list[dict]:
    """The rows of a torch twin: f′ by autograd of PyTorch's own activation modules (the same points)."""
    import torch

    children = dict(model.named_children())
    seen: dict = {}
    hooks = [children[name].register_forward_hook(lambda m, inputs, out, name=name: seen.__setitem__(
        name, (inputs[0], out))) for name in {p.activation or p.layer for p in points}]
    try:
        params = dict(model.named_parameters())
        keys = [k for p in points for k in p.weights]
        z = model(X)
        grads = dict(zip(keys, torch.autograd.grad(criterion(z, y), [params[k] for k in keys])))
    finally:
        for hook in hooks:
            hook.remove()
    grads = {k: g.detach().cpu().numpy() for k, g in grads.items()}
    rows = []
    for i, point in enumerate(points):
        if point.activation is None and i < len(points) - 1:
            out = first_output(seen[point.layer][1]).detach().cpu().numpy()
            rows.append(layer_stats(None, out, grad_norm(grads, point.weights), None))
            continue
        if point.activation is not None:
            module, x, act = children[point.activation], seen[point.activation][0], ACTIVATIONS[point.act_name]
        else:
            module, x, act = criterion.output, z, ACTIVATIONS[criterion.output_name]
        x = x.detach().requires_grad_(True)
        a = module(x)
        (derivative,) = torch.autograd.grad(a.sum(), x)
        rows.append(layer_stats(derivative.cpu().numpy(), a.detach().cpu().numpy(),
                                grad_norm(grads, point.weights), act))
    return rows
