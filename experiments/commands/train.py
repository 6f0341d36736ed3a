"""``python -m experiments train``: one run with every knob, printed epoch by epoch.

The options are the fields of ``experiments.config.RunConfig``, generated from them. The same seed gives both
backends the same initial parameters and the same batch order, so
``--backend manual`` and ``--backend torch`` with ``--dtype float64`` print the
same numbers. ``--out DIR`` also records the run in DIR's CSV files, the store
every study uses.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd

import manual
from manual.network import DTYPES

from experiments.data import load_mnist
from experiments.files import check_output_folder
from experiments.store import Store
from experiments.cli import positive_int
from experiments.commands.studies import add_device_options, use_device
from experiments.config import SCHEDULES, RunConfig
from experiments.runs.training import train

def config_from_args(args) -> RunConfig:
    """The RunConfig of the command line: one option per field (``add_config_options``)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    values["layer_sizes"] = tuple(values["layer_sizes"])
    return RunConfig(**values)


def run(args) -> int:
    config = config_from_args(args)  # every value checked before anything runs (errors: see experiments.cli)
    out = check_output_folder(args.out) if args.out is not None else None  # a bad --out fails now, not after training
    device = use_device(args)
    data = load_mnist(Path(args.data_dir), config.train_subset)
    store = Store(out) if out else None  # a damaged store there too: opened before the run trains
    print(f"run {config.key()}: {config}")
    print(f"device: {'cpu (the manual backend is NumPy)' if config.backend == 'manual' else device}")
    result = train(config, data, device, progress=not args.no_progress)
    epochs = pd.DataFrame(result.epochs).drop(columns="key").set_index("epoch")
    if epochs["clip_frac"].isna().all():  # no clipping: nothing to show
        epochs = epochs.drop(columns="clip_frac")
    with pd.option_context("display.float_format", "{:.6g}".format, "display.width", 120):
        print(epochs.to_string())
    run_row = result.run
    print(f"status {run_row['status']}; final test accuracy {run_row['test_acc']:.4f} "
          f"(test loss {run_row['test_loss']:.4f}); wall time {run_row['wall_time_s']:.1f} s")
    if store is not None:
        store.add(result)
        store.export()
        print(f"recorded in {store.folder}/runs.csv, epochs.csv, layers.csv (key {config.key()})")
    return 0


# the choices of a field's option, looked up when the parser is built (plug-ins add to the registries first)
CHOICES = {"activations": lambda: list(manual.ACTIVATIONS), "losses": lambda: list(manual.LOSSES),
           "inits": lambda: list(manual.INITS), "optimizers": lambda: list(manual.optim.OPTIMIZERS),
           "schedules": lambda: list(SCHEDULES), "backends": lambda: ["torch", "manual"], "dtypes": lambda: list(DTYPES)}
TYPES = {bool: None, str: str, float: float, int: int}
ARG_TYPES = {"positive_int": positive_int}


def add_config_options(p) -> None:
    """One option per RunConfig field, from the field's default and metadata (``experiments.config.option``):
    ``--layer-sizes`` for ``layer_sizes``, a flag for a boolean, choices from the registries."""
    for f in dataclasses.fields(RunConfig):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", help=meta["help"])
            continue
        kwargs = {"default": list(f.default) if isinstance(f.default, tuple) else f.default, "help": meta["help"]}
        if "choices" in meta:
            kwargs["choices"] = CHOICES[meta["choices"]]()
        if "nargs" in meta:
            kwargs["nargs"] = meta["nargs"]
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if "type" in meta:
            kwargs["type"] = ARG_TYPES[meta["type"]]
        elif "choices" not in meta and "nargs" not in meta:
            kwargs["type"] = float if f.type in ("float", "float | None") else int if f.type in ("int", "int | None") \
                else str
        p.add_argument(flag, **kwargs)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train one network on MNIST with either backend and print its metrics per epoch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m experiments train --epochs 3 --activation gelu\n"
               "  python -m experiments train --backend manual --layers 'unflatten 1 28 28' 'conv 6 5 padding=2' "
               "activation 'maxpool 2' flatten 'linear 10'\n"
               "  (layer kinds: docs/architectures.md)",
        description="Trains one network on MNIST (an MLP from --layer-sizes, or any architecture from --layers) (50,000 train / 10,000 validation / 10,000 test images) and prints "
                    "training loss, validation loss and accuracy per epoch, then the test accuracy. A run whose "
                    "loss becomes NaN or infinite, or exceeds 100× its loss at initialisation, stops with status "
                    "'diverged'. The same --seed gives both "
                    "backends the same initial parameters and batch order.")
    add_config_options(p)
    add_device_options(p)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also record the run in DIR's runs.csv, epochs.csv and layers.csv (default: not recorded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
