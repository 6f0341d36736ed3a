"""Gradient checks of any ``manual.nn`` network, module by module and as a whole.

``check_modules(model, X)`` runs the forward pass once and checks every module on the very input that reaches
it: its hand-written ``backward`` against centred finite differences of its ``forward`` and against autograd of
its torch twin (``torch_ref.mirror`` of that one module), element by element, with ``check_backward``'s report
— each failing element named by its index, ``x[0, 1, 2, 3]`` or ``weight[5, 0, 4, 4]``, kinks (ReLU at 0, a
max-pool window whose two largest inputs are nearly tied) reported, not counted as errors.

``experiments.gradcheck.check_model(model, X, y, loss)`` checks the whole network's ∂E/∂θ from ``manual.nn.loss_and_grads`` against
autograd of the mirrored network with ``torch_ref.Criterion`` and against finite differences of the loss.
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

import manual.nn
from manual.nn.activation import PLUGIN

from experiments.gradcheck.checks import GradReport, check_backward


def first_output(out):
    """A recurrent layer returns (output, state): the output sequence is what the next layer takes."""
    return out[0] if isinstance(out, tuple) else out


def module_pair(module: manual.nn.Module):
    """``forward(x, **parameters) -> (out, cache)`` and ``backward(dout, cache) -> {"x": …, parameter: …}`` of one
    module in CS231n's convention, so that ``check_backward`` can perturb its input and each parameter."""

    def forward(x, **params):
        saved = dict(module._parameters)
        module._parameters.update(params)
        try:
            out = first_output(module.forward(x))
        finally:
            module._parameters.update(saved)
        return out, (dict(module.__dict__), params)  # the module's own cache, kept with the parameters it saw

    def backward(dout, cache):
        state, params = cache
        module.__dict__.update(state)
        saved = dict(module._parameters)
        module._parameters.update(params)
        try:
            dx = module.backward(dout, input_grad=True)
        finally:
            module._parameters.update(saved)
        return {"x": dx, **module.grads}

    return forward, backward


def autograd_reference(module: manual.nn.Module):
    """``reference(dout, inputs) -> {"x": …, parameter: …}``: autograd of the module's torch twin, or None when the
    module has no twin (a plug-in activation without ``torch_fn``)."""
    import torch
    import torch_ref

    if module.torch_spec()[0] == PLUGIN and module.activation.torch_fn is None:
        return None

    def reference(dout, inputs):
        twin = torch_ref.mirror(module)
        params = dict(twin.named_parameters())
        with torch.no_grad():
            for name, value in inputs.items():
                if name in params:
                    params[name].copy_(torch.from_numpy(np.asarray(value)))
        x = torch.tensor(inputs["x"], requires_grad=True)
        out = first_output(twin(x))
        (out * torch.from_numpy(np.asarray(dout, dtype=inputs["x"].dtype))).sum().backward()
        return {"x": x.grad.numpy(), **{name: p.grad.numpy() for name, p in params.items()}}

    return reference


class ModuleCheck(NamedTuple):
    name: str  # the child's name in the Sequential
    module: str  # its class and arguments, as printed
    report: GradReport


def check_modules(model: manual.nn.Sequential, X, *, seed: int = 0) -> list[ModuleCheck]:
    """Every child of ``model`` checked on the input that reaches it in ``model``'s forward pass (a float64 copy)."""
    model = copy.deepcopy(model).to(np.float64)
    x = np.asarray(X, dtype=np.float64)
    checks = []
    for name, module in model.named_children():
        forward, backward = module_pair(module)
        inputs = {"x": x, **{k: v.copy() for k, v in module._parameters.items()}}
        report = check_backward(forward, backward, inputs, seed=seed, name=f"{name}: {module!r}",
                                reference=autograd_reference(module))
        checks.append(ModuleCheck(name, repr(module), report))
        x = first_output(module.forward(x))
    return checks
