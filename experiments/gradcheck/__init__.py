"""Proof that hand-written gradients are right: whole networks here, one function at a time in ``checks``.

``checks`` holds the checks of one function a user brings (``check_activation``,
``check_backward`` for a layer, ``check_loss``), each returning a ``GradReport`` that
says where a derivative is wrong; they are re-exported here. The command
``python -m experiments gradcheck`` (``experiments.commands.gradcheck``) runs them
and the network grid below.

For every (activation, loss, depth) of a grid, ``run_grid`` builds a tiny ``manual.MLP``,
computes ∂E/∂θ by hand-written backpropagation and compares every parameter
tensor against two independent references:

- autograd: ``torch_ref.MLP`` of the same spec, loaded with ``manual``'s
  parameters through ``load_state_dict`` (so the exchange is exercised too);
- centred finite differences of ``manual.MLP.loss``, one parameter entry at a
  time, always in float64 (on a float64 copy of the network).

The errors go to ``<out>/gradcheck.csv``, one row per parameter tensor. A plug-in activation
without ``torch_fn`` has no autograd reference: its autograd columns are NaN and only the
finite differences decide.

The comparison helpers below (relative errors, finite differences, the torch
twin of a manual network, kink-free batches) are also what the test suite uses.
"""
from __future__ import annotations

import copy
import itertools
from typing import NamedTuple

import numpy as np
import torch

import manual
import manual.nn
import torch_ref
from manual.layers import BN_EPS, linear_forward

from experiments.gradcheck.checks import (GradReport, check_activation, check_backward, check_loss,
                                          layer_tolerances)

N_INPUTS, N_CLASSES = 6, 4  # input and output widths of the checked networks
DEFAULT_DEPTHS = (1, 2, 3, 6)
# (autograd tolerance, finite-difference tolerance) per dtype. In float32 the
# manual and torch computations round differently (ε ≈ 1.2e-7, amplified by depth),
# and the float64 finite-difference reference sees the float32 rounding too.
DEFAULT_TOLERANCES = {"float64": (1e-10, 1e-6), "float32": (1e-4, 1e-4)}
# Step of the fourth-order centred difference: its truncation, O(h⁴), is negligible at
# h = 1e-4, and its rounding noise, about 1.5·ε·|E|/h ≈ 3e-12·|E|, is 10× below that of
# the plain two-point difference at its best step (∛ε ≈ 6e-6).
FD_STEP = 1e-4
# Gradient entries below FD_FLOOR·max(1, |E|) are too close to that noise for a relative
# comparison (vanishing gradients of deep sigmoid nets): they are compared in absolute terms,
# |error| ≤ fd_tol·FD_FLOOR·max(1, |E|).
FD_FLOOR = 1e-4
# Some gradients are exactly 0 in exact arithmetic (with batch norm and the identity activation, every β but
# the last is cancelled by the next layer's mean subtraction): both implementations then return rounding
# noise, which no relative comparison can judge. Entries below GRAD_FLOOR × the network's largest gradient
# entry are compared with autograd in absolute terms, |error| ≤ tol·GRAD_FLOOR·max|∂E/∂θ|.
GRAD_FLOOR = 1e-4
# In float32 that noise is about ε₃₂·max|∂E/∂θ| (5e-8 × the largest entry measured for those β): entries of a float32
# network below FLOAT32_FLOOR × its largest gradient entry are compared in absolute terms against both references,
# |error| ≤ tol·FLOAT32_FLOOR·max|∂E/∂θ| ≈ 8·ε₃₂·max|∂E/∂θ| at the float32 tolerance. (float32 is for speed: verify
# in float64, where no such floor is needed.)
FLOAT32_FLOOR = 1e-2
# Points where an activation is not twice differentiable (``Activation.kinks``: relu's kink,
# softplus's switch to the linear regime): a finite difference straddling one is not a derivative.
KINK_MARGIN = 1e-2  # every pre-activation of a checked batch stays this far from a kink (≫ 2·FD_STEP)
# Batch normalisation's x̂ = (z − μ)/√(σ² + ε) is a smoothed kink too: for a feature whose batch variance σ² is
# near ε (two rows of a batch of 2 that nearly coincide) it bends on the scale √(σ² + ε) ≈ 3e-3, where the
# finite difference's step is coarse (rel err 4e-4 against exact gradients). Every feature batch normalisation
# normalises in a checked batch has σ² ≥ BN_VARIANCE_MARGIN.
BN_VARIANCE_MARGIN = 5 * BN_EPS
CSV_COLUMNS = ("activation", "loss", "depth", "batch_norm", "parameter", "shape", "dtype", "max_abs_err_autograd",
               "max_rel_err_autograd", "max_abs_err_fd", "max_rel_err_fd", "passed")


# ------------------------------------------------------------------ comparisons
def rel_err(a, b, floor: float = 0.0) -> np.ndarray:
    """Element-wise |a − b| / max(|a|, |b|, floor); 0 where a == b, NaN where either is NaN or infinite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf − inf and inf / inf are NaN: never within a tolerance
        diff = np.abs(a - b)
        scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
        return np.divide(diff, scale, out=np.zeros_like(diff), where=diff != 0)


def max_rel_err(a, b, floor: float = 0.0) -> float:
    """max |a − b| over a tensor, divided by max(max |a|, max |b|, floor); 0 if equal, NaN if not finite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), floor)
    return float(rel_err(a, b, floor=scale).max(initial=0.0))


def fd_floor(loss: float) -> float:
    """The smallest scale ``max_rel_err`` should use against finite differences of a loss of this value."""
    return FD_FLOOR * max(1.0, abs(loss))


def max_abs_err(a, b) -> float:
    """max |a − b| over a tensor."""
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max(initial=0.0))


def centred_difference(f, x, h: float = FD_STEP):
    """f'(x) by the fourth-order centred difference [8(f(x+h) − f(x−h)) − (f(x+2h) − f(x−2h))] / 12h.

    Its error is h⁴·f⁽⁵⁾/30 of truncation plus about 1.5·ε·|f|/h of rounding. Works
    element-wise on arrays when f does.
    """
    return (8 * (f(x + h) - f(x - h)) - (f(x + 2 * h) - f(x - 2 * h))) / (12 * h)


# --------------------------------------------------------------------- networks
def net_spec(net: manual.MLP) -> dict:
    """The constructor arguments that rebuild ``net`` (its parameters aside)."""
    return dict(layer_sizes=net.layer_sizes, activation=net.activation.name, loss=net.loss_name,
                init=net.init, seed=net.seed, output_activation=net.output_activation.name, batch_norm=net.batch_norm)


def float64_twin(net: manual.MLP) -> manual.MLP:
    """A float64 ``manual.MLP`` with ``net``'s spec, parameters, buffers and mode (train/eval)."""
    twin = manual.MLP(**net_spec(net), dtype=np.float64)
    twin.load_state_dict(net.state_dict())
    return twin.train(net.training)


def torch_twin(net: manual.MLP, device=None) -> torch_ref.MLP:
    """A ``torch_ref.MLP`` of ``net``'s spec and dtype, loaded with ``net``'s parameters via ``load_state_dict``."""
    tnet = torch_ref.MLP(**net_spec(net), dtype=np.dtype(net.dtype).name, device=device)
    torch_ref.check_same_spec(net, tnet)
    tnet.load_state_dict(torch_ref.to_torch_state(net.state_dict(), device))
    return tnet.train(net.training)


def autograd_loss_and_grads(tnet: torch_ref.MLP, X, y) -> tuple[float, dict]:
    """torch_ref's batch-mean loss and its autograd gradients as NumPy arrays, keyed like ``state_dict()``."""
    first = next(tnet.parameters())
    Xt = torch.as_tensor(np.asarray(X), dtype=first.dtype, device=first.device)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long, device=first.device)
    tnet.zero_grad()
    loss = tnet.loss(Xt, yt)
    loss.backward()
    return loss.item(), {k: p.grad.detach().cpu().numpy() for k, p in tnet.named_parameters()}


def fd_grads_of(params: dict, loss) -> dict:
    """∂loss/∂θ by ``centred_difference`` at ``FD_STEP``, every entry of every array of ``params``, each entry set in
    place for ``loss()`` and restored afterwards."""
    grads = {}
    for key, p in params.items():
        g = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            def loss_at(value, idx=idx, p=p):
                saved = p[idx]
                p[idx] = value
                try:
                    return loss()
                finally:
                    p[idx] = saved
            g[idx] = centred_difference(loss_at, p[idx])
        grads[key] = g
    return grads


def fd_grads(net: manual.MLP, X, y) -> dict:
    """∂E/∂θ by centred finite differences of ``net.loss``, every entry of every parameter, in float64."""
    twin = float64_twin(net)
    return fd_grads_of(twin.params, lambda: twin.loss(X, y))


def kink_distance(net: manual.MLP, X) -> float:
    """How close any pre-activation of ``X``'s forward pass comes to a kink of the activation applied to it."""
    zs = net.trace(X).pre_activations
    acts = [net.activation] * (len(zs) - 1) + [net.output_activation]
    return min((float(np.abs(z - kink).min()) for z, act in zip(zs, acts) for kink in act.kinks),
               default=float("inf"))


def random_batch(net: manual.MLP, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X ~ N(0, 1) of shape (batch, n_in) in the net's dtype, and uniformly drawn labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, net.layer_sizes[0])).astype(net.dtype)
    return X, rng.integers(0, net.layer_sizes[-1], size=batch)


def smallest_bn_variance(net: manual.MLP, X) -> float:
    """The smallest batch variance of any feature batch normalisation normalises in ``X``'s forward pass (inf
    without batch norm): what each hidden linear layer computes from its input, feature by feature."""
    if not net.batch_norm:
        return float("inf")
    hidden_inputs = net.trace(X).inputs[:-1]  # the output layer has no batch norm
    return min(float(linear_forward(a, net.params[f"layers.{i}.weight"])[0].var(axis=0).min())
               for i, a in enumerate(hidden_inputs))


def kink_free_batch(net: manual.MLP, batch: int, seed: int, margin: float = KINK_MARGIN, tries: int = 1000):
    """The first ``random_batch`` (seeds seed, seed + 1, …) whose pre-activations all stay ``margin`` from kinks
    and, with batch norm, whose normalised features all have a batch variance of at least ``BN_VARIANCE_MARGIN``."""
    clear_of_kinks = 0
    for s in range(seed, seed + tries):
        X, y = random_batch(net, batch, s)
        if kink_distance(net, X) >= margin:
            if smallest_bn_variance(net, X) >= BN_VARIANCE_MARGIN:
                return X, y
            clear_of_kinks += 1
    if clear_of_kinks:
        raise ValueError(f"no batch in {tries} tries gives every batch-normalised feature of the "
                         f"{net.activation.name} network a batch variance of at least {BN_VARIANCE_MARGIN:g} (batch "
                         f"norm's eps is {BN_EPS:g}; near it finite differences are too coarse); try another seed "
                         "or a larger --batch")
    raise ValueError(f"no batch in {tries} tries keeps every pre-activation {margin} away from a kink of "
                     f"{net.activation.name} (a layer of dead units makes the next layer's z exactly its bias); "
                     "try another seed or init")


# ------------------------------------------------------------------- the check
class ParamCheck(NamedTuple):
    parameter: str
    shape: tuple
    max_abs_err_autograd: float
    max_rel_err_autograd: float
    max_abs_err_fd: float
    max_rel_err_fd: float


def has_torch_twin(net: manual.MLP) -> bool:
    """Whether torch_ref can build ``net``: built-ins always, plug-ins only with a ``torch_fn``."""
    try:
        torch_ref.model.activation_module(net.activation.name)
        torch_ref.model.activation_module(net.output_activation.name)
        return net.loss_name in manual.losses.BUILTIN_LOSSES or manual.losses.LOSSES[net.loss_name].torch_fn is not None
    except ValueError:
        return False


def check_network(net: manual.MLP, X, y) -> list[ParamCheck]:
    """Hand-written gradients of ``net`` against autograd and finite differences, one entry per parameter.

    The autograd errors are NaN when torch_ref cannot build the network (a plug-in without ``torch_fn``).
    """
    loss, grads = net.loss_and_grads(X, y)
    auto = autograd_loss_and_grads(torch_twin(net), X, y)[1] if has_torch_twin(net) else None
    return param_checks(loss, grads, auto, fd_grads(net, X, y), net.dtype)


def param_checks(loss: float, grads: dict, auto: dict | None, fd: dict, dtype) -> list[ParamCheck]:
    """Each hand-written gradient tensor against autograd (NaN without it) and finite differences: max absolute and
    relative errors, relative to the scales ``GRAD_FLOOR``, ``fd_floor`` and, in float32, ``FLOAT32_FLOOR`` allow."""
    nan = float("nan")
    largest = max(float(np.abs(g).max(initial=0.0)) for g in grads.values())
    noise = FLOAT32_FLOOR * largest if dtype == np.float32 else 0.0
    floor, fd_scale = max(GRAD_FLOOR * largest, noise), max(fd_floor(loss), noise)
    return [ParamCheck(k, g.shape, nan if auto is None else max_abs_err(g, auto[k]),
                       nan if auto is None else max_rel_err(g, auto[k], floor),
                       max_abs_err(g, fd[k]), max_rel_err(g, fd[k], fd_scale)) for k, g in grads.items()]


def layer_sizes(depth: int, width: int) -> list[int]:
    """[N_INPUTS, width × depth, N_CLASSES]."""
    return [N_INPUTS] + [width] * depth + [N_CLASSES]


# ------------------------------------------------------------------- any manual.nn network
def model_margins(model: manual.nn.Sequential, X, loss: str) -> tuple[float, float]:
    """From one forward pass of ``X``: how close any input of an activation module (or the output pre-activation,
    for the loss's output activation) comes to a kink of that activation, and the smallest batch variance of any
    feature a batch-norm module normalises (inf without batch norm)."""
    steps = model.trace(X)
    points = [(module.activation, x) for _, module, x, _ in steps if isinstance(module, manual.nn.Activation)]
    points.append((manual.nn.loss.output_activation(loss), steps[-1][3]))
    kink = min((float(np.abs(z - k).min()) for act, z in points for k in act.kinks), default=float("inf"))
    variance = min((float(x.reshape(len(x), -1).var(axis=0).min()) for _, module, x, _ in steps
                    if isinstance(module, manual.nn.BatchNorm1d)), default=float("inf"))
    return kink, variance


def kink_free_model_batch(model: manual.nn.Sequential, loss: str, input_shape: tuple, n_classes: int, batch: int,
                          seed: int, margin: float = KINK_MARGIN, tries: int = 1000):
    """The first batch X ~ N(0, 1) (seeds seed, seed + 1, …) clear of kinks by ``margin`` and, with batch norm,
    whose normalised features all have a batch variance of at least ``BN_VARIANCE_MARGIN``; labels uniform."""
    for s in range(seed, seed + tries):
        rng = np.random.default_rng(s)
        X = rng.standard_normal((batch, *input_shape)).astype(model.dtype)
        kink, variance = model_margins(model, X, loss)
        if kink >= margin and variance >= BN_VARIANCE_MARGIN:
            return X, rng.integers(0, n_classes, size=batch)
    raise ValueError(f"no batch in {tries} tries keeps every pre-activation {margin} away from a kink (and every "
                     f"batch-normalised feature's variance above {BN_VARIANCE_MARGIN:g}); try another seed, init or "
                     "a larger --batch")


def autograd_grads(model: manual.nn.Sequential, X, y, loss: str) -> dict | None:
    """∂E/∂θ by autograd of ``torch_ref.mirror(model)`` with ``torch_ref.Criterion(loss)``, keyed like the state
    dict; None when the network or the loss has no torch twin (a plug-in without ``torch_fn``)."""
    try:
        criterion, twin = torch_ref.Criterion(loss), torch_ref.mirror(model)
    except ValueError:
        return None
    criterion(twin(torch.from_numpy(X)), torch.from_numpy(np.asarray(y))).backward()
    return {k: p.grad.numpy() for k, p in twin.named_parameters()}


def check_model(model: manual.nn.Sequential, X, y, loss: str) -> list[ParamCheck]:
    """∂E/∂θ of ``manual.nn.loss_and_grads`` against ``autograd_grads`` and against finite differences of the loss
    (on a float64 copy), one entry per parameter tensor (autograd errors NaN without a torch twin)."""
    value, grads = manual.nn.loss_and_grads(model, X, y, loss)
    twin = copy.deepcopy(model).to(np.float64)
    fd = fd_grads_of(twin.params, lambda: manual.nn.loss_value(twin, X, y, loss))
    return param_checks(value, grads, autograd_grads(model, X, y, loss), fd, model.dtype)


def run_grid(args) -> list[dict]:
    """One CSV row per (activation, loss, depth, parameter)."""
    rows = []
    for activation in args.activations:
        for loss in args.losses:
            for depth, batch_norm in itertools.product(args.depths, (False, True) if args.batch_norm else (False,)):
                net = manual.MLP(layer_sizes(depth, args.width), activation, loss, init=args.init,
                                 seed=args.seed, dtype=args.dtype, batch_norm=batch_norm)
                X, y = kink_free_batch(net, args.batch, args.seed)
                autograd = has_torch_twin(net)
                for c in check_network(net, X, y):
                    passed = (c.max_rel_err_autograd <= args.tol or not autograd) and c.max_rel_err_fd <= args.fd_tol
                    rows.append(dict(activation=activation, loss=loss, depth=depth, batch_norm=batch_norm,
                                     dtype=args.dtype, **c._asdict(), passed=passed))
    return rows


def summary(rows: list[dict]) -> str:
    """One line per (activation, loss) with its worst errors over depths and parameters."""
    lines = [f"{'activation':<11} {'loss':<14} {'worst rel err vs autograd':>26} {'vs finite differences':>22}  rows"]
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["activation"], row["loss"]), []).append(row)
    for (activation, loss), group in groups.items():
        auto = max(r["max_rel_err_autograd"] for r in group)
        fd = max(r["max_rel_err_fd"] for r in group)
        ok = sum(r["passed"] for r in group)
        lines.append(f"{activation:<11} {loss:<14} {auto:>26.2e} {fd:>22.2e}  {ok}/{len(group)} passed")
    return "\n".join(lines)
