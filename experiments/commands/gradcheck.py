"""``python -m experiments gradcheck``: proof that the hand-written gradients are right, built-in or your own.

Without ``--layer`` it checks, in order:

1. each activation of ``--activations`` as a function (``check_activation``: df against finite differences
   of f and against autograd of PyTorch's module, or of a plug-in's ``torch_fn``) and each loss of
   ``--losses`` (``check_loss``), printing a summary per failing region;
2. every network of the grid activation × loss × depth (``experiments.gradcheck.run_grid``).

With ``--layer FILE.py:NAME`` it checks that layer's backward pass instead (``check_backward``; the file's
convention is in ``experiments.plugins``). Plug-ins come in with ``--plugin`` (every command has it).
Everything is written as CSV to ``--out``; the exit code is 1 when anything fails.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

import manual
from manual.activations import ACTIVATIONS
from manual.init import INITS
from manual.losses import LOSSES
from manual.network import DTYPES

from experiments.cli import non_negative_int, positive_int
from experiments.files import check_output_folder, write_csv
from experiments.gradcheck import (BN_VARIANCE_MARGIN, CSV_COLUMNS, DEFAULT_DEPTHS, DEFAULT_TOLERANCES, FD_FLOOR,
                                   FD_STEP, KINK_MARGIN, N_CLASSES, N_INPUTS, check_activation, check_backward,
                                   check_loss, run_grid, summary)
from experiments.plugins import example_inputs, load_layer

FUNCTION_COLUMNS = ("function", "kind", "passed", "comparisons", "failures", "kinks", "problems")
FAILURE_COLUMNS = ("function", "check", "z", "input", "index", "analytic", "numeric", "abs_err", "rel_err")


def torch_reference(name: str):
    """What torch_ref computes for an activation: PyTorch's own module, a plug-in's torch_fn, or None."""
    import torch_ref

    try:
        return torch_ref.model.activation_module(name)
    except ValueError:
        return None


def report_rows(function: str, kind: str, report) -> tuple[dict, pd.DataFrame]:
    """A report's summary row and its failing points, for functions.csv and failures.csv."""
    row = dict(function=function, kind=kind, passed=report.passed, comparisons=report.checked,
               failures=len(report.failures), kinks=len(report.kinks), problems=" | ".join(report.problems))
    failures = report.failures.assign(function=function)
    if "index" in failures:
        failures["index"] = ["x".join(map(str, i)) if i else "()" for i in failures["index"]]
    extra = [c for c in failures.columns if c not in FAILURE_COLUMNS]  # e.g. a module check's ``autograd`` values
    return row, failures.reindex(columns=[*FAILURE_COLUMNS, *extra])


def write_function_tables(out: str, rows: list, failures: list) -> list[str]:
    paths = [os.path.join(out, "functions.csv"), os.path.join(out, "failures.csv")]
    write_csv(pd.DataFrame(rows, columns=FUNCTION_COLUMNS), paths[0])
    table = pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(columns=FAILURE_COLUMNS)
    write_csv(table, paths[1])
    return paths


def run_layers(args) -> int:
    """--layer: each layer's backward against finite differences of its forward."""
    rows, failures = [], []
    dtype = DTYPES[args.dtype]
    for spec in args.layers:
        layer = load_layer(spec)
        inputs = example_inputs(layer, np.random.default_rng(args.seed))
        inputs = {k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v for k, v in inputs.items()}
        report = check_backward(layer.forward, layer.backward, inputs, seed=args.seed, name=layer.name)
        print(report)
        row, fails = report_rows(layer.name, "layer", report)
        rows.append(row)
        failures.append(fails)
    paths = write_function_tables(args.out, rows, failures)
    passed = sum(r["passed"] for r in rows)
    print(f"{passed}/{len(rows)} layers passed; wrote {', '.join(paths)}")
    return 0 if passed == len(rows) else 1


def run_architecture(args) -> int:
    """--arch: every module of the network on the input that reaches it (``check_modules``: finite differences and
    autograd, element by element), then the whole network's ∂E/∂θ for each loss (``check_model``)."""
    from experiments.gradcheck import check_model, kink_free_model_batch
    from experiments.gradcheck.modules import check_modules

    args.tol = DEFAULT_TOLERANCES[args.dtype][0] if args.tol is None else args.tol
    args.fd_tol = DEFAULT_TOLERANCES[args.dtype][1] if args.fd_tol is None else args.fd_tol
    start = time.perf_counter()
    shape = tuple(args.input_shape)
    model = manual.nn.build(args.arch, shape, activation=args.activations[0], init=args.init, seed=args.seed,
                            dtype=args.dtype)
    n_classes = model.output_shape(shape)
    if len(n_classes) != 1:
        raise ValueError(f"the network ends in shape {n_classes} per example; a loss needs (classes,): end with a "
                         "linear layer")
    batches = {loss: kink_free_model_batch(model, loss, shape, n_classes[0], args.batch, args.seed)
               for loss in args.losses}
    print(f"architecture: {' | '.join(args.arch)}; input {shape}, batch {args.batch}, {args.dtype}, init {args.init}, "
          f"seed {args.seed}")
    rows, failures = [], []
    for check in check_modules(model, batches[args.losses[0]][0], seed=args.seed):
        report = check.report
        kinks = f", {len(report.kinks)} at kinks" if len(report.kinks) else ""
        print(report if not report.passed else f"passed {check.name}: {check.module} ({report.checked} comparisons"
                                               f"{kinks})")
        row, fails = report_rows(f"{check.name}: {check.module}", "module", report)
        rows.append(row)
        failures.append(fails)
    grid = []
    for loss, (X, y) in batches.items():
        for c in check_model(model, X, y, loss):
            passed = (not c.max_rel_err_autograd > args.tol) and c.max_rel_err_fd <= args.fd_tol
            grid.append(dict(loss=loss, **c._asdict(), passed=passed))
            if not passed:
                print(f"FAILED {loss} {c.parameter}: rel err vs autograd {c.max_rel_err_autograd:.2e}, vs finite "
                      f"differences {c.max_rel_err_fd:.2e}")
    paths = write_function_tables(args.out, rows, failures) + [os.path.join(args.out, "gradcheck.csv")]
    params = pd.DataFrame(grid)
    write_csv(params.assign(shape=["x".join(map(str, s)) for s in params["shape"]]), paths[2])
    modules_ok, params_ok = sum(r["passed"] for r in rows), sum(r["passed"] for r in grid)
    print(f"modules: {modules_ok}/{len(rows)} passed; network: {params_ok}/{len(grid)} parameter tensors passed "
          f"(tolerances: autograd {args.tol:g}, finite differences {args.fd_tol:g}) in "
          f"{time.perf_counter() - start:.1f} s; wrote {', '.join(paths)}")
    return 0 if modules_ok == len(rows) and params_ok == len(grid) else 1


def run(args) -> int:
    """The function checks, then the network grid; write the CSVs, print the summaries; 1 if anything fails."""
    check_output_folder(args.out)
    if args.layers:
        return run_layers(args)
    if args.arch:
        return run_architecture(args)
    for name in args.activations + args.losses:  # names are checked here: plug-ins may add to them
        (manual.activations.get_activation if name in args.activations else manual.losses.get_loss)(name)
    default_tol, default_fd_tol = DEFAULT_TOLERANCES[args.dtype]
    args.tol = default_tol if args.tol is None else args.tol
    args.fd_tol = default_fd_tol if args.fd_tol is None else args.fd_tol
    start = time.perf_counter()

    rows, failures = [], []
    for name in args.activations:
        report = check_activation(ACTIVATIONS[name], torch_fn=torch_reference(name))
        row, fails = report_rows(name, "activation", report)
        rows.append(row)
        failures.append(fails)
        if not report.passed or name not in manual.activations.BUILTINS:  # a plug-in's report always
            print(report)
    for name in args.losses:
        report = check_loss(LOSSES[name])
        row, fails = report_rows(name, "loss", report)
        rows.append(row)
        failures.append(fails)
        if not report.passed:
            print(report)
    function_paths = write_function_tables(args.out, rows, failures)
    functions_passed = sum(r["passed"] for r in rows)
    print(f"functions: {functions_passed}/{len(rows)} passed (each f' against finite differences over z in "
          f"[-1e4, 1e4] and against autograd; each loss's gradient against finite differences)")

    grid = run_grid(args)
    path = os.path.join(args.out, "gradcheck.csv")
    table = pd.DataFrame(grid, columns=CSV_COLUMNS)
    write_csv(table.assign(shape=["x".join(map(str, shape)) for shape in table["shape"]]), path)
    print(f"gradcheck: {len(args.activations)} activations × {len(args.losses)} losses × depths "
          f"{','.join(map(str, args.depths))}{' × batch norm off/on' if args.batch_norm else ''}; layers [{N_INPUTS}, {args.width} x depth, {N_CLASSES}], "
          f"batch {args.batch}, {args.dtype}, init {args.init}, seed {args.seed}")
    print(summary(grid))
    for row in grid:
        if not row["passed"]:
            print(f"FAILED {row['activation']} {row['loss']} depth {row['depth']}"
                  f"{' batch norm' if row['batch_norm'] else ''} {row['parameter']}: "
                  f"rel err vs autograd {row['max_rel_err_autograd']:.2e}, vs finite differences "
                  f"{row['max_rel_err_fd']:.2e}")
    passed = sum(r["passed"] for r in grid)
    print(f"{passed}/{len(grid)} rows passed (tolerances: autograd {args.tol:g}, finite differences "
          f"{args.fd_tol:g}) in {time.perf_counter() - start:.1f} s; wrote {path}, {', '.join(function_paths)}")
    return 0 if passed == len(grid) and functions_passed == len(rows) else 1


# ------------------------------------------------------------------------ CLI
def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gradcheck",
        help="check hand-written gradients (built-in or your own) against autograd and finite differences",
        description="First checks each activation as a function (its derivative against finite differences "
                    "over z in [-1e4, 1e4] and against autograd, kinks recognised, stability in float32 and "
                    "float64) and each loss, printing where any is wrong; then compares manual.MLP's "
                    "hand-written gradients with PyTorch autograd (torch_ref.MLP loaded with the same "
                    "parameters) and with centred finite differences of the loss, for every activation x loss "
                    f"x depth of a grid of tiny networks ({N_INPUTS} inputs, --width units per hidden layer, "
                    f"{N_CLASSES} classes). Writes <out>/functions.csv (one row per function), "
                    "<out>/failures.csv (one row per failing point) and <out>/gradcheck.csv (one row per "
                    "network parameter tensor), prints a summary, and exits 1 if anything fails. Your own "
                    "activations and losses come in with --plugin FILE.py, a hand-written layer with --layer "
                    "FILE.py:NAME.",
    )
    p.add_argument("--activations", nargs="+", choices=list(ACTIVATIONS), default=list(ACTIVATIONS),
                   metavar="NAME",
                   help=f"hidden-layer activations to check (default: all: {', '.join(ACTIVATIONS)})")
    p.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES), metavar="NAME",
                   help=f"losses to check (default: {' '.join(LOSSES)})")
    p.add_argument("--layer", dest="layers", action="append", default=[], metavar="FILE.py:NAME",
                   help="check a hand-written layer instead (repeatable): FILE.py defines NAME_forward(**inputs) "
                        "-> (out, cache), NAME_backward(dout, cache) -> {input: grad} and NAME_inputs(rng) -> "
                        "{input: array}, example inputs drawn from a numpy Generator (cast to --dtype); see "
                        "examples/affine_relu.py")
    p.add_argument("--arch", nargs="+", default=None, metavar="LAYER",
                   help="check a network given as data instead of the MLP grid, e.g. --arch 'unflatten 1 6 6' "
                        "'conv 2 3' activation 'maxpool 2' flatten 'linear 4' (see docs/architectures.md): every "
                        "module against finite differences and autograd, element by element, on the input that "
                        "reaches it, then the whole network for each of --losses; 'activation' is the first of "
                        "--activations")
    p.add_argument("--input-shape", nargs="+", type=positive_int, default=[N_INPUTS], metavar="N",
                   help="with --arch: one example's shape, e.g. 36 (a flat row) (default: %(default)s)")
    p.add_argument("--depths", nargs="+", type=positive_int, default=list(DEFAULT_DEPTHS), metavar="N",
                   help="numbers of hidden layers to check (default: %s)" % " ".join(map(str, DEFAULT_DEPTHS)))
    p.add_argument("--batch-norm", action="store_true",
                   help="also check every network with batch normalisation after each hidden linear layer "
                        "(training mode: batch statistics; needs --batch of at least 2)")
    p.add_argument("--width", type=positive_int, default=5,
                   help="units per hidden layer; finite differences cost four forward passes per parameter "
                        "entry, so keep it small (default: %(default)s)")
    p.add_argument("--batch", type=positive_int, default=3,
                   help="rows in the checked mini-batch (default: %(default)s)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float64",
                   help="precision of the manual and torch networks (and of --layer's inputs); the "
                        "finite-difference reference of the networks is always float64 (default: %(default)s)")
    p.add_argument("--init", choices=INITS, default="pytorch",
                   help="parameter initialiser; the default keeps deep nets well scaled with non-zero biases, while "
                        "'normal' saturates depth-6 nets until finite differences lose their accuracy "
                        "(default: %(default)s)")
    p.add_argument("--tol", type=_positive_float, default=None,
                   help="largest allowed relative error against autograd, max |error| over a tensor divided by "
                        "the tensor's max |gradient| (default: %g for float64, %g for float32)"
                        % (DEFAULT_TOLERANCES["float64"][0], DEFAULT_TOLERANCES["float32"][0]))
    p.add_argument("--fd-tol", type=_positive_float, default=None,
                   help="largest allowed relative error against fourth-order centred finite differences "
                        "(step %g), same measure except that the scale is at least %g x max(1, |loss|), below "
                        "which a float64 finite difference is mostly rounding noise (default: %g for float64, "
                        "%g for float32)"
                        % (FD_STEP, FD_FLOOR, DEFAULT_TOLERANCES["float64"][1], DEFAULT_TOLERANCES["float32"][1]))
    p.add_argument("--out", default=os.path.join("results", "gradcheck"),
                   help="output directory for the CSV files (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the parameters and of the batch; the batch is redrawn (seed + 1, …) until no "
                        f"pre-activation lies within {KINK_MARGIN:g} of a kink such as relu's and, with --batch-norm, "
                        f"every normalised feature's batch variance is at least {BN_VARIANCE_MARGIN:g} "
                        "(default: %(default)s)")
    p.set_defaults(run=run)
    return p
