"""One training run of either implementation on MNIST, with the diagnostics every study records.

``train(config, data)`` trains the network that ``config`` describes with
``config.backend`` (``"manual"``: NumPy, hand-written gradients; ``"torch"``:
``torch_ref`` + ``torch.optim`` on CPU or CUDA) and returns a ``RunResult``:

- ``run``: one row — the full config, final metrics, status (``ok`` / ``diverged``), wall time;
- ``epochs``: one row per epoch — train loss, validation loss and accuracy, learning rate, time;
- ``layers``: one row per epoch (0 = at initialisation) and layer — ‖∂E/∂W‖, dead and
  saturated fractions, activation mean and standard deviation, all measured on a
  fixed evaluation batch (the first ``PROBE_SIZE`` validation images).

The network is ``manual.nn.build`` of the config's architecture; the torch backend trains its mirror
(``torch_ref.mirror``). The same seed gives both backends the same initial parameters
and the same mini-batch order (``batch_order``), so with float64 their learning
curves coincide.
"""
from __future__ import annotations

import math
import time

import numpy as np

import manual
import manual.nn
from manual.losses import get_loss
from manual.network import check_inputs, check_labels
from manual.nn.loss import output_activation
from manual.optim import lr_scheduler as manual_schedules
from manual.optim.clip import CLIP_EPS, clip_grad_norm_, clip_grad_value_

from experiments.config import MNIST_CLASSES, MNIST_INPUT, RunConfig, RunResult, run_columns
from experiments.data import MNIST
from experiments.runs import diagnostics

PROBE_SIZE = 1000  # validation images used for the per-layer diagnostics
FUSED_ON_CPU = ("Adam", "AdamW")  # stepped by their fused kernel on the CPU (see make_torch_optimizer)


def batch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The seeded permutation of the training set for one epoch (identical for every backend)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


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
    """The ``manual.nn`` network of the config's architecture and a hand-written optimizer (always on the CPU)."""

    device = "cpu"

    def __init__(self, config: RunConfig):
        self.config = config
        self.net = build_manual(config)
        self.dtype = self.net.dtype
        self.points = diagnostics.probe_points(self.net)
        self.output = output_activation(config.loss)
        self.opt = manual.optim.get_optimizer(config.optimizer)(self.net.params, **config.optimizer_kwargs())
        self.scheduler = None
        if config.schedule != "none":
            self.scheduler = manual_schedules.get_scheduler(config.schedule)(self.opt, **config.schedule_kwargs())

    def prepare(self, split):
        """A split's pixels in the network's dtype and its labels, checked once (not per step)."""
        X = check_inputs(split.features(self.dtype), MNIST_INPUT, self.dtype)
        return X, check_labels(split.labels, len(X), MNIST_CLASSES)

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
                loss, grads = manual.nn.loss_and_grads(self.net, X[idx], y[idx], self.config.loss)
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

    def state_dict(self) -> dict:
        return self.net.state_dict()

    def evaluate(self, X, y) -> tuple[float, float]:
        """Batch-mean loss and accuracy on a whole split, in eval mode."""
        self.net.eval()
        with np.errstate(over="ignore", invalid="ignore"):
            z = self.net.forward(X)
            a = self.output.f(z)
            loss = get_loss(self.config.loss)(z, y, self.output, a).loss
        return loss, float(np.mean(a.argmax(axis=1) == y))

    def probe(self, X, y) -> list[dict]:
        return diagnostics.probe_manual(self.net, self.points, X, y, self.config.loss)

    def end_epoch(self) -> float:
        if self.scheduler:
            self.scheduler.step()
        return self.opt.lr

    def sync(self):
        pass


def build_manual(config: RunConfig) -> manual.nn.Sequential:
    """The config's network as ``manual.nn`` modules: its architecture, initialiser, seed and dtype."""
    return manual.nn.build(config.architecture(), MNIST_INPUT, activation=config.activation, init=config.init,
                           seed=config.seed, dtype=config.dtype)


class TorchBackend:
    """The config's network mirrored in torch's own modules (``torch_ref.mirror``), trained with ``torch.optim`` on
    the CPU or a CUDA GPU, data held on the device."""

    def __init__(self, config: RunConfig, device: str):
        import torch
        import torch_ref

        self.torch, self.config = torch, config
        self.device = resolve_device(device)
        net = build_manual(config)
        self.points = diagnostics.probe_points(net)
        self.model = torch_ref.mirror(net, self.device)
        self.criterion = torch_ref.Criterion(config.loss)
        self.dtype = next(self.model.parameters()).dtype
        self.opt = make_torch_optimizer(config, self.model.parameters(), self.device)
        self.scheduler = None
        if config.schedule != "none":
            self.scheduler = torch_ref.make_scheduler(config.schedule, self.opt, **config.schedule_kwargs())

    def prepare(self, split):
        return split_to_torch(split, self.dtype, self.device)

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
            loss = self.criterion(self.model(X[idx]), y[idx])
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

    def state_dict(self) -> dict:
        from torch_ref.mirror import to_numpy_state

        return to_numpy_state(self.model.state_dict())

    def evaluate(self, X, y) -> tuple[float, float]:
        return evaluate_torch(self.model, self.criterion, X, y)

    def probe(self, X, y) -> list[dict]:
        with diagnostics.batch_statistics(self.model, self.model.buffers()):
            return diagnostics.probe_torch(self.model, self.criterion, self.points, X, y)

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


def evaluate_torch(model, criterion, X, y) -> tuple[float, float]:
    """Batch-mean loss and accuracy of a torch network on a whole split (prepared by ``split_to_torch``), in eval mode."""
    import torch

    model.eval()
    with torch.no_grad():
        z = model(X)
        loss = criterion(z, y)
        accuracy = (criterion.output(z).argmax(dim=1) == y).to(X.dtype).mean()
    return float(loss), float(accuracy)


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
    return fit(config, data, device, progress)[0]


def fit(config: RunConfig, data: MNIST, device: str = "auto", progress: bool = False) -> tuple:
    """``train``, returning the trained network too: (``RunResult``, the trained parameters as NumPy arrays
    under their state-dict keys)."""
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
    return record.finish(test, backend.device, start), backend.state_dict()
