"""Check one function's hand-written gradient, and say *where* it is wrong.

- ``check_activation(act)``: an activation's ``df`` against centred finite differences of its ``f`` over a
  dense grid of z (−50…50, plus 0, ±1e-8, ±1e4, a log grid out to 1e4 and its kinks), in float64; against
  autograd of its ``torch_fn`` when there is one, and ``f`` against ``torch_fn`` itself; and its stability:
  no NaN, inf or floating-point warning for |z| ≤ 1e4 in float32 and float64.
- ``check_backward(forward, backward, inputs)``: a layer in CS231n's convention, ``forward(**inputs) ->
  (out, cache)`` and ``backward(dout, cache) -> {name: grad}``, against centred finite differences of
  L = Σ out·dout for a random upstream gradient dout, element by element (or, for large inputs, by random
  directional derivatives first, as ``torch.autograd.gradcheck(fast_mode=True)`` does).
- ``check_loss(loss)``: a ``manual.losses.Loss`` as a layer from the output pre-activation z to the loss.

Each returns a ``GradReport``: ``.passed``; ``.failures``, the failing points worst first; ``.kinks``;
``.problems`` (what is wrong that is not one number: missing keys, wrong shapes, NaN, warnings); ``str()``,
a summary per failing region (activations) or input (layers).

Kinks are not errors. Where f has a kink (ReLU at 0) a centred difference straddling it is no derivative:
a failing point is first retried with smaller steps, and if the left and right one-sided differences still
disagree there, the analytic value must lie between them (any subgradient); the point is then reported as a
kink, not a failure.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.errors import raised

ACTIVATION_COLUMNS = ["check", "z", "analytic", "numeric", "abs_err", "rel_err"]
LAYER_COLUMNS = ["input", "index", "analytic", "numeric", "abs_err", "rel_err"]
KINK_COLUMNS = ["where", "z", "left", "right", "analytic"]
LAYER_KINK_COLUMNS = KINK_COLUMNS + ["input", "index"]  # a layer's kinks also name the input and the element

# Activations (float64 throughout): centred difference of step 2^⌊log2(1e-4·max(1, |z|))⌋ (fourth order:
# truncation ~h⁴, rounding ~ε·|f|/h), compared with relative tolerance FD_TOL plus an absolute allowance
# FD_TOL·DERIVATIVE_FLOOR + ROUNDING·ε·max|f|/h for the finite difference's own rounding noise.
ACT_STEP = 1e-4
FD_TOL = 1e-6
DERIVATIVE_FLOOR = 1e-3
ROUNDING = 64
# df against autograd of torch_fn, and f against torch_fn: two exact formulas, equal up to rounding.
AUTOGRAD_TOL, AUTOGRAD_ATOL = 1e-8, 1e-12
RETRY_STEPS = (1 / 8, 1 / 64, 1 / 512)  # a failing point is retried at these fractions of its step
STABLE_UP_TO = 1e4


@dataclass
class GradReport:
    """The outcome of one check. ``passed`` is true when there are no failures and no problems."""

    subject: str
    failures: pd.DataFrame  # the failing points, worst first (columns: ACTIVATION_COLUMNS or LAYER_COLUMNS)
    kinks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=KINK_COLUMNS))
    problems: list = field(default_factory=list)  # one line each: missing keys, shapes, NaN, warnings
    regions: list = field(default_factory=list)  # one line per failing region (or input), worst point first
    notes: list = field(default_factory=list)  # how it was checked: grid, steps, tolerances, dtype, fast mode
    checked: int = 0  # points (or elements, or directions) compared

    @property
    def passed(self) -> bool:
        return self.failures.empty and not self.problems

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"{self.subject}: {verdict} ({self.checked} comparisons"
                 + (f", {len(self.kinks)} at kinks" if len(self.kinks) else "") + ")"]
        lines += [f"  {line}" for line in self.problems + self.regions]
        if len(self.kinks):
            lines += [f"  {line}" for line in describe_kinks(self.kinks)]
        lines += [f"  ({note})" for note in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------ shared numerics
def power_of_two(x: np.ndarray) -> np.ndarray:
    """The largest power of two ≤ x: z ± h is then exact for the z of our grids, so the step is what it says."""
    return np.exp2(np.floor(np.log2(x)))


def centred(f, x, h):
    """Fourth-order centred difference [8(f(x+h) − f(x−h)) − (f(x+2h) − f(x−2h))] / 12h, element-wise."""
    return (8 * (f(x + h) - f(x - h)) - (f(x + 2 * h) - f(x - 2 * h))) / (12 * h)


def one_sided(f, x, h):
    """Second-order one-sided differences from the left and from the right: their stencils never cross x."""
    fx = f(x)
    right = (-3 * fx + 4 * f(x + h) - f(x + 2 * h)) / (2 * h)
    left = (3 * fx - 4 * f(x - h) + f(x - 2 * h)) / (2 * h)
    return left, right


def errors(analytic, numeric) -> tuple[np.ndarray, np.ndarray]:
    """|a − n| and |a − n| / max(|a|, |n|) (0 where both are 0; NaN where either is not finite)."""
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_err = np.abs(a - n)
        scale = np.maximum(np.abs(a), np.abs(n))
        rel = np.where(abs_err == 0, 0.0, abs_err / np.where(scale == 0, 1.0, scale))
    return abs_err, np.where(np.isfinite(a) & np.isfinite(n), rel, np.nan)


def worst_first(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by relative, then absolute error, largest first (NaN, never within tolerance, on top)."""
    key = df["rel_err"].fillna(np.inf)
    order = np.lexsort((-df["abs_err"].fillna(np.inf).to_numpy(), -key.to_numpy()))
    return df.iloc[order].reset_index(drop=True)


def fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, (float, np.floating)) else str(x)


def describe_kinks(kinks: pd.DataFrame) -> list:
    """One line per kink (points within a step of each other are one kink)."""
    lines = []
    for where, group in kinks.groupby("where", sort=False):
        r = group.iloc[np.argmin(np.abs(group["z"].to_numpy(dtype=float) - group["at"].to_numpy(dtype=float)))] \
            if "at" in group else group.iloc[0]
        more = f" (and {len(group) - 1} points next to it)" if len(group) > 1 else ""
        lines.append(f"kink at {where}{more}: one-sided derivatives {fmt(r['left'])} and {fmt(r['right'])}, "
                     f"analytic {fmt(r['analytic'])} lies between them (not an error)")
    return lines


# ------------------------------------------------------------------------------ activations
def activation_grid(kinks=()) -> np.ndarray:
    """−50…50 in steps of 0.05, ±(1e-8 … 1e4) at 4 points per decade, 0, and each kink with points at ±1e-8."""
    tails = np.logspace(-8, 4, 49)
    kinks = np.asarray(kinks, dtype=np.float64)
    return np.unique(np.concatenate([np.round(np.linspace(-50, 50, 2001), 10), tails, -tails, [0.0],
                                     kinks, kinks - 1e-8, kinks + 1e-8]))


def check_activation(act, torch_fn=None) -> GradReport:
    """Check ``act.df`` (a ``manual.activations.Activation``) and say where it is wrong; see the module doc.

    ``torch_fn`` replaces ``act.torch_fn`` as the autograd reference (the gradcheck command passes PyTorch's
    own module for a built-in, which has no ``torch_fn`` of its own).
    """
    torch_fn = act.torch_fn if torch_fn is None else torch_fn
    z = activation_grid(act.kinks)
    problems = stability_problems(act, z)
    with np.errstate(all="ignore"):
        fz, dz = np.asarray(act.f(z), dtype=np.float64), np.asarray(act.df(z), dtype=np.float64)
    usable = (np.isfinite(fz) & np.isfinite(dz)) if fz.shape == dz.shape == z.shape else np.zeros(z.shape, bool)
    z_ok = z[usable]
    frames, kinks = [], []

    def f64(x):
        with np.errstate(all="ignore"):
            return np.asarray(act.f(x), dtype=np.float64)

    # df against finite differences of f
    h = power_of_two(ACT_STEP * np.maximum(1.0, np.abs(z_ok)))
    analytic = dz[usable]
    numeric = centred(f64, z_ok, h)
    fail = ~within_fd(analytic, numeric, f64, z_ok, h)
    for fraction in RETRY_STEPS:  # a stencil that straddled a kink of f or f'' may pass with a smaller step
        if not fail.any():
            break
        idx = np.flatnonzero(fail)
        hs = power_of_two(h[idx] * fraction)
        retry = centred(f64, z_ok[idx], hs)
        ok = within_fd(analytic[idx], retry, f64, z_ok[idx], hs)
        numeric[idx[ok]] = retry[ok]
        fail[idx[ok]] = False
    fail = classify_kinks(fail, z_ok, analytic, f64, h, act.kinks, kinks)
    frames.append(failure_frame("df vs finite differences", z_ok, analytic, numeric, fail))
    checked = z_ok.size

    if torch_fn is not None:
        values, grads, error = autograd_of(torch_fn, z_ok)
        if error:
            problems.append(error)
        else:
            fz_ok = fz[usable]
            for check, a, n in (("f vs torch_fn", fz_ok, values), ("df vs autograd", analytic, grads)):
                abs_err, _ = errors(a, n)
                bad = ~(abs_err <= AUTOGRAD_TOL * np.maximum(np.abs(a), np.abs(n)) + AUTOGRAD_ATOL)
                if check == "df vs autograd":  # autograd's choice at a kink may be another subgradient
                    bad = classify_kinks(bad, z_ok, analytic, f64, h, act.kinks, kinks)
                frames.append(failure_frame(check, z_ok, a, n, bad))
            checked += 2 * z_ok.size
    failures = worst_first(pd.concat(frames, ignore_index=True))
    kink_rows = cluster_kinks(pd.DataFrame(kinks, columns=KINK_COLUMNS + ["at"]).drop_duplicates(["where", "z"]))
    notes = [f"float64, {z.size} points from -1e4 to 1e4; step 2^floor(log2(1e-4·max(1,|z|))), relative tolerance "
             f"{FD_TOL:g} against finite differences, {AUTOGRAD_TOL:g} against autograd"
             + ("" if torch_fn is not None else "; no torch_fn, so no autograd reference")]
    return GradReport(f"activation {act.name!r}", failures, kink_rows, problems,
                      regions(failures, z_ok), notes, checked)


def within_fd(analytic, numeric, f, z, h) -> np.ndarray:
    """|a − n| ≤ FD_TOL·max(|a|, |n|, DERIVATIVE_FLOOR) + the rounding noise of the difference."""
    fmax = np.maximum.reduce([np.abs(f(z + k * h)) for k in (-2, -1, 1, 2)])
    noise = ROUNDING * np.finfo(np.float64).eps * np.maximum(fmax, 1e-300) / h
    abs_err, _ = errors(analytic, numeric)
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), DERIVATIVE_FLOOR)
    return abs_err <= FD_TOL * scale + noise


def classify_kinks(fail, z, analytic, f, h, declared, kinks: list) -> np.ndarray:
    """Failing points where f has a kink (its one-sided derivatives differ) and the analytic value lies between
    them: appended to ``kinks`` and no longer failing. Returns the remaining failures."""
    idx = np.flatnonzero(fail)
    if idx.size == 0:
        return fail
    left, right = one_sided(f, z[idx], h[idx])
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    spread = hi - lo
    scale = np.maximum(np.maximum(np.abs(left), np.abs(right)), DERIVATIVE_FLOOR)
    a = analytic[idx]
    is_kink = (spread > 1e-4 * scale) & (a >= lo - FD_TOL * scale) & (a <= hi + FD_TOL * scale)
    fail = fail.copy()
    for i in np.flatnonzero(is_kink):
        zi = z[idx[i]]
        near = [k for k in declared if abs(zi - k) <= 4 * h[idx[i]]]
        at = near[0] if near else float(zi)
        kinks.append((f"z = {fmt(at)}", zi, left[i], right[i], a[i], at))
        fail[idx[i]] = False
    return fail


def cluster_kinks(kinks: pd.DataFrame) -> pd.DataFrame:
    """Undeclared kink points closer than 1e-3·max(1, |z|) to each other are one kink, named after the point
    where the one-sided derivatives differ most (the kink itself; its neighbours' stencils only reach it)."""
    if kinks.empty:
        return kinks
    kinks = kinks.sort_values("z").reset_index(drop=True)
    z = kinks["z"].to_numpy(dtype=float)
    cluster = np.concatenate([[0], np.cumsum(np.diff(z) > 1e-3 * np.maximum(1.0, np.abs(z[1:])))])
    spread = (kinks["left"] - kinks["right"]).abs().to_numpy(dtype=float)
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        declared = kinks.loc[members, "at"].to_numpy(dtype=float) != z[members]
        if not declared.any():
            at = z[members[np.argmax(spread[members])]]
            kinks.loc[members, "at"] = at
            kinks.loc[members, "where"] = f"z = {fmt(at)}"
    return kinks


def failure_frame(check, z, analytic, numeric, fail) -> pd.DataFrame:
    abs_err, rel = errors(analytic[fail], numeric[fail])
    return pd.DataFrame({"check": check, "z": z[fail], "analytic": analytic[fail], "numeric": numeric[fail],
                         "abs_err": abs_err, "rel_err": rel}, columns=ACTIVATION_COLUMNS)


def regions(failures: pd.DataFrame, grid: np.ndarray) -> list:
    """One line per maximal run of neighbouring failing grid points of each check, worst point named."""
    lines = []
    position = {float(v): i for i, v in enumerate(grid)}
    what = {"df vs finite differences": ("df wrong", "analytic", "numeric"),
            "df vs autograd": ("df disagrees with autograd of torch_fn", "analytic", "autograd"),
            "f vs torch_fn": ("f differs from torch_fn", "f", "torch_fn")}
    for check, group in failures.groupby("check", sort=False):
        group = group.assign(pos=[position[float(v)] for v in group["z"]]).sort_values("pos")
        run_id = (group["pos"].diff() != 1).cumsum()
        for _, run in group.groupby(run_id):
            worst = worst_first(run).iloc[0]
            lo, hi = run["z"].min(), run["z"].max()
            at_lo, at_hi = lo == grid.min(), hi == grid.max()
            span = ("for every z" if at_lo and at_hi else f"at z = {fmt(lo)}" if lo == hi else
                    f"for z ≤ {fmt(hi)}" if at_lo else f"for z ≥ {fmt(lo)}" if at_hi else
                    f"for {fmt(lo)} ≤ z ≤ {fmt(hi)}")
            label, a_name, n_name = what[check]
            count = f" ({len(run)} points)" if len(run) > 1 else ""
            lines.append(f"{label} {span}{count}: at z = {fmt(worst['z'])} {a_name} {fmt(worst['analytic'])}, "
                         f"{n_name} {fmt(worst['numeric'])} (abs err {worst['abs_err']:.2g}, rel err "
                         f"{worst['rel_err']:.2g})")
    return lines


def autograd_of(torch_fn, z: np.ndarray):
    """torch_fn(z) and its autograd derivative in float64, or an error line if torch_fn fails."""
    import torch

    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    try:
        out = torch_fn(zt)
        (grad,) = torch.autograd.grad(out.sum(), zt)
    except Exception as err:  # the user's torch_fn
        return None, None, f"torch_fn failed on float64 tensors: {raised(err)}"
    if tuple(out.shape) != z.shape:
        return None, None, f"torch_fn returned shape {tuple(out.shape)} for z of shape {z.shape}"
    return out.detach().numpy().astype(np.float64), grad.numpy().astype(np.float64), None


def stability_problems(act, z64: np.ndarray) -> list:
    """f and df for |z| ≤ 1e4 in float32 and float64: no exception, warning, NaN or inf; z's shape and dtype."""
    problems = []
    for dtype in (np.float32, np.float64):
        z = z64.astype(dtype)
        for what, fn in (("f", act.f), ("df", act.df)):
            out, error = quiet_call(fn, z)
            name = np.dtype(dtype).name
            if error is not None:
                bad = [float(v) for v in z if quiet_call(fn, np.array([v], dtype=dtype))[1] is not None]
                where = f" at z = {', '.join(fmt(v) for v in bad[:3])}{' …' if len(bad) > 3 else ''}" if bad else ""
                problems.append(f"{what} is not stable in {name}: {error}{where}")
                continue
            if not isinstance(out, np.ndarray) or out.shape != z.shape:
                problems.append(f"{what} returned shape {getattr(out, 'shape', type(out).__name__)} for z of shape "
                                f"{z.shape} ({name})")
                continue
            if out.dtype != z.dtype:
                problems.append(f"{what} returned {out.dtype} for {name} z (keep z's dtype)")
            bad = ~np.isfinite(out)
            if bad.any():
                values = z[bad]
                problems.append(f"{what} is {out[bad][0]} at z = {', '.join(fmt(float(v)) for v in values[:3])}"
                                f"{' …' if values.size > 3 else ''} in {name} ({values.size} points; |z| ≤ "
                                f"{STABLE_UP_TO:g} must stay finite)")
    return problems


def quiet_call(fn, z):
    """fn(z) with every floating-point problem (overflow, invalid, divide by zero; not underflow, which is the
    correctly rounded answer) and every warning turned into an error message."""
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
        warnings.simplefilter("error")
        try:
            return fn(z.copy()), None
        except Exception as err:
            return None, raised(err)


# ------------------------------------------------------------------------------ layers
FAST_THRESHOLD = 2000  # input elements above which fast mode (directional derivatives) is the default
DIRECTIONS = 3  # random directions per input in fast mode


def layer_tolerances(dtype) -> tuple[float, float]:
    """(step, tolerance) for inputs of this dtype: step ε^(1/3) (fourth-order difference: truncation ~h⁴,
    negligible; rounding ~ε·Σ|out·dout|/h, allowed for separately), relative tolerance 10·√ε."""
    eps = np.finfo(dtype).eps
    return float(eps ** (1 / 3)), float(10 * math.sqrt(eps))


def check_backward(forward, backward, inputs: dict, *, seed: int = 0, fast: bool | None = None,
                   name: str = "layer", reference=None) -> GradReport:
    """Check a layer's ``backward`` against finite differences of its ``forward``; see the module doc.

    Args:
        forward: ``forward(**inputs) -> (out, cache)``.
        backward: ``backward(dout, cache) -> {input_name: gradient}`` for every floating-point array input.
        inputs: the keyword arguments of ``forward``; floating-point arrays are checked, anything else (labels,
            options) is passed through unchanged. float64 by default; float32 arrays are checked with a step
            and tolerance derived from float32's ε (``layer_tolerances``), and the report says so.
        seed: seeds the random upstream gradient dout and the fast mode's directions.
        fast: compare random directional derivatives vᵀJu first (None: when the inputs have more than
            ``FAST_THRESHOLD`` elements) and fall back to element by element for an input that fails.
        reference: ``reference(dout, inputs) -> {input_name: gradient}``, an independent exact gradient (autograd
            of the same layer in torch), compared element by element to rounding (relative ``AUTOGRAD_TOL``,
            absolute ``AUTOGRAD_ATOL``·max(1, max|reference|)). At a kink any value between the one-sided
            derivatives passes the finite-difference test; with a reference the analytic value must also be the
            one the reference picks (max-pooling's tie goes to torch's element), or the element is a failure.
            Failures then carry an ``autograd`` column.

    Kinks: an element whose centred difference fails at its step and at smaller ones, whose left and right
    one-sided differences disagree by much more than their rounding, and whose analytic value lies between them
    is a kink (ReLU at 0; a max-pool window whose two largest inputs are closer than the step), reported in
    ``report.kinks`` with its input and index, not as a failure. Failures and kinks name elements by their NumPy
    index: ``x[0, 1, 2, 3]`` is (n, c, h, w) of an image batch, ``w[5, 0, 4, 4]`` (out, in, kh, kw) of a kernel.
    """
    rng = np.random.default_rng(seed)
    arrays = {k: v for k, v in inputs.items() if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)}
    problems, notes, kinks, frames = [], [], [], []
    subject = f"layer {name!r}"
    empty = pd.DataFrame(columns=LAYER_COLUMNS)
    try:
        out, cache = forward(**{k: (v.copy() if k in arrays else v) for k, v in inputs.items()})
    except Exception as err:
        return GradReport(subject, empty, problems=[f"forward raised {raised(err)}"])
    out = np.asarray(out)
    dout = rng.standard_normal(out.shape).astype(out.dtype if np.issubdtype(out.dtype, np.floating) else np.float64)
    try:
        grads = backward(dout.copy(), cache)
    except Exception as err:
        return GradReport(subject, empty, problems=[f"backward raised {raised(err)}"])
    if not isinstance(grads, dict):
        return GradReport(subject, empty, problems=[f"backward returned a {type(grads).__name__}, not a dict "
                                                    f"{{input name: gradient}}"])
    refs = None
    if reference is not None:
        try:
            refs = reference(dout.copy(), {k: (v.copy() if k in arrays else v) for k, v in inputs.items()})
        except Exception as err:
            problems.append(f"the reference gradient raised {raised(err)}")
    problems += [f"missing gradient for input {k!r}" for k in arrays if k not in grads]
    problems += [f"extra gradient {k!r}: not a floating-point array input of forward "
                 f"(inputs: {', '.join(arrays)})" for k in grads if k not in arrays]

    def objective(key, x):
        """L = Σ out·dout with input ``key`` replaced by x, summed in float64."""
        with np.errstate(all="ignore"):
            o = forward(**{**inputs, **{k: v.copy() for k, v in arrays.items()}, key: x})[0]
        return float(np.sum(np.asarray(o, dtype=np.float64) * dout))

    total = sum(v.size for v in arrays.values())
    fast = total > FAST_THRESHOLD if fast is None else fast
    checked = 0
    dtypes = sorted({np.dtype(v.dtype).name for v in arrays.values()})
    scale_of_sum = float(np.sum(np.abs(out.astype(np.float64) * dout))) if out.size else 0.0
    for key, x in arrays.items():
        if key not in grads:
            continue
        g = np.asarray(grads[key])
        step, tol = layer_tolerances(x.dtype)
        eps = max(np.finfo(x.dtype).eps, np.finfo(out.dtype).eps if np.issubdtype(out.dtype, np.floating) else 0)
        noise_of = lambda h: ROUNDING * eps * max(scale_of_sum, 1e-300) / h  # rounding noise of a difference
        if g.shape != x.shape:
            hint = layout_hint(g, numeric_gradient(objective, key, x, step), tol) if g.size == x.size else ""
            problems.append(f"gradient {key!r} has shape {g.shape} but input {key!r} has shape {x.shape}{hint}")
            continue
        nonfinite = ~np.isfinite(g)
        if nonfinite.any():
            first = tuple(int(i) for i in np.argwhere(nonfinite)[0])
            problems.append(f"gradient {key!r} has {int(nonfinite.sum())} NaN or infinite value(s), first at "
                            f"index {first}: {g[first]}")
            continue
        ref = None if refs is None or key not in refs else np.asarray(refs[key], dtype=np.float64)
        if ref is not None and ref.shape != x.shape:
            problems.append(f"reference gradient {key!r} has shape {ref.shape}, input {key!r} has {x.shape}")
            ref = None
        ref_ok = (np.ones(x.shape, bool) if ref is None else
                  agrees(g.astype(np.float64), ref, AUTOGRAD_TOL, AUTOGRAD_ATOL * max(1.0, np.abs(ref).max(initial=0))))
        if fast:
            passed, line, n = directional_check(objective, key, x, g, step, tol, noise_of, rng)
            checked += n
            if passed and ref_ok.all():
                continue
            notes.append(f"fast mode: {line}; checked {key!r} element by element")
        numeric, hs = numeric_gradient(objective, key, x, step, with_steps=True)
        checked += x.size
        a = g.astype(np.float64)
        floor = tol * 1e-3 * max(np.abs(numeric).max(initial=0.0), 1e-300)
        fail = ~agrees(a, numeric, tol, floor + noise_of(hs))
        # A failing element is retried with smaller steps (its stencil may have straddled a kink) but judged with
        # the allowance of its first step: the rounding noise allowed grows as 1/h, and at 1/64 of the step it
        # would let a float32 gradient 10% off pass.
        for fraction in RETRY_STEPS[:2]:
            for i in np.flatnonzero(fail.ravel()):
                idx = np.unravel_index(i, x.shape)
                retry = element_difference(objective, key, x, idx, float(power_of_two(hs[idx] * fraction)))
                if agrees(a[idx], retry, tol, floor + noise_of(hs[idx])):
                    numeric[idx], fail[idx] = retry, False
        for i in np.flatnonzero(fail.ravel()):  # kinks: one-sided differences that disagree, a between them
            idx = np.unravel_index(i, x.shape)
            left, right = element_one_sided(objective, key, x, idx, float(hs[idx]))
            lo, hi = min(left, right), max(left, right)
            allowance = tol * max(abs(left), abs(right)) + noise_of(hs[idx])
            if hi - lo > 1e-3 * max(abs(left), abs(right)) + allowance and lo - allowance <= a[idx] <= hi + allowance:
                if ref_ok[idx]:  # a subgradient, and (with a reference) the very one the reference picks
                    index = tuple(int(j) for j in idx)
                    kinks.append((f"{key}{list(index)}", float(x[idx]), left, right, a[idx], key, index))
                    fail[idx] = False
        fail |= ~ref_ok  # right by finite differences, but not the reference's value
        bad = np.argwhere(fail)
        abs_err, rel = errors(a[fail], numeric[fail])
        columns = {"input": key, "index": [tuple(int(j) for j in i) for i in bad], "analytic": a[fail],
                   "numeric": numeric[fail], "abs_err": abs_err, "rel_err": rel}
        if refs is not None:  # the error is the larger of the two comparisons
            ref_values = ref[fail] if ref is not None else np.full(int(fail.sum()), np.nan)
            abs_ref, rel_ref = errors(a[fail], ref_values)
            columns.update(autograd=ref_values, abs_err=np.fmax(abs_err, abs_ref), rel_err=np.fmax(rel, rel_ref))
        frames.append(pd.DataFrame(columns, columns=LAYER_COLUMNS + (["autograd"] if refs is not None else [])))
        if fail.any():
            hint = layout_hint(g, numeric, tol)
            if hint:
                problems.append(f"gradient {key!r}{hint}")
    failures = worst_first(pd.concat(frames, ignore_index=True)) if frames else empty
    notes.insert(0, f"{', '.join(dtypes) or 'no float inputs'}: step {', '.join(f'{layer_tolerances(d)[0]:.2g}' for d in dtypes)}"
                    f"·max(1,|x|), relative tolerance {', '.join(f'{layer_tolerances(d)[1]:.2g}' for d in dtypes)} "
                    f"(from the dtype's ε), plus the differences' rounding noise; random upstream gradient, seed {seed}")
    if refs is not None:
        notes.append(f"and against the reference gradient to relative {AUTOGRAD_TOL:g}, absolute "
                     f"{AUTOGRAD_ATOL:g}·max(1, max|reference|)")
    kink_rows = pd.DataFrame(kinks, columns=LAYER_KINK_COLUMNS)
    return GradReport(subject, failures, kink_rows, problems, layer_regions(failures), notes, checked)


def numeric_gradient(objective, key, x, step, with_steps=False):
    """∂L/∂x by the fourth-order centred difference, one element at a time, step step·max(1, |x_i|)."""
    hs = power_of_two(step * np.maximum(1.0, np.abs(x.astype(np.float64))))
    grad = np.empty(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        grad[idx] = element_difference(objective, key, x, idx, float(hs[idx]))
    return (grad, hs) if with_steps else grad


def shifted(x, idx, delta):
    y = x.copy()
    y[idx] = y[idx] + delta
    return y


def element_difference(objective, key, x, idx, h) -> float:
    L = lambda d: objective(key, shifted(x, idx, d))
    return (8 * (L(h) - L(-h)) - (L(2 * h) - L(-2 * h))) / (12 * h)


def element_one_sided(objective, key, x, idx, h) -> tuple[float, float]:
    L = lambda d: objective(key, shifted(x, idx, d))
    l0 = L(0.0)
    return (3 * l0 - 4 * L(-h) + L(-2 * h)) / (2 * h), (-3 * l0 + 4 * L(h) - L(2 * h)) / (2 * h)


def agrees(analytic, numeric, tol, allowance):
    """|a − n| ≤ tol·max(|a|, |n|) + allowance (absolute: rounding noise and a floor), element-wise."""
    return errors(analytic, numeric)[0] <= tol * np.maximum(np.abs(analytic), np.abs(numeric)) + allowance


def directional_check(objective, key, x, g, step, tol, noise_of, rng):
    """vᵀJu for random directions u of one input: Σ g·u against d/dt L(x + t·u) by a centred difference."""
    n = 0
    for _ in range(DIRECTIONS):
        u = rng.standard_normal(x.shape)
        t = float(power_of_two(step * max(1.0, float(np.abs(x).max(initial=0.0)))))
        L = lambda s: objective(key, (x + s * u).astype(x.dtype))
        numeric = (8 * (L(t) - L(-t)) - (L(2 * t) - L(-2 * t))) / (12 * t)
        analytic = float(np.sum(g.astype(np.float64) * u))
        n += 1
        if not agrees(analytic, numeric, tol, noise_of(t)):
            return False, (f"{key!r} failed a random directional derivative (analytic {analytic:.6g}, numeric "
                           f"{numeric:.6g})"), n
    return True, "", n


def layout_hint(g, numeric, tol) -> str:
    """Recognise the right values in the wrong layout: transposed, reshaped, or permuted."""
    close = lambda a, b: a.shape == b.shape and np.allclose(a, b, rtol=max(tol, 1e-6) * 10,
                                                             atol=1e-8 * max(1.0, np.abs(b).max(initial=0.0)))
    g = np.asarray(g, dtype=np.float64)
    if g.ndim == 2 and close(g.T, numeric):
        return ": it is the right gradient transposed"
    if g.shape != numeric.shape and close(g.reshape(numeric.shape), numeric):
        return f": it holds the right values, reshape it to {numeric.shape}"
    if close(np.sort(g, axis=None), np.sort(numeric, axis=None)):
        return ": it holds the right values in the wrong order (layout)"
    return ""


def layer_regions(failures: pd.DataFrame) -> list:
    lines = []
    for key, group in failures.groupby("input", sort=False):
        worst = group.iloc[0]
        autograd = f", autograd {fmt(worst['autograd'])}" if "autograd" in group else ""
        lines.append(f"gradient {key!r} wrong at {len(group)} element(s); worst {key}{list(worst['index'])}: analytic "
                     f"{fmt(worst['analytic'])}, numeric {fmt(worst['numeric'])}{autograd} (abs err "
                     f"{worst['abs_err']:.2g}, rel err {worst['rel_err']:.2g})")
    return lines


# ------------------------------------------------------------------------------ losses
def check_loss(loss, *, output_activation: str | None = None, n_classes: int = 4, batch: int = 5,
               seed: int = 0) -> GradReport:
    """A ``manual.losses.Loss`` as a layer z → E: its dz against finite differences of its loss value.

    z (batch, n_classes) ~ N(0, 2²) and labels are drawn from ``seed``; the output activation is the loss's
    default unless given.
    """
    from manual.activations import get_activation

    output = get_activation(output_activation or loss.output_activation)
    rng = np.random.default_rng(seed)
    z = 2 * rng.standard_normal((batch, n_classes))
    y = rng.integers(0, n_classes, batch)

    def forward(z, y):
        return np.asarray(loss(z, y, output).loss), (z, y)

    def backward(dout, cache):
        z, y = cache
        return {"z": dout * np.asarray(loss(z, y, output).dz)}

    report = check_backward(forward, backward, {"z": z, "y": y}, seed=seed, name=loss.name)
    report.subject = f"loss {loss.name!r} (output activation {output.name})"
    return report
