"""``RunConfig``: everything that determines a run's numbers, its key, and what each field means.

The schema lives apart from the training loop: the spec loader, the store and the report import it without
importing torch or the loop, and ``python -m experiments train`` makes one option per field from the fields'
metadata (``help``, ``metavar``; ``cli=False`` for fields the command does not take), so there is one list of
fields, not two.

A network is either the short form ``layer_sizes`` + ``activation`` + ``batch_norm`` (an MLP) or ``layers``, the
architecture as data (``manual.nn.arch``): ``("unflatten 1 28 28", "conv 6 5 padding=2", "activation", …)``,
where ``activation`` stands for the ``activation`` field. ``architecture()`` gives the list either way.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

import manual
from manual.nn import arch

from experiments.data import N_TRAIN

MNIST_INPUT, MNIST_CLASSES = 784, 10  # pixels per image (a flat row of the data), classes
SCHEDULES = ("none", "StepLR", "CosineAnnealingLR")
FLOAT_FIELDS = ("lr", "momentum", "weight_decay", "gamma", "clip_grad_norm", "clip_grad_value")
INT_FIELDS = ("step_size", "batch_size", "epochs", "seed", "train_subset")
KEY_SCHEMA = 1  # bumped only when the meaning of a RunConfig field changes (see RunConfig.key)


def option(default, help: str, **cli):
    """A field with its default and what ``train``'s option for it says and takes (``cli``: nargs, type, choices,
    metavar; see ``experiments.commands.train``)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers; ``key()`` identifies it in the results."""

    layer_sizes: tuple = option((784, 128, 128, 10), "widths from input (784) to output (10), the short form of an "
                                "MLP (default: 784 128 128 10)", nargs="+", type="positive_int", metavar="N")
    activation: str = option("relu", "hidden-layer activation; in --layers, the layer 'activation' stands for it "
                                     "(default: %(default)s)", choices="activations")
    loss: str = option("cross_entropy", "cross_entropy (softmax outputs) or mse (sigmoid outputs) "
                                        "(default: %(default)s)", choices="losses")
    init: str = option("he", "parameter initialiser (default: %(default)s)", choices="inits")
    optimizer: str = option("Adam", "optimizer, with torch.optim's update rule and defaults (default: %(default)s)",
                            choices="optimizers")
    lr: float = option(1e-3, "learning rate (default: %(default)s)")
    momentum: float = option(0.0, "momentum (SGD and RMSprop only) (default: %(default)s)")
    nesterov: bool = option(False, "Nesterov momentum (SGD with --momentum > 0)")
    weight_decay: float | None = option(None, "weight decay (default: the optimizer's own, 0.01 for AdamW and 0 "
                                              "otherwise)")
    schedule: str = option("none", "learning-rate schedule, stepped once per epoch (cosine anneals to 0 over "
                                   "--epochs) (default: %(default)s)", choices="schedules")
    step_size: int = option(1, "StepLR's period in epochs (default: %(default)s)", type="positive_int")
    gamma: float = option(0.5, "StepLR's factor (default: %(default)s)")
    batch_size: int = option(128, "mini-batch size (default: %(default)s)", type="positive_int")
    epochs: int = option(5, "passes over the training images (default: %(default)s)", type="positive_int")
    seed: int = option(0, "seed of the initial parameters and batch order (default: %(default)s)")
    backend: str = option("torch", "torch: torch_ref + torch.optim; manual: the hand-written NumPy network, always "
                                   "on the CPU (default: %(default)s)", choices="backends")
    dtype: str = option("float32", "floating-point type of parameters and data (default: %(default)s)",
                        choices="dtypes")
    train_subset: int | None = option(None, "train on the first N training images only, for quick runs (default: "
                                            "all 50,000)", type="positive_int", metavar="N")
    batch_norm: bool = option(False, "batch normalisation between each hidden linear layer and its activation "
                                     "(those layers then have no bias); evaluation uses the running estimates")
    clip_grad_norm: float | None = option(None, "scale the gradients before each step so that their global L2 "
                                                "norm is at most MAX (default: no clipping)", metavar="MAX")
    clip_grad_value: float | None = option(None, "clamp every gradient entry to [-V, V] before each step (default: "
                                                 "no clipping)", metavar="V")
    layers: tuple[str, ...] | None = option(None, "the network as a list of layers instead of --layer-sizes, e.g. "
                                                  "--layers 'unflatten 1 28 28' 'conv 6 5 padding=2' activation "
                                                  "'maxpool 2' flatten 'linear 10' (see docs/architectures.md)",
                                            nargs="+", metavar="LAYER")

    def __post_init__(self):
        object.__setattr__(self, "layer_sizes", tuple(int(n) for n in self.layer_sizes))
        manual.network.check_layer_sizes(self.layer_sizes)
        if self.layer_sizes[0] != MNIST_INPUT or self.layer_sizes[-1] != MNIST_CLASSES:
            raise ValueError(f"MNIST needs 784 inputs and 10 outputs, got layer sizes {self.layer_sizes}")
        manual.activations.get_activation(self.activation)
        manual.losses.get_loss(self.loss)
        manual.optim.get_optimizer(self.optimizer)
        if self.init not in manual.INITS:
            raise ValueError(f"unknown init {self.init!r}; valid inits: {', '.join(manual.INITS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid schedules: {', '.join(SCHEDULES)}")
        if self.backend not in ("manual", "torch"):
            raise ValueError(f"unknown backend {self.backend!r}; valid backends: manual, torch")
        manual.network.as_dtype(self.dtype)
        self.check_numbers()
        if self.momentum and self.optimizer not in ("SGD", "RMSprop"):
            raise ValueError(f"{self.optimizer} takes no momentum (only SGD and RMSprop do)")
        if self.nesterov and self.optimizer != "SGD":
            raise ValueError("nesterov applies to SGD only")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs a momentum > 0 (e.g. momentum 0.9), got momentum 0")
        for name in ("clip_grad_norm", "clip_grad_value"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive finite number or None (no clipping), got {value!r}")
        if self.clip_grad_norm is not None and self.clip_grad_value is not None:
            raise ValueError("clip_grad_norm and clip_grad_value are alternatives: set one of them")
        self.use_plain_numbers()
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be true or false, got {self.batch_norm!r}")
        if self.layers is not None:
            self.check_layers()
        if self.has_batch_norm:
            n_train = self.train_subset or N_TRAIN
            if self.batch_size == 1 or n_train % self.batch_size == 1:
                raise ValueError(f"batch_norm with batch_size {self.batch_size} and {n_train} training images "
                                 f"leaves a mini-batch of 1 image, whose batch variance is 0 (PyTorch refuses it "
                                 f"too): choose another batch_size or train_subset")

    def check_layers(self) -> None:
        """``layers`` as a tuple of layer strings that build a network from MNIST's 784 pixels to 10 outputs."""
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        arch.check_layers(self.layers)
        if self.batch_norm:
            raise ValueError("batch_norm belongs to the short form (layer_sizes); with layers, write 'batchnorm' "
                             "where it goes")
        if self.layer_sizes != RunConfig.layer_sizes:
            raise ValueError(f"give layers or layer_sizes, not both (layer_sizes {self.layer_sizes} with layers "
                             f"{list(self.layers)})")
        shape = arch.output_shape(self.layers, MNIST_INPUT, self.activation)
        if shape != (MNIST_CLASSES,):
            raise ValueError(f"layers end in shape {shape} per image; MNIST needs {MNIST_CLASSES} outputs (end "
                             f"with 'linear {MNIST_CLASSES}')")

    def architecture(self) -> tuple[str, ...]:
        """The network as layer strings: ``layers``, or the short form written out (``arch.expand``)."""
        if self.layers is not None:
            return self.layers
        return arch.expand(self.layer_sizes, arch.ACTIVATION, self.batch_norm)

    @property
    def has_batch_norm(self) -> bool:
        """Whether any layer normalises over the batch (the short form's ``batch_norm`` or a ``batchnorm`` layer)."""
        return self.batch_norm or any(arch.parse(layer).kind == "batchnorm" for layer in self.layers or ())

    def check_numbers(self) -> None:
        """Every numeric field within its range, finite, with a message that names it and what is allowed."""
        def check(name, ok, allowed, integer=False):
            value = getattr(self, name)
            if integer and not (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
                raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
            if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
                raise ValueError(f"{name} must be a number: {allowed}, got {value!r}")
            if not (math.isfinite(value) and ok(value)):
                raise ValueError(f"{name} must be {allowed}, got {value!r}")

        check("lr", lambda v: v > 0, "a finite number > 0")
        check("momentum", lambda v: v >= 0, "a finite number ≥ 0")
        if self.weight_decay is not None:
            check("weight_decay", lambda v: v >= 0, "a finite number ≥ 0 (or None: the optimizer's default)")
        check("gamma", lambda v: v > 0, "a finite number > 0")
        for name in ("step_size", "batch_size", "epochs"):
            check(name, lambda v: v >= 1, "≥ 1", integer=True)
        check("seed", lambda v: v >= 0, "≥ 0", integer=True)
        if self.train_subset is not None:
            check("train_subset", lambda v: 1 <= v <= N_TRAIN, f"between 1 and {N_TRAIN:,} (or None: all)",
                  integer=True)
        n_train = self.train_subset or N_TRAIN
        check("batch_size", lambda v: v <= n_train, f"at most the {n_train:,} training images")

    def use_plain_numbers(self) -> None:
        """Numbers as plain Python floats and ints, so that lr=1 and lr=1.0, or seed=np.int64(3) and seed=3, are
        one run with one key (and json can hash them)."""
        for names, kind in ((FLOAT_FIELDS, float), (INT_FIELDS, int)):
            for name in names:
                if getattr(self, name) is not None:
                    object.__setattr__(self, name, kind(getattr(self, name)))

    def key(self) -> str:
        """A short stable hash of the config: the run's identity for resuming studies.

        Only the fields that differ from their defaults enter the hash (with ``KEY_SCHEMA``), so adding a
        new field with a default leaves every existing key, and every half-finished study, as it was.
        Bump ``KEY_SCHEMA`` only when the meaning of an existing field changes.
        """
        changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default}
        text = json.dumps({"schema": KEY_SCHEMA, **changed}, sort_keys=True, default=list)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def optimizer_kwargs(self) -> dict:
        """Keyword arguments for ``manual.optim.<optimizer>`` and ``torch.optim.<optimizer>`` alike."""
        kwargs = {"lr": self.lr}
        if self.optimizer in ("SGD", "RMSprop"):
            kwargs["momentum"] = self.momentum
        if self.optimizer == "SGD":
            kwargs["nesterov"] = self.nesterov
        if self.weight_decay is not None:
            kwargs["weight_decay"] = self.weight_decay
        return kwargs

    def schedule_kwargs(self) -> dict:
        if self.schedule == "StepLR":
            return {"step_size": self.step_size, "gamma": self.gamma}
        return {"T_max": self.epochs}  # cosine: anneal to 0 over the run




@dataclass
class RunResult:
    run: dict
    epochs: list = field(default_factory=list)
    layers: list = field(default_factory=list)


def config_of(row) -> RunConfig:
    """The ``RunConfig`` of a row of ``runs.csv`` (``run_columns`` read back); its key must be the row's key.

    CSV and SQLite give a missing value as NaN or None and a whole number as a float or a numpy integer;
    ``RunConfig`` makes numbers plain, so only the two joined columns and the missing values need undoing here.
    """
    values = {}
    for f in dataclasses.fields(RunConfig):
        value = row.get(f.name, f.default)
        if isinstance(value, float) and math.isnan(value) or value is None:
            value = None if f.default is None else f.default
        elif f.name == "layer_sizes" and isinstance(value, str):
            value = tuple(int(n) for n in value.split("-"))
        elif f.name == "layers" and isinstance(value, str):
            value = tuple(value.split(" | "))
        elif isinstance(f.default, bool):
            value = bool(value)
        values[f.name] = value
    config = RunConfig(**values)
    if "key" in row and config.key() != row["key"]:
        raise ValueError(f"the run {row['key']}'s columns give a config of another key ({config.key()})")
    return config


def run_columns(config: RunConfig) -> dict:
    """The config as flat CSV columns (layer sizes as ``784-128-10``, layers joined by `` | ``)."""
    row = dataclasses.asdict(config)
    row["layer_sizes"] = "-".join(map(str, config.layer_sizes))
    if config.layers is None:
        del row["layers"]  # the short form's runs keep the columns they always had
    else:
        row["layers"] = " | ".join(config.layers)
    return row
