"""Check a recurrent layer's backpropagation through time, and say in which tensor, gate, units and time step it
goes wrong.

``check_recurrent(module, x, hx=None, seed=0)`` takes a ``manual.nn`` ``RNN``, ``LSTM`` or ``GRU`` (or a subclass
with its own backward), runs it in float64 on a copy, and compares, for a random upstream gradient (∂E/∂output
and ∂E/∂final state, so E = Σ output·dout + Σ state·dstate):

1. every gradient (each parameter, ∂E/∂x, ∂E/∂ of the initial state) against autograd of its torch mirror
   (``torch_ref.mirror``: ``nn.LSTM`` …, float64). A failing tensor is split by gate (the row blocks of H:
   LSTM input/forget/cell/output, GRU reset/update/new) and unit (the row within the gate);
2. **when** it goes wrong: for s = 0, 1, …, T − 1 the same comparison for the objective truncated to the outputs
   t ≤ s (dout zeroed after s; the final state's gradient only at s = T − 1). Backpropagation through the
   truncated objective runs only steps s, s − 1, …, 0, so the first s at which a gate's gradient disagrees is
   the first step from which the error reaches it: "weight_hh_l0, forget gate, units 3 and 7: wrong from t = 4";
3. **where it enters**: at that first s*, the gates' ∂E/∂(pre-activation) of step s* itself, against autograd.
   Nothing has come back from later steps yet (they are truncated away), so the gates and units wrong there are
   where the error enters, before ∂E/∂h_{t−1} = δ_t·W_hh spreads it into every gate of the steps before:
   "the error enters at t = 4: output gate, units 3 and 7";
4. step by step (``report.steps``, a DataFrame, one row per layer and t): ∂E/∂h_t (the module's ``grad_h``) and
   the batch sum of the gates' ∂E/∂(pre-activation) (``grad_gates``), against autograd of torch's own cells
   (``nn.LSTMCell`` …, loaded with the same weights and stepped by hand, each h_t a tensor that ``retain_grad``s,
   each step with its own copy of the input bias, whose gradient is that sum);
5. every parameter gradient against finite differences of the module's own forward pass (random directions,
   as ``checks.directional_check``), with a tolerance that grows with the sequence length: see ``fd_allowance``.

Time steps are counted from 0, as output[:, t]. ``str(report)`` is the summary in the style of
``checks.GradReport``; ``report.tensors`` has the largest error of each tensor against each reference.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

import manual.nn
import torch_ref
from experiments.gradcheck.checks import ROUNDING, GradReport, power_of_two

GATE_NAMES = {"RNN": (None,), "LSTM": ("input", "forget", "cell", "output"), "GRU": ("reset", "update", "new")}
AUTOGRAD_TOL = 1e-8  # float64 against float64: the same sums in another order agree to ~1e-14 even at T = 50
FD_TOL = 10 * math.sqrt(np.finfo(np.float64).eps)  # ≈ 1.5e-7, checks.layer_tolerances's for float64
FD_STEP = np.finfo(np.float64).eps ** (1 / 3)
FD_DIRECTIONS = 2  # random directions per parameter tensor
FAILURE_COLUMNS = ["tensor", "gate", "units", "first_t", "abs_err", "rel_err"]
STEP_COLUMNS = ["layer", "t", "norm_manual", "norm_autograd", "abs_err", "rel_err", "gates_rel_err", "ok"]
MAX_STEP_LINES = 8  # failing rows of the per-step table shown in str(report)


@dataclass
class RecurrentReport(GradReport):
    """A ``GradReport`` whose failures are (tensor, gate, units, first time step), plus the per-step table."""

    steps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=STEP_COLUMNS))
    tensors: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def passed(self) -> bool:
        return self.failures.empty and not self.problems and bool(self.steps["ok"].all())

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"{self.subject}: {verdict} ({self.checked} comparisons)"]
        lines += [f"  {line}" for line in self.regions]
        bad = self.steps[~self.steps["ok"].astype(bool)]
        if len(bad):
            lines.append(f"  step by step against autograd (∂E/∂h_t, and the gates' ∂E/∂(pre-activation) summed over "
                         f"the batch): wrong at {len(bad)} of {len(self.steps)} (layer, step)s, from the last back:")
            shown = bad.sort_values(["layer", "t"], ascending=[False, False]).head(MAX_STEP_LINES)
            lines += [f"    layer {r.layer}, t = {r.t}: ‖∂E/∂h_t‖ manual {r.norm_manual:.4g}, autograd "
                      f"{r.norm_autograd:.4g}, rel err {r.rel_err:.2g}; gates rel err {r.gates_rel_err:.2g}"
                      for r in shown.itertuples()]
            lines += [f"    … {len(bad) - len(shown)} more"] if len(bad) > len(shown) else []
        lines += [f"  {line}" for line in self.problems]
        lines += [f"  ({note})" for note in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------ naming what is wrong
def units_text(indices, total: int | None, noun: str = "unit") -> str:
    """[3, 7] → "units 3 and 7"; a run → "units 0–9"; all ``total`` of them → "all 16 units"."""
    indices = sorted(int(i) for i in indices)
    if len(indices) == 1:
        return f"{noun} {indices[0]}"
    if total is not None and len(indices) == total:
        return f"all {total} {noun}s"
    runs, start = [], indices[0]
    for prev, cur in zip(indices, indices[1:] + [None]):
        if cur != prev + 1:
            runs.append(str(start) if start == prev else f"{start}–{prev}")
            start = cur
    if len(runs) == 1:
        return f"{noun}s {runs[0]}"
    if len(runs) > 6:
        return f"{noun}s {', '.join(runs[:6])} … ({len(indices)} in all)"
    return f"{noun}s {', '.join(runs[:-1])} and {runs[-1]}"


def blocks(name: str, shape: tuple, kind: str, hidden: int) -> list[tuple]:
    """How a tensor's gradient is split for naming: [(label, index of the block, how to locate within it)].

    Parameters: one block per gate (rows gate·H … gate·H + H − 1), unit = the row within it. ∂E/∂x
    (B, T, I): one block, located by time step. The initial state (L, B, H): one block per layer, by unit.
    """
    if name == "x":
        return [("input x", (slice(None),), None)]
    if name in ("h0", "c0"):
        return [(f"initial state {name} (layer {layer})", (layer,), "last") for layer in range(shape[0])]
    gates = GATE_NAMES[kind]
    return [(name + (f", {gate} gate" if gate else ""), (slice(g * hidden, (g + 1) * hidden),), "rows")
            for g, gate in enumerate(gates)]


def bad_mask(analytic, reference, tol=AUTOGRAD_TOL):
    """Elements with |a − r| > tol·max|r| (the tensor's scale; an all-zero reference is judged absolutely)."""
    scale = max(float(np.abs(reference).max(initial=0.0)), 1e-300)
    err = np.abs(analytic - reference)
    return err > tol * scale, err, scale


# ------------------------------------------------------------------------------ the two implementations
def kind_of(module) -> str:
    for kind in GATE_NAMES:
        if isinstance(module, getattr(manual.nn, kind)):
            return kind
    raise ValueError(f"check_recurrent checks manual.nn.RNN, LSTM or GRU, got {type(module).__name__}")


def state_parts(state, kind: str) -> tuple:
    return tuple(state) if kind == "LSTM" else (state,)


def manual_gradients(module, x, hx, dout, dstate, kind: str) -> dict:
    """{tensor name: ∂E/∂tensor} from the module's backward (which must follow its forward on x, hx)."""
    dx = module.backward((dout, None if dstate is None else (dstate if kind == "LSTM" else dstate[0])))
    grads = {**{k: np.array(v) for k, v in module.grads.items()}, "x": dx}
    if hx is not None:
        for name, g in zip(("h0", "c0"), state_parts(module.grad_hx, kind)):
            grads[name] = g
    return grads


def torch_gradients(twin, xt, hxt, out, state, dout, dstate, names) -> dict:
    """{tensor name: autograd's ∂E/∂tensor} of E = Σ out·dout (+ Σ state·dstate), graph kept for more calls."""
    E = (out * torch.from_numpy(dout)).sum()
    if dstate is not None:
        E = E + sum((s * torch.from_numpy(d)).sum() for s, d in zip(state, dstate))
    params = dict(twin.named_parameters())
    inputs = [params[n] if n in params else xt if n == "x" else hxt[("h0", "c0").index(n)] for n in names]
    grads = torch.autograd.grad(E, inputs, retain_graph=True, allow_unused=True)
    return {n: (np.zeros(tuple(t.shape)) if g is None else g.numpy()) for n, g, t in zip(names, grads, inputs)}


def cell_gradients(twin, kind: str, x, hx, dout, dstate) -> tuple[np.ndarray, np.ndarray]:
    """Autograd's ∂E/∂h_t (L, B, T, H) and Σ_batch ∂E/∂(gate pre-activations at t) (L, T, G·H), step by step.

    torch's cell of the same kind (``nn.LSTMCell``, ``nn.GRUCell``, ``nn.RNNCell``) gets each layer's weights and
    is stepped by hand; every h_t is a tensor of its own that ``retain_grad``s, and every step adds its own copy
    of the input bias b_ih (a leaf; zeros when the layer has none), whose gradient is therefore the batch sum
    of that step's ∂E/∂(pre-activations): δ_t (for the GRU, of the input projection: [δ_r, δ_z, δ_n]).
    """
    L, H = twin.num_layers, twin.hidden_size
    B, T, _ = x.shape
    seq = torch.from_numpy(x)
    finals, kept_h, kept_b = [], [], []
    for layer in range(L):
        kwargs = {"nonlinearity": twin.nonlinearity} if kind == "RNN" else {}
        cell = getattr(torch.nn, f"{kind}Cell")(seq.shape[-1], H, dtype=torch.float64, **kwargs)
        weights = {k: getattr(twin, f"{k}_l{layer}") if twin.bias or k.startswith("weight") else
                   torch.zeros_like(getattr(cell, k)) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        state = [torch.from_numpy(np.ascontiguousarray(h[layer])) for h in hx] if hx is not None else \
            [torch.zeros(B, H, dtype=torch.float64)] * (2 if kind == "LSTM" else 1)
        hs, bs = [], []
        for t in range(T):
            b_t = weights["bias_ih"].detach().clone().requires_grad_(True)
            args = (seq[:, t], tuple(state) if kind == "LSTM" else state[0])
            result = torch.func.functional_call(cell, {**weights, "bias_ih": b_t}, args)
            state = list(result) if kind == "LSTM" else [result]
            state[0].retain_grad()
            hs.append(state[0])
            bs.append(b_t)
        kept_h.append(hs)
        kept_b.append(bs)
        finals.append(state)
        seq = torch.stack(hs, dim=1)
    E = (seq * torch.from_numpy(dout)).sum()
    if dstate is not None:
        for k, d in enumerate(dstate):
            E = E + (torch.stack([f[k] for f in finals]) * torch.from_numpy(d)).sum()
    E.backward()
    grad_h = np.stack([np.stack([h.grad.numpy() for h in hs], axis=1) for hs in kept_h])
    grad_b = np.stack([np.stack([b.grad.numpy() for b in bs]) for bs in kept_b])
    return grad_h, grad_b


# ------------------------------------------------------------------------------ finite differences
def fd_allowance(out, dout, state, dstate, h: float) -> float:
    """The rounding noise allowed in a centred difference of E with step h, for a sequence of T steps.

    A centred difference divides the rounding error of E by h. E = Σ_t out_t·dout_t (+ the final state's term),
    and out_t is the end of a chain of t + 1 steps, each adding a rounding error of relative size ε that the
    recurrence carries on; so out_t's error is about (t + 1)·ε·|out_t|, and E's about
    ε·Σ_t (t + 1)·|out_t·dout_t| (the state's term weighted T). For outputs of similar size this grows like T²,
    where the usual allowance ε·Σ|out·dout| of ``checks.check_backward`` grows like T: a long sequence needs it.
    """
    T = out.shape[1]
    weights = np.arange(1, T + 1).reshape(1, T, 1)
    total = float(np.sum(weights * np.abs(out * dout)))
    if dstate is not None:
        total += T * sum(float(np.sum(np.abs(s * d))) for s, d in zip(state, dstate))
    return ROUNDING * np.finfo(np.float64).eps * total / h


def fd_check(module, x, hx, dout, dstate, grads, kind, rng) -> tuple[list, list]:
    """Each parameter's gradient against d/dε E(θ + ε·u) for random directions u (fourth-order centred
    difference, step FD_STEP·max(1, max|θ|)), relative tolerance FD_TOL plus ``fd_allowance``. Returns
    (rows for ``report.tensors``, failure lines)."""
    def objective():
        out, state = module.forward(x, hx)
        E = float(np.sum(out * dout))
        if dstate is not None:
            E += sum(float(np.sum(s * d)) for s, d in zip(state_parts(state, kind), dstate))
        return E

    out, state = module.forward(x, hx)
    rows, lines = [], []
    for name, theta in module.params.items():
        worst = 0.0
        for _ in range(FD_DIRECTIONS):
            u = rng.standard_normal(theta.shape)
            h = float(power_of_two(FD_STEP * max(1.0, float(np.abs(theta).max()))))
            saved = theta.copy()
            values = []
            for k in (1, -1, 2, -2):
                theta[...] = saved + k * h * u
                values.append(objective())
            theta[...] = saved
            numeric = (8 * (values[0] - values[1]) - (values[2] - values[3])) / (12 * h)
            analytic = float(np.sum(grads[name] * u))
            err = abs(analytic - numeric)
            allowed = FD_TOL * max(abs(analytic), abs(numeric)) + fd_allowance(out, dout, state_parts(state, kind),
                                                                                dstate, h)
            worst = max(worst, err / max(abs(numeric), 1e-300))
            if err > allowed:
                lines.append(f"{name}: a random directional derivative is {analytic:.6g} by backward, {numeric:.6g} "
                             f"by finite differences (allowed {allowed:.2g})")
                break
        rows.append((name, worst))
    module.forward(x, hx)  # leave the module's cache as it was
    return rows, lines


# ------------------------------------------------------------------------------ the check
def check_recurrent(module, x, hx=None, seed: int = 0, finite_differences: bool = True) -> RecurrentReport:
    """Check ``module``'s backward through time against autograd (and finite differences); see the module doc.

    Args:
        module: a ``manual.nn.RNN``, ``LSTM`` or ``GRU`` (a subclass may replace its backward); it is copied and
            checked in float64, and itself left untouched.
        x: (B, T, input_size); hx: the initial state, as ``module.forward`` takes it, or None.
        seed: seeds the random upstream gradient and the finite differences' directions.
        finite_differences: also compare every parameter gradient with finite differences of the forward pass.
    """
    kind = kind_of(module)
    ref = copy.deepcopy(module).to(np.float64)
    x = np.asarray(x, dtype=np.float64)
    if hx is not None:
        hx = tuple(np.asarray(h, dtype=np.float64) for h in state_parts(hx, kind))
        hx_arg = hx if kind == "LSTM" else hx[0]
    else:
        hx_arg = None
    rng = np.random.default_rng(seed)
    out, state = ref.forward(x, hx_arg)
    B, T, H = out.shape
    dout = rng.standard_normal(out.shape)
    dstate = tuple(rng.standard_normal(s.shape) for s in state_parts(state, kind))

    twin = torch_ref.mirror(ref)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    hxt = None if hx is None else tuple(torch.from_numpy(h.copy()).requires_grad_(True) for h in hx)
    out_t, state_t = twin(xt, None if hxt is None else (hxt if kind == "LSTM" else hxt[0]))
    state_t = state_parts(state_t, kind)

    grads = manual_gradients(ref, x, hx, dout, dstate, kind)
    grad_h, grad_gates = ref.grad_h, ref.grad_gates
    names = list(grads)
    auto = torch_gradients(twin, xt, hxt, out_t, state_t, dout, dstate, names)
    output_err = rel_err(out, out_t.detach().numpy())
    problems = [f"output differs from torch's: max rel err {output_err:.2g}"] if output_err > AUTOGRAD_TOL else []

    # 1. the whole gradient: which tensors, gates and units
    tensor_rows, failing = [], []  # failing: (tensor, label, index, unit kind, mask, err, scale)
    for name in names:
        if grads[name] is None or grads[name].shape != auto[name].shape:
            problems.append(f"gradient {name!r} has shape {getattr(grads[name], 'shape', None)}, torch's "
                            f"{auto[name].shape}")
            continue
        mask, err, scale = bad_mask(grads[name], auto[name])
        tensor_rows.append((name, float(err.max(initial=0.0)), float(err.max(initial=0.0)) / scale))
        for label, index, by in blocks(name, grads[name].shape, kind, H):
            if mask[index].any():
                failing.append((name, label, index, by, mask[index], err[index], scale))

    # 2. when: the first s whose truncated objective's gradient disagrees, per failing block
    first, scanned = {}, 0
    for s in range(T):
        if len(first) == len(failing):
            break
        d, ds = truncated(dout, dstate, s)
        ref.forward(x, hx_arg)
        g_s = manual_gradients(ref, x, hx, d, ds, kind)
        a_s = torch_gradients(twin, xt, hxt, out_t, state_t, d, ds, names)
        scanned += 1
        for i, (name, label, index, *_) in enumerate(failing):
            if i not in first and bad_mask(g_s[name], a_s[name])[0][index].any():
                first[i] = s
    rows = []
    for i, (name, label, index, by, mask, err, scale) in enumerate(failing):
        worst = float(err.max())
        rows.append((name, label, located(mask, by, H), first.get(i, T), worst, worst / scale))
    regions = region_lines(rows, T)
    failures = pd.DataFrame(rows, columns=FAILURE_COLUMNS)

    # 3. where the error enters: the gates of step s*, the first wrong one, when backpropagation starts there
    if first:
        s_star = min(first.values())
        d, ds = truncated(dout, dstate, s_star)
        ref.forward(x, hx_arg)
        manual_gradients(ref, x, hx, d, ds, kind)
        regions.insert(0, entry_line(ref.grad_gates[:, :, s_star].sum(axis=1),
                                     cell_gradients(twin, kind, x, hx, d, ds)[1][:, s_star], s_star, kind, H))
    ref.forward(x, hx_arg)
    ref.backward((dout, dstate if kind == "LSTM" else dstate[0]))  # the module as after the full check

    # 4. ∂E/∂h_t and the gates' gradients step by step against torch's cells (the full objective)
    cell_h, cell_gates = cell_gradients(twin, kind, x, hx, dout, dstate)
    steps = step_table(grad_h, cell_h, grad_gates.sum(axis=1), cell_gates)

    # 5. finite differences
    tensors = pd.DataFrame(tensor_rows, columns=["tensor", "max_abs_err_autograd", "max_rel_err_autograd"])
    notes = [f"float64 copy; B = {B}, T = {T}, H = {H}, {ref.num_layers} layer(s), "
             f"{'an initial state' if hx is not None else 'zero initial state'}; random ∂E/∂output and ∂E/∂state, "
             f"seed {seed}; against autograd of torch's {kind} (tolerance {AUTOGRAD_TOL:g} of each tensor's largest "
             "entry; rel: the largest error divided by that entry); time located by truncating the objective to the "
             "outputs t ≤ s"]
    if finite_differences:
        fd_rows, fd_lines = fd_check(ref, x, hx_arg, dout, dstate, grads, kind, rng)
        tensors = tensors.merge(pd.DataFrame(fd_rows, columns=["tensor", "max_rel_err_fd"]), how="left")
        problems += [f"finite differences: {line}" for line in fd_lines]
        notes.append(f"finite differences: {FD_DIRECTIONS} random directions per parameter, step "
                     f"{FD_STEP:.2g}·max(1, max|θ|), relative tolerance {FD_TOL:.2g} plus the rounding noise of a "
                     "T-step sequence (64·ε·Σ_t (t+1)·|out_t·dout_t| / step: grows like T²)")
    checked = sum(g.size for g in grads.values()) * (1 + scanned) + cell_h.size + cell_gates.size
    return RecurrentReport(f"{type(module).__name__} ({ref.extra_repr()})", failures, problems=problems,
                           regions=regions, notes=notes, checked=checked, steps=steps, tensors=tensors)


def truncated(dout, dstate, s: int):
    """The upstream gradient of the objective truncated to the outputs t ≤ s (the state's only when s = T − 1)."""
    d = dout.copy()
    d[:, s + 1:] = 0
    return d, (dstate if s == dout.shape[1] - 1 else None)


def entry_line(manual_delta, auto_delta, s: int, kind: str, hidden: int) -> str:
    """Which gates and units of step s are wrong when backpropagation starts at s (nothing has come back from
    later steps yet, so what is wrong there is where the error enters). manual_delta, auto_delta: (L, G·H), the
    batch sums of ∂E/∂(gate pre-activations) at s of each layer."""
    mask = bad_mask(manual_delta, auto_delta)[0]
    if not mask.any():
        return (f"the error appears at t = {s}, but every gate's ∂E/∂(pre-activation) there is right: it is in how "
                "the per-step gradients are summed into the weights (or in ∂E/∂x, ∂E/∂ of the initial state)")
    parts = []
    for layer in range(mask.shape[0]):
        for g, gate in enumerate(GATE_NAMES[kind]):
            units = np.flatnonzero(mask[layer, g * hidden:(g + 1) * hidden])
            if units.size:
                where = f"{gate} gate, " if gate else ""
                parts.append(f"{where}{units_text(units, hidden)}" + (f" of layer {layer}" if mask.shape[0] > 1
                                                                      else ""))
    return (f"the error enters at t = {s}: {'; '.join(parts)} (∂E/∂(pre-activation) of step {s} when "
            f"backpropagation starts there)")


def region_lines(rows: list, T: int) -> list:
    """One line per (tensor, units, first step), the gates that share them named together, earliest first:
    "weight_hh_l0, input, cell and output gates, all 8 units: wrong from t = 2 (max abs err …, rel …)"."""
    groups = {}
    for name, label, where, first_t, worst, rel in rows:
        gate = label[len(name) + 2:].removesuffix(" gate") if label.startswith(f"{name}, ") else None
        key = (first_t, name if gate is not None else label, where)
        group = groups.setdefault(key, {"gates": [], "worst": 0.0, "rel": 0.0})
        group["gates"] += [gate] if gate else []
        group["worst"], group["rel"] = max(group["worst"], worst), max(group["rel"], rel)
    lines = []
    for (first_t, what, where), g in sorted(groups.items(), key=lambda item: item[0][0]):
        gates = g["gates"]
        if gates:
            what += ", " + (gates[0] if len(gates) == 1 else ", ".join(gates[:-1]) + " and " + gates[-1])
            what += " gate" if len(gates) == 1 else " gates"
        when = f"wrong from t = {first_t}" if first_t < T else "wrong, not reproduced by a truncated objective"
        lines.append(f"{what}, {where}: {when} (max abs err {g['worst']:.2g}, rel {g['rel']:.2g})")
    return lines


def located(mask, by, hidden: int) -> str:
    """Where in a block the failing elements are: units (parameters, initial state) or time steps (∂E/∂x)."""
    if by == "rows":
        return units_text(np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)), hidden)
    if by == "last":
        return units_text(np.flatnonzero(mask.reshape(-1, mask.shape[-1]).any(axis=0)), hidden)
    return units_text(np.flatnonzero(mask.any(axis=(0, 2))), None, noun="time step")


def rel_err(a, b) -> float:
    return float(np.abs(a - b).max(initial=0.0)) / max(float(np.abs(b).max(initial=0.0)), 1e-300)


def step_table(manual_h, auto_h, manual_gates, auto_gates) -> pd.DataFrame:
    """One row per (layer, t): ‖∂E/∂h_t‖ (over batch and units) of both, the largest error relative to the step's
    largest |∂E/∂h_t| by autograd, the same relative error of the batch-summed gate gradients, and whether both
    are within ``AUTOGRAD_TOL``."""
    rows = []
    for layer in range(manual_h.shape[0]):
        for t in range(manual_h.shape[2]):
            a, r = manual_h[layer, :, t], auto_h[layer, :, t]
            err, gate_err = rel_err(a, r), rel_err(manual_gates[layer, t], auto_gates[layer, t])
            rows.append((layer, t, float(np.linalg.norm(a)), float(np.linalg.norm(r)), float(np.abs(a - r).max()),
                         err, gate_err, err <= AUTOGRAD_TOL and gate_err <= AUTOGRAD_TOL))
    return pd.DataFrame(rows, columns=STEP_COLUMNS)
