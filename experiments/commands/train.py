"""``python -m experiments train``: one run with every knob, printed epoch by epoch.

The options are the fields of ``training.RunConfig``. The same seed gives both
backends the same initial parameters and the same batch order, so
``--backend manual`` and ``--backend torch`` with ``--dtype float64`` print the
same numbers. ``--out DIR`` also records the run in DIR's CSV files, the store
every study uses.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import manual
from manual.network import DTYPES

from experiments.data import load_mnist
from experiments.files import check_output_folder
from experiments.store import Store
from experiments.cli import positive_int
from experiments.commands.studies import add_device_options, use_device
from experiments.runs.training import SCHEDULES, RunConfig, train

DEFAULTS = RunConfig()


def config_from_args(args) -> RunConfig:
    return RunConfig(layer_sizes=tuple(args.layer_sizes), activation=args.activation, loss=args.loss,
                     init=args.init, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                     nesterov=args.nesterov, weight_decay=args.weight_decay, schedule=args.schedule,
                     step_size=args.step_size, gamma=args.gamma, batch_size=args.batch_size, epochs=args.epochs,
                     seed=args.seed, backend=args.backend, dtype=args.dtype, train_subset=args.train_subset,
                     batch_norm=args.batch_norm, clip_grad_norm=args.clip_grad_norm,
                     clip_grad_value=args.clip_grad_value)


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


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train one network on MNIST with either backend and print its metrics per epoch",
        description="Trains one MLP on MNIST (50,000 train / 10,000 validation / 10,000 test images) and prints "
                    "training loss, validation loss and accuracy per epoch, then the test accuracy. A run whose "
                    "loss becomes NaN or infinite, or exceeds 100× its loss at initialisation, stops with status "
                    "'diverged'. The same --seed gives both "
                    "backends the same initial parameters and batch order.")
    p.add_argument("--layer-sizes", nargs="+", type=positive_int, default=list(DEFAULTS.layer_sizes), metavar="N",
                   help="widths from input (784) to output (10) (default: 784 128 128 10)")
    p.add_argument("--activation", choices=list(manual.ACTIVATIONS), default=DEFAULTS.activation,
                   help="hidden-layer activation (default: %(default)s)")
    p.add_argument("--loss", choices=list(manual.LOSSES), default=DEFAULTS.loss,
                   help="cross_entropy (softmax outputs) or mse (sigmoid outputs) (default: %(default)s)")
    p.add_argument("--init", choices=list(manual.INITS), default=DEFAULTS.init, help="parameter initialiser (default: %(default)s)")
    p.add_argument("--optimizer", choices=list(manual.optim.OPTIMIZERS), default=DEFAULTS.optimizer, help="optimizer, with torch.optim's update rule and defaults (default: %(default)s)")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr, help="learning rate (default: %(default)s)")
    p.add_argument("--momentum", type=float, default=DEFAULTS.momentum, help="momentum (SGD and RMSprop only) (default: %(default)s)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD with --momentum > 0)")
    p.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay,
                   help="weight decay (default: the optimizer's own, 0.01 for AdamW and 0 otherwise)")
    p.add_argument("--schedule", choices=SCHEDULES, default=DEFAULTS.schedule,
                   help="learning-rate schedule, stepped once per epoch (cosine anneals to 0 over --epochs) (default: %(default)s)")
    p.add_argument("--step-size", type=positive_int, default=DEFAULTS.step_size, help="StepLR's period in epochs (default: %(default)s)")
    p.add_argument("--gamma", type=float, default=DEFAULTS.gamma, help="StepLR's factor (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULTS.batch_size, help="mini-batch size (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=DEFAULTS.epochs, help="passes over the training images (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of the initial parameters and batch order (default: %(default)s)")
    p.add_argument("--backend", choices=("torch", "manual"), default=DEFAULTS.backend,
                   help="torch: torch_ref + torch.optim; manual: the hand-written NumPy network, always on the CPU (default: %(default)s)")
    p.add_argument("--dtype", choices=list(DTYPES), default=DEFAULTS.dtype, help="floating-point type of parameters and data (default: %(default)s)")
    p.add_argument("--train-subset", type=positive_int, metavar="N", default=None,
                   help="train on the first N training images only, for quick runs (default: all 50,000)")
    p.add_argument("--batch-norm", action="store_true",
                   help="batch normalisation between each hidden linear layer and its activation (those layers "
                        "then have no bias); evaluation uses the running estimates")
    p.add_argument("--clip-grad-norm", type=float, metavar="MAX", default=None,
                   help="scale the gradients before each step so that their global L2 norm is at most MAX "
                        "(default: no clipping)")
    p.add_argument("--clip-grad-value", type=float, metavar="V", default=None,
                   help="clamp every gradient entry to [-V, V] before each step (default: no clipping)")
    add_device_options(p)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also record the run in DIR's runs.csv, epochs.csv and layers.csv (default: not recorded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
