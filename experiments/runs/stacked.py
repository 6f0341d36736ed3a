"""Many runs of one configuration trained at once as one batched model (on CUDA, and on the CPU for small nets).

Which runs a study stacks is ``should_stack``'s fixed rule on the configuration (see there); the
executors (``experiments.execute``) form the stacks.

Runs that differ only in seed and learning rate (the same ``stack_group_key``)
have parameters of the same shapes, so N of them stack into tensors with a
leading model axis — a weight (out, in) becomes (N, out, in) — and
``torch.vmap`` maps the single run's own forward pass and loss over that axis:
``torch.func.functional_call`` of the run's network (``torch_ref.mirror``) with
one model's parameters, then ``torch_ref.Criterion``, so a stacked run computes
exactly what the same run computes alone, for any architecture, loss and
activation, plug-ins included. Each model keeps its own mini-batches
(``training.batch_order`` of its own seed, so X[idx] with idx of shape (N, B)),
and the models' losses are summed and backpropagated once: model i's
parameters only ever meet model i's loss, so every gradient stays that model's own.

One ``torch.optim`` optimizer steps all N models. Per-model learning rates work
because every update rule here (SGD with momentum, Nesterov and weight decay,
Adagrad, RMSprop, Adam, AdamW's decoupled decay) is linear in the learning rate
η given its state: θ_new = θ − η·u(state, g, θ). So the optimizer steps with
η = the schedule's factor (its base rate is 1), and each model is then moved
η_i times as far: θ ← θ + η_i·(θ_stepped − θ). The state (momenta, squared
averages) never depends on η, so it is each model's own as well.

Everything else is ``training.train``'s: the same initial parameters
(``training.build_manual`` of each config, mirrored), the same mini-batch sizes, the per-epoch
evaluation and per-layer probes by ``training.evaluate_torch`` / ``diagnostics.probe_torch``
on each model copied out into its own twin, and the same rows
(``training.RunRecorder``). A model whose loss diverges (``RunRecorder.diverges``: NaN/inf, or
100× its loss at initialisation) is recorded as diverged at that epoch and frozen, while the others go on. Each model's
``epoch_time_s`` is its share (1/N) of the stacked epoch's time.
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

import torch_ref
from manual.nn import arch

from experiments.runs import diagnostics, training
from experiments.data import MNIST
from experiments.runs.training import PROBE_SIZE, RunConfig, RunRecorder, RunResult

UNSTACKED_FIELDS = ("seed", "lr")  # what may differ between the runs of one stack
# The CPU rule, calibrated once from results/bench (16 models stacked vs one after another, float32, 1 thread):
# 784-30-10 at batch 10 gained 4.4×, at batch 128 1.9×, and 784-128-128-10 at batch 128 1.0×. The gain falls
# with the arithmetic of one model's step, batch × multiply-adds per example (0.24 M, 3.0 M, 15 M): interpolated
# on a log scale it is still about 1.25× at 8 M, where the rule stops stacking.
CPU_STACK_MAX_WORK = 8_000_000  # batch_size × multiply-adds of one example's forward pass
MAX_STACK = 16  # models per stack at most (the size the benchmark measured)


RECURRENT = ("rnn", "lstm", "gru")  # layer kinds (manual.nn.arch) whose torch modules torch.vmap cannot map


def stackable(config: RunConfig) -> bool:
    """Whether stacked training reproduces ``training.train`` for ``config``: not with batch norm, clipping or a
    recurrent layer.

    Those runs are never stacked; the executor trains them one by one. (Batch norm would need per-model
    statistics and running estimates in the stacked forward pass, and clipping by norm a per-model global norm
    where one backward pass yields all models' gradients at once; ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` run
    fused kernels for which ``torch.vmap`` has no batching rule.)
    """
    recurrent = any(arch.parse(layer).kind in RECURRENT for layer in config.architecture())
    return (not config.has_batch_norm and config.clip_grad_norm is None and config.clip_grad_value is None
            and not recurrent)


def stack_group_key(config: RunConfig) -> tuple:
    """Everything in ``config`` except seed and learning rate: runs with equal keys can be stacked."""
    fields = dataclasses.asdict(config)
    return tuple(sorted((name, value) for name, value in fields.items() if name not in UNSTACKED_FIELDS))


def step_work(config: RunConfig) -> int:
    """Multiply-adds of one model's mini-batch forward pass: batch size × ``forward_macs`` of one example."""
    return config.batch_size * forward_macs(training.build_manual(config), (training.MNIST_INPUT,))


def forward_macs(model, input_shape: tuple) -> int:
    """Multiply-adds of one example's forward pass through the weighted layers of a ``manual.nn.Sequential``: a
    linear layer's weights; a convolution's output elements × in_channels·kh·kw; a recurrent layer's time steps ×
    its weights (every weight once per step)."""
    total, shape = 0, tuple(input_shape)
    for module in model.children():
        out = module.output_shape(shape)
        kind = module.torch_spec()[0]
        if kind == "Linear":
            total += module.weight.size
        elif kind == "Conv2d":
            total += math.prod(out) * module.weight[0].size
        elif kind in ("RNN", "LSTM", "GRU"):
            total += shape[0] * sum(p.size for name, p in module.params.items() if name.startswith("weight"))
        shape = out
    return total


def should_stack(config: RunConfig, device: str) -> bool:
    """The fixed rule: is ``config`` trained in a stack with its seed and lr siblings on ``device``?

    Only the torch backend stacks, and never a config that is not ``stackable``. On CUDA every
    such config stacks; on the CPU those whose step is small enough that per-operation overhead, which a
    stack shares, outweighs arithmetic (``CPU_STACK_MAX_WORK``). A rule on the configuration, not a timing,
    so the same spec runs the same way on any machine under any load.
    """
    if config.backend != "torch" or not stackable(config):
        return False
    return device == "cuda" or step_work(config) <= CPU_STACK_MAX_WORK


def stored(stack: torch.Tensor) -> torch.Tensor:
    """A stacked parameter in the memory layout its gradient arrives in: a matrix per model (a linear layer's
    (N, out, in) weight) column-major, the rest as it is.

    Under vmap a linear layer computes x·Wᵀ as a batched product with Wᵀ, and its weight gradient as (xᵀ·g)ᵀ. With
    each W stored column-major, Wᵀ is contiguous and (xᵀ·g)ᵀ has W's strides, so autograd hands the gradient over
    instead of copying it into a row-major one (for 16 models of 784-30-10 at batch 16 the copy was about a tenth
    of the step). Values are the same; only strides differ.
    """
    return stack.transpose(-1, -2).contiguous().transpose(-1, -2) if stack.ndim == 3 else stack


class StackedModel:
    """N networks of one architecture as stacked parameter tensors with a leading model axis, evaluated by the very
    modules a single run uses: ``torch.func.functional_call`` of one twin under ``torch.vmap`` over the models."""

    def __init__(self, configs: list[RunConfig], device: str):
        # one single network per config: its initial parameters, and the twin that evaluation copies into
        nets = [training.build_manual(c) for c in configs]
        self.twins = [torch_ref.mirror(net, device) for net in nets]
        self.criterion = torch_ref.Criterion(configs[0].loss)
        self.points = diagnostics.probe_points(nets[0])
        self.params = {name: stored(torch.stack([dict(t.named_parameters())[name].detach() for t in self.twins]))
                       .requires_grad_() for name, _ in self.twins[0].named_parameters()}
        model, criterion = self.twins[0], self.criterion

        def loss(params, X, y):
            """One model's batch-mean loss: its parameters in the single network's forward pass and loss."""
            return criterion(torch.func.functional_call(model, params, (X,)), y)

        self.losses = torch.vmap(loss)  # (params with a model axis, X (N, B, …), y (N, B)) → (N,) losses

    @property
    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def unstacked(self, i: int):
        """Model ``i`` as its own torch network (its twin, loaded with the current parameters, NaN/inf included)."""
        twin = self.twins[i]
        with torch.no_grad():
            for name, p in twin.named_parameters():
                p.copy_(self.params[name][i])
        return twin


class StackedTrainer:
    """The stacked model with one ``torch.optim`` optimizer (and schedule) and per-model learning rates."""

    def __init__(self, configs: list[RunConfig], device: str = "auto"):
        check_stackable(configs)
        spec = configs[0]
        self.configs, self.device = configs, training.resolve_device(device)
        self.net = StackedModel(configs, self.device)
        dtype = self.net.parameters[0].dtype
        # lr 1: each model's step is scaled by its own rate afterwards
        self.opt = training.make_torch_optimizer(spec, self.net.parameters, self.device, lr=1.0)
        self.scheduler = None
        if spec.schedule != "none":
            self.scheduler = torch_ref.make_scheduler(spec.schedule, self.opt, **spec.schedule_kwargs())
        # θ ← θ₀ + η_i·(θ_stepped − θ₀) is lerp(θ_stepped, θ₀, 1 − η_i): the weight given to θ₀, per model
        lrs = torch.tensor([c.lr for c in configs], dtype=dtype, device=self.device)
        self.keep = 1 - lrs

    def freeze(self, i: int) -> None:
        """Stop updating model ``i`` (it diverged: its every step is undone); the others train on unchanged."""
        self.keep[i] = 1

    def train_epoch(self, X, y, orders: np.ndarray, batch_size: int) -> list[float]:
        """One pass of every model over its row of ``orders`` (N, n); each model's mean training loss."""
        params = self.net.parameters
        orders_t = torch.from_numpy(np.ascontiguousarray(orders)).to(self.device)
        n = orders_t.shape[1]
        total = torch.zeros(len(self.configs), dtype=X.dtype, device=self.device)
        before = [torch.empty_like(p) for p in params]  # θ₀ of each step, in buffers reused every step
        keeps = [self.keep.view(-1, *[1] * (p.ndim - 1)) for p in params]
        for start in range(0, n, batch_size):
            idx = orders_t[:, start:start + batch_size]  # (N, B): each model's own mini-batch
            self.opt.zero_grad(set_to_none=True)
            rows = idx.reshape(-1)  # index_select on the flat indices: X[idx]'s values, a third of its time
            batch_X = X.index_select(0, rows).view(*idx.shape, *X.shape[1:])
            losses = self.net.losses(self.net.params, batch_X, y.index_select(0, rows).view(idx.shape))
            losses.sum().backward()
            with torch.no_grad():
                for p, p0 in zip(params, before):
                    p0.copy_(p)
            self.opt.step()
            with torch.no_grad():
                for p, p0, keep in zip(params, before, keeps):
                    p.lerp_(p0, keep)
            total += losses.detach() * idx.shape[1]
        return [float(t) / n for t in total.cpu()]

    def end_epoch(self) -> float:
        """Step the schedule; return its factor (every model's rate is its own lr times it)."""
        if self.scheduler:
            self.scheduler.step()
        return self.opt.param_groups[0]["lr"]

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def check_stackable(configs: list[RunConfig]) -> None:
    """Refuse an empty list, configs that differ in more than seed and lr, the manual backend, and configs
    that are not ``stackable`` (batch norm, clipping)."""
    if not configs:
        raise ValueError("train_stacked needs at least one config")
    fields = [dataclasses.asdict(c) for c in configs]
    differing = sorted(name for name in fields[0] if name not in UNSTACKED_FIELDS
                       and len({repr(f[name]) for f in fields}) > 1)
    if differing:
        raise ValueError(f"stacked runs may differ only in {' and '.join(UNSTACKED_FIELDS)}; "
                         f"these configs also differ in {', '.join(differing)}")
    if configs[0].backend != "torch":
        raise ValueError(f"stacked training is torch's; got backend {configs[0].backend!r}")
    if not all(stackable(c) for c in configs):
        raise ValueError("batch-norm, clipped and recurrent runs are never stacked (see stacked.stackable): "
                         "train them one by one with training.train")


def probe(net: StackedModel, model, X, y) -> list[dict]:
    """A model's per-layer diagnostics, measured on its twin (``net.unstacked``) as a single run's are."""
    return diagnostics.probe_torch(model, net.criterion, net.points, X, y)


def train_stacked(configs: list[RunConfig], data: MNIST, device: str = "auto",
                  progress: bool = False) -> list[RunResult]:
    """Train ``configs`` (same ``stack_group_key``) at once; the results ``training.train`` gives each, in order."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    trainer = StackedTrainer(configs, device)
    spec, net = configs[0], trainer.net
    dtype = net.parameters[0].dtype
    train_X, train_y = training.split_to_torch(data.train, dtype, trainer.device)
    val_X, val_y = training.split_to_torch(data.val, dtype, trainer.device)
    probe_X, probe_y = val_X[:PROBE_SIZE], val_y[:PROBE_SIZE]
    records = []
    for i, config in enumerate(configs):
        model = net.unstacked(i)
        records.append(RunRecorder(config, training.evaluate_torch(model, net.criterion, val_X, val_y)[0]))
        records[-1].layers(0, probe(net, model, probe_X, probe_y))
    factor = 1.0
    epochs = tqdm(range(1, spec.epochs + 1), desc=f"{len(configs)} stacked {spec.activation} {spec.optimizer}",
                  unit="epoch", leave=False, disable=not progress)
    for epoch in epochs:
        live = [i for i, r in enumerate(records) if r.status == "ok"]
        if not live:
            break
        orders = np.stack([training.batch_order(c.seed, epoch, len(train_y)) for c in configs])
        trainer.sync()
        t0 = time.perf_counter()
        losses = trainer.train_epoch(train_X, train_y, orders, spec.batch_size)
        trainer.sync()
        share = (time.perf_counter() - t0) / len(live)
        for i in live:
            lr = configs[i].lr * factor
            model = net.unstacked(i)
            val = None if records[i].diverges(losses[i]) else training.evaluate_torch(model, net.criterion, val_X, val_y)
            if not records[i].epoch(epoch, losses[i], lr, share, val):  # diverged: the one rule, in RunRecorder
                trainer.freeze(i)
                continue
            records[i].layers(epoch, probe(net, model, probe_X, probe_y))
        factor = trainer.end_epoch()

    test_X, test_y = training.split_to_torch(data.test, dtype, trainer.device)
    results = []
    for i, record in enumerate(records):
        ok = record.status == "ok"
        test = training.evaluate_torch(net.unstacked(i), net.criterion, test_X, test_y) if ok else (math.nan, math.nan)
        results.append(record.finish(test, trainer.device, start))
    return results
