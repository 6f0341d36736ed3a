"""One training run of either implementation on MNIST, with the diagnostics every study records.

``train(config, data)`` trains the network that ``config`` describes with
``config.backend`` (``"manual"``: NumPy, hand-written gradients; ``"torch"``:
``torch_ref`` + ``torch.optim`` on CPU or CUDA) and returns a ``RunResult``:

- ``run``: one row — the full config, final metrics, status (``ok`` / ``diverged``), wall time;
- ``epochs``: one row per epoch — train loss, validation loss and accuracy, learning rate, time;
- ``layers``: one row per epoch (0 = at initialisation) and layer — ‖∂E/∂W‖, dead and
  saturated fractions, activation mean and standard deviation, all measured on a
  fixed evaluation batch (the first ``PROBE_SIZE`` validation images).

The same seed gives both backends the same initial parameters (``manual.init``)
and the same mini-batch order (``batch_order``), so with float64 their learning
curves coincide.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

import manual
from manual.activations import ACTIVATIONS
from manual.optim import lr_scheduler as manual_schedules
from manual.optim.clip import CLIP_EPS, clip_grad_norm_, clip_grad_value_

from experiments.data import MNIST, N_TRAIN

PROBE_SIZE = 1000  # validation images used for the per-layer diagnostics
SCHEDULES = ("none", "StepLR", "CosineAnnealingLR")
FLOAT_FIELDS = ("lr", "momentum", "weight_decay", "gamma", "clip_grad_norm", "clip_grad_value")
INT_FIELDS = ("step_size", "batch_size", "epochs", "seed", "train_subset")
KEY_SCHEMA = 1  # bumped only when the meaning of a RunConfig field changes (see RunConfig.key)
FUSED_ON_CPU = ("Adam", "AdamW")  # stepped by their fused kernel on the CPU (see make_torch_optimizer)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers; ``key()`` identifies it in the results."""

    layer_sizes: tuple = (784, 128, 128, 10)
    activation: str = "relu"
    loss: str = "cross_entropy"
    init: str = "he"
    optimizer: str = "Adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None  # None: the optimizer's default
    schedule: str = "none"
    step_size: int = 1  # StepLR's period in epochs
    gamma: float = 0.5  # StepLR's factor
    batch_size: int = 128
    epochs: int = 5
    seed: int = 0
    backend: str = "torch"
    dtype: str = "float32"
    train_subset: int | None = None
    batch_norm: bool = False  # batch normalisation between each hidden linear layer and its activation
    clip_grad_norm: float | None = None  # clip the global gradient L2 norm to this before each step
    clip_grad_value: float | None = None  # clamp every gradient entry to ±this before each step

    def __post_init__(self):
        object.__setattr__(self, "layer_sizes", tuple(int(n) for n in self.layer_sizes))
        manual.network.check_layer_sizes(self.layer_sizes)
        if self.layer_sizes[0] != 784 or self.layer_sizes[-1] != 10:
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
        if self.batch_norm:
            n_train = self.train_subset or N_TRAIN
            if self.batch_size == 1 or n_train % self.batch_size == 1:
                raise ValueError(f"batch_norm with batch_size {self.batch_size} and {n_train} training images "
                                 f"leaves a mini-batch of 1 image, whose batch variance is 0 (PyTorch refuses it "
                                 f"too): choose another batch_size or train_subset")

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


def batch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The seeded permutation of the training set for one epoch (identical for every backend)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def layer_stats(derivative: np.ndarray, activation: np.ndarray, grad_norm: float, act) -> dict:
    """Per-layer diagnostics from f'(z) and a = f(z) over the probe batch, shapes (B, units).

    - ``dead_frac``: the fraction of units whose f' is exactly 0 on every probe example (ReLU's dead units);
    - ``saturated_frac``: the fraction of (example, unit) pairs whose output lies in the activation's flat
      tails (``act.saturated``, Glorot & Bengio 2010: |tanh| > 0.97, σ within 0.03 of 0 or 1); NaN for an
      activation without such tails, where it would only repeat ``dead_frac``.
    """
    saturated = math.nan if act.saturated is None else float(np.mean(act.saturated(activation)))
    with np.errstate(over="ignore", invalid="ignore"):  # an exploding net's mean and std are inf or NaN, quietly
        return {
            "grad_norm": grad_norm,
            "dead_frac": float(np.mean(np.all(derivative == 0, axis=0))),
            "saturated_frac": saturated,
            "act_mean": float(activation.mean()),
            "act_std": float(activation.std()),
        }


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


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; valid devices: auto, cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is available")
    return device


# --------------------------------------------------------------------------- backends
class ManualBackend:
    """The NumPy network and hand-written optimizer (always on the CPU)."""

    device = "cpu"

    def __init__(self, config: RunConfig):
        self.config = config
        self.net = manual.MLP(config.layer_sizes, config.activation, config.loss, config.init, config.seed,
                              config.dtype, batch_norm=config.batch_norm)
        self.opt = manual.optim.get_optimizer(config.optimizer)(self.net.params, **config.optimizer_kwargs())
        self.scheduler = None
        if config.schedule != "none":
            self.scheduler = manual_schedules.get_scheduler(config.schedule)(self.opt, **config.schedule_kwargs())

    def prepare(self, split):
        return self.net.check_batch(split.features(self.net.dtype), split.labels)  # checked once, not per step

    def train_epoch(self, X, y, order: np.ndarray, batch_size: int) -> float:
        """One pass over ``order`` in mini-batches; the mean training loss (NaN/inf once it diverges).

        Sets ``clip_frac``: the fraction of the epoch's steps whose gradients clipping changed (NaN without).
        """
        self.net.train()
        total, steps, clipped = 0.0, 0, 0
        clipping = self.config.clip_grad_norm is not None or self.config.clip_grad_value is not None
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is recorded, not warned about
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                loss, grads = self.net.loss_and_grads(X[idx], y[idx], validate=False)
                if not math.isfinite(loss):
                    total = loss
                    break
                if clipping:
                    clipped += self.clip(grads)
                self.opt.step(grads)
                total += loss * len(idx)
                steps += 1
            else:
                total /= len(order)
        self.clip_frac = clipped / max(steps, 1) if clipping else math.nan
        return total

    def clip(self, grads: dict) -> bool:
        """Clip ``grads`` in place as the config says (``manual.optim``'s clip functions); True if that changed them."""
        max_norm, clip_value = self.config.clip_grad_norm, self.config.clip_grad_value
        if max_norm is not None:
            return max_norm / (clip_grad_norm_(grads, max_norm) + CLIP_EPS) < 1  # the scale torch applies
        return clip_grad_value_(grads, clip_value) > clip_value

    def evaluate(self, X, y) -> tuple[float, float]:
        self.net.eval()
        with np.errstate(over="ignore", invalid="ignore"):
            trace = self.net.trace(X)
            loss = self.net.loss_fn(trace.pre_activations[-1], y, self.net.output_activation, trace.output).loss
        return loss, float(np.mean(trace.output.argmax(axis=1) == y))

    def probe(self, X, y) -> list[dict]:
        with np.errstate(over="ignore", invalid="ignore"), batch_statistics(self.net, self.net.buffers.values()):
            trace = self.net.trace(X)
            _, grads = self.net.loss_and_grads(X, y)
        rows = []
        outputs = trace.inputs[1:] + [trace.output]  # a_l = f(z_l), kept by the forward pass
        for l, (z, a) in enumerate(zip(trace.pre_activations, outputs)):
            act = self.net.activation if l < self.net.n_layers - 1 else self.net.output_activation
            rows.append(layer_stats(act.df(z), a, float(np.linalg.norm(grads[f"layers.{l}.weight"])), act))
        return rows

    def end_epoch(self) -> float:
        if self.scheduler:
            self.scheduler.step()
        return self.opt.lr

    def sync(self):
        pass


class TorchBackend:
    """``torch_ref.MLP`` trained with ``torch.optim`` on the CPU or a CUDA GPU, data held on the device."""

    def __init__(self, config: RunConfig, device: str):
        import torch
        import torch_ref

        self.torch, self.config = torch, config
        self.device = resolve_device(device)
        self.model = torch_ref.MLP(config.layer_sizes, config.activation, config.loss, config.init, config.seed,
                                   dtype=config.dtype, device=self.device, batch_norm=config.batch_norm)
        self.opt = make_torch_optimizer(config, self.model.parameters(), self.device)
        self.scheduler = None
        if config.schedule != "none":
            self.scheduler = torch_ref.make_scheduler(config.schedule, self.opt, **config.schedule_kwargs())

    def prepare(self, split):
        return split_to_torch(split, self.model.layers[0].weight.dtype, self.device)

    def train_epoch(self, X, y, order: np.ndarray, batch_size: int) -> float:
        """As ``ManualBackend.train_epoch``, with ``torch.nn.utils``' clip functions."""
        torch, config = self.torch, self.config
        self.model.train()
        order = torch.from_numpy(order).to(self.device)
        total = torch.zeros((), dtype=X.dtype, device=self.device)
        clipped = torch.zeros((), dtype=torch.int64, device=self.device)  # counted on the device too
        params = list(self.model.parameters())
        steps = 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            self.opt.zero_grad(set_to_none=True)
            loss = self.model.loss(X[idx], y[idx], validate=False)
            loss.backward()
            if config.clip_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
                clipped += config.clip_grad_norm / (norm + CLIP_EPS) < 1
            elif config.clip_grad_value is not None:
                clipped += torch.stack([p.grad.abs().max() for p in params]).max() > config.clip_grad_value
                torch.nn.utils.clip_grad_value_(params, config.clip_grad_value)
            self.opt.step()
            total += loss.detach() * len(idx)  # summed on the device: no sync per step
            steps += 1
        clipping = config.clip_grad_norm is not None or config.clip_grad_value is not None
        self.clip_frac = int(clipped) / max(steps, 1) if clipping else math.nan
        return float(total) / len(order)

    def evaluate(self, X, y) -> tuple[float, float]:
        return evaluate_torch(self.model, X, y)

    def probe(self, X, y) -> list[dict]:
        with batch_statistics(self.model, self.model.buffers()):
            return probe_torch(self.model, X, y)

    def end_epoch(self) -> float:
        if self.scheduler:
            self.scheduler.step()
        return self.opt.param_groups[0]["lr"]

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()


def make_torch_optimizer(config: RunConfig, params, device: str, **overrides):
    """``torch.optim.<config.optimizer>`` over ``params`` (``overrides`` replace config's hyperparameters).

    On the CPU, Adam and AdamW use torch's fused kernel (``fused=True``): the same update rule in one pass
    per tensor instead of a dozen operations, which makes their step about 3× faster there.
    """
    import torch_ref

    kwargs = {**config.optimizer_kwargs(), **overrides}
    if device == "cpu" and config.optimizer in FUSED_ON_CPU:
        kwargs["fused"] = True
    return torch_ref.make_optimizer(config.optimizer, params, **kwargs)


def split_to_torch(split, dtype, device) -> tuple:
    """A split's pixels scaled to [0, 1] in ``dtype`` and its labels, as tensors held on ``device``."""
    import torch

    X = torch.from_numpy(split.images).to(device, dtype) / 255
    return X, torch.from_numpy(split.labels).to(device)


def evaluate_torch(model, X, y) -> tuple[float, float]:
    """Batch-mean loss and accuracy of a ``torch_ref.MLP`` on a whole split (prepared by ``split_to_torch``), in eval mode."""
    import torch

    model.eval()
    with torch.no_grad():
        loss = model.loss(X, y, validate=False)
        accuracy = (model(X, validate=False).argmax(dim=1) == y).to(X.dtype).mean()
    return float(loss), float(accuracy)


def probe_torch(model, X, y) -> list[dict]:
    """Per-layer diagnostics of a ``torch_ref.MLP``; f'(z) comes from autograd on PyTorch's own modules."""
    import torch

    weights = [layer.weight for layer in model.layers]
    grads = torch.autograd.grad(model.loss(X, y, validate=False), weights)
    with torch.no_grad():
        zs = model.pre_activations(X)
    rows = []
    for l, z in enumerate(zs):
        is_output = l == len(zs) - 1
        act = model.out_act if is_output else model.act
        name = model.spec["output_activation"] if is_output else model.spec["activation"]
        z = z.detach().requires_grad_(True)
        a = act(z)
        (derivative,) = torch.autograd.grad(a.sum(), z)
        rows.append(layer_stats(derivative.cpu().numpy(), a.detach().cpu().numpy(), float(grads[l].norm()),
                                ACTIVATIONS[name]))
    return rows


def make_backend(config: RunConfig, device: str = "auto"):
    return ManualBackend(config) if config.backend == "manual" else TorchBackend(config, device)


# --------------------------------------------------------------------------- the loop
DIVERGENCE_FACTOR = 100.0  # a loss above 100× the loss at initialisation means the run has diverged


class RunRecorder:
    """Builds one run's ``RunResult`` rows; ``train`` and ``experiments.stacked`` both record through it.

    It also holds the one divergence rule (``diverges``): a run has diverged when its training loss of an
    epoch, or its validation loss after it, is NaN or infinite, or exceeds ``DIVERGENCE_FACTOR`` (100) times
    its validation loss at initialisation (before any step). The reference is measured on the validation
    split, not on a training batch, so it is one number of the untrained network that every backend and
    the stacked trainer compute the same way. Learning shrinks a loss and never multiplies it by 100: at
    initialisation cross-entropy is about ln 10 ≈ 2.3 (bound ≈ 230) and the squared error about 1.3 (its
    ceiling, ½·10 = 5, is below the bound, so an MSE run can only diverge to NaN/inf), while an exploding
    run passes the bound within an epoch (lr 1e6 reaches 3.9e27). A stuck run (chance accuracy, finite
    loss) is not diverged: it is a finished run with a poor result.
    """

    def __init__(self, config: RunConfig, initial_loss: float):
        self.config, self.key, self.status = config, config.key(), "ok"
        self.initial_loss = initial_loss
        self.bound = DIVERGENCE_FACTOR * initial_loss if math.isfinite(initial_loss) else math.inf
        self.result = RunResult(run={})

    def diverges(self, loss: float) -> bool:
        """Whether ``loss`` (a training or validation loss) means the run has diverged; see the class."""
        return not math.isfinite(loss) or loss > self.bound

    def layers(self, epoch: int, stats: list[dict]) -> None:
        """One row per layer of the probe diagnostics after ``epoch`` (0 = at initialisation)."""
        for l, row in enumerate(stats):
            self.result.layers.append({"key": self.key, "epoch": epoch, "layer": l, **row})

    def epoch(self, epoch: int, train_loss: float, lr: float, epoch_time: float,
              val: tuple[float, float] | None = None, clip_frac: float = math.nan) -> bool:
        """Record one epoch's row; return whether the run goes on.

        It stops as diverged when a loss ``diverges`` or when there is no validation result (``val`` None:
        the caller skipped it because the training loss had already diverged). ``clip_frac``: the fraction of
        the epoch's optimizer steps whose gradients clipping changed (NaN: no clipping).
        """
        if val is None or self.diverges(train_loss) or self.diverges(val[0]):
            self.status = "diverged"
        val = (math.nan, math.nan) if val is None else val
        self.result.epochs.append({"key": self.key, "epoch": epoch, "train_loss": train_loss, "val_loss": val[0],
                                   "val_acc": val[1], "lr": lr, "epoch_time_s": epoch_time, "clip_frac": clip_frac})
        return self.status == "ok"

    def finish(self, test: tuple[float, float], device: str, start: float) -> RunResult:
        """The run row (``test`` = test loss and accuracy, NaN for a diverged run); ``start`` from perf_counter."""
        last = self.result.epochs[-1]
        self.result.run = {
            "key": self.key, **run_columns(self.config), "status": self.status,
            "epochs_done": len(self.result.epochs), "final_train_loss": last["train_loss"],
            "final_val_loss": last["val_loss"], "final_val_acc": last["val_acc"], "test_loss": test[0],
            "test_acc": test[1], "device": device, "train_time_s": sum(e["epoch_time_s"] for e in self.result.epochs),
            "wall_time_s": time.perf_counter() - start,
        }
        return self.result


def train(config: RunConfig, data: MNIST, device: str = "auto", progress: bool = False) -> RunResult:
    """Train one run and record it; a run whose loss diverges (``RunRecorder``) stops with status ``diverged``."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    backend = make_backend(config, device)
    train_X, train_y = backend.prepare(data.train)
    val_X, val_y = backend.prepare(data.val)
    probe_X, probe_y = val_X[:PROBE_SIZE], val_y[:PROBE_SIZE]
    record = RunRecorder(config, initial_loss=backend.evaluate(val_X, val_y)[0])
    record.layers(0, backend.probe(probe_X, probe_y))
    lr = config.lr
    epochs = tqdm(range(1, config.epochs + 1), desc=f"{config.backend} {config.activation} {config.optimizer}",
                  unit="epoch", leave=False, disable=not progress)
    for epoch in epochs:
        backend.sync()
        t0 = time.perf_counter()
        train_loss = backend.train_epoch(train_X, train_y, batch_order(config.seed, epoch, len(train_y)),
                                         config.batch_size)
        backend.sync()
        epoch_time = time.perf_counter() - t0
        val = None if record.diverges(train_loss) else backend.evaluate(val_X, val_y)
        if not record.epoch(epoch, train_loss, lr, epoch_time, val, backend.clip_frac):
            break
        record.layers(epoch, backend.probe(probe_X, probe_y))
        lr = backend.end_epoch()
        epochs.set_postfix(loss=f"{train_loss:.4f}", val_acc=f"{val[1]:.4f}")

    test = backend.evaluate(*backend.prepare(data.test)) if record.status == "ok" else (math.nan, math.nan)
    return record.finish(test, backend.device, start)


def run_columns(config: RunConfig) -> dict:
    """The config as flat CSV columns (layer sizes as ``784-128-10``)."""
    row = dataclasses.asdict(config)
    row["layer_sizes"] = "-".join(map(str, config.layer_sizes))
    return row
