"""``python -m experiments bench``: how fast each implementation trains, against the usual ways.

It measures seconds per training epoch (50,000 images) of

- the classic configuration: 784-30-10, sigmoid, squared error, plain SGD lr 3.0, batches of 10 and 128;
- a modern one: 784-128-128-10, ReLU, cross-entropy, Adam lr 1e-3, batches of 128;

for ``manual`` in float64 and float32, torch on the CPU and on CUDA (data held on
the device: ``training.TorchBackend``), and the two baselines of
``experiments.baselines`` — the per-example loop and the DataLoader way (on the
same device). It times N = 16 models (4 seeds × 4 learning rates) trained at once
by ``experiments.stacked`` against the same 16 trained one after another, and
sweeps hidden width and batch size for throughput (examples/s).

Every figure is the median of ``--repeats`` timed runs after a warm-up, and every
ratio divides two medians of the same run. Headline rows time whole epochs, except
for the two slow baselines (10,000 examples each), the stacked rows (5,000 examples
per model) and the sweeps (as many whole mini-batches as fill about
``SWEEP_SECONDS``); seconds per epoch are then extrapolated to 50,000 images (the
``measured_examples`` column says how many were timed). CUDA rows are marked "not
measured" when no GPU is present — never estimated.

Threads: ``--threads`` (default 1) sets torch's intra-op threads and NumPy's
OpenBLAS threads alike. A small MLP's step is bound by per-operation overhead, not
arithmetic, and on a shared machine a second thread that has to wait for a busy
core made single steps up to 100× slower in our trials; pass ``--threads 2`` on an
idle machine. The thread counts are recorded with the results.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.runs import training
from experiments.bench.baselines import DataLoaderWay, PerExampleLoop
from experiments.cli import positive_int
from experiments.data import DEFAULT_ROOT, N_TRAIN, load_mnist
from experiments.errors import UserError
from experiments.files import check_output_folder
from experiments.runs.stacked import StackedTrainer
from experiments.runs.training import RunConfig

CONFIGS = {
    "classic": RunConfig((784, 30, 10), "sigmoid", "mse", "normal", "SGD", 3.0, batch_size=10, dtype="float64"),
    "modern": RunConfig((784, 128, 128, 10), "relu", "cross_entropy", "he", "Adam", 1e-3, batch_size=128),
}
HEADLINE = (("classic", 10), ("classic", 128), ("modern", 128))  # (config, batch size) timed over whole epochs
STACK_SEEDS = (0, 1, 2, 3)
STACK_LRS = {"classic": (0.5, 1.0, 2.0, 3.0), "modern": (1e-4, 3e-4, 1e-3, 3e-3)}  # 4 seeds × 4 rates = 16 models
WIDTHS = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # hidden width of the classic 784-W-10, batch 128
BATCHES = (1, 4, 16, 64, 256, 1024, 4096)  # batch size of the classic 784-30-10
SWEEP_SECONDS = 0.3  # each sweep point times about this long per repeat
NOT_MEASURED = "not measured (no GPU lent)"


@dataclass(frozen=True)
class Settings:
    """How much to measure: the full benchmark or ``--quick``."""

    repeats: int = 5
    sweep_repeats: int = 3
    train_subset: int | None = None  # None: all 50,000 images
    per_example_cap: int = 10_000  # examples the per-example loop is timed on in the headline rows
    loader_cap: int = 10_000  # examples the DataLoader way is timed on in the headline rows
    stack_examples: int = 5_000  # examples per model in the stacked-vs-sequential rows
    sweep_seconds: float = SWEEP_SECONDS
    widths: tuple = WIDTHS
    batches: tuple = BATCHES

    @classmethod
    def quick(cls, repeats: int | None = None) -> "Settings":
        return cls(repeats=repeats or 2, sweep_repeats=min(repeats or 2, 2), train_subset=2_000, per_example_cap=200,
                   loader_cap=512, stack_examples=64, sweep_seconds=0.02, widths=(32, 256), batches=(1, 64))


@dataclass(frozen=True)
class Impl:
    """One implementation, in one dtype, on one device (``build_trainer`` makes its trainer)."""

    name: str  # manual, torch, per-example, dataloader, dataloader-2-workers, stacked-16, sequential-16
    dtype: str
    device: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.dtype} ({self.device})"


IMPLEMENTATIONS = (
    Impl("manual", "float64", "cpu"), Impl("manual", "float32", "cpu"), Impl("torch", "float32", "cpu"),
    Impl("torch", "float32", "cuda"), Impl("per-example", "float64", "cpu"), Impl("dataloader", "float32", "cpu"),
    Impl("dataloader", "float32", "cuda"),
)
EXTRA_AT_128 = (Impl("dataloader-2-workers", "float32", "cpu"),)  # headline rows at batch 128 only
STACK_IMPLS = tuple(Impl(name, "float32", device) for device in ("cpu", "cuda")
                    for name in ("stacked-16", "sequential-16"))


# --------------------------------------------------------------------------- trainers: run(n_examples, epoch)
class OrderTrainer:
    """An implementation with ``train_epoch(X, y, order, batch_size)`` (manual, torch, per-example)."""

    def __init__(self, impl, config: RunConfig, data, prepared: tuple | None = None):
        self.impl, self.config = impl, config
        self.X, self.y = impl.prepare(data.train) if prepared is None else prepared

    def run(self, n_examples: int, epoch: int) -> float:
        order = training.batch_order(self.config.seed, epoch, len(self.y))[:n_examples]
        loss = self.impl.train_epoch(self.X, self.y, order, self.config.batch_size)
        self.impl.sync()
        return loss


class LoaderTrainer:
    def __init__(self, way: DataLoaderWay):
        self.way = way

    def run(self, n_examples: int, epoch: int) -> float:
        loss = self.way.train_examples(n_examples)
        self.way.sync()
        return loss


class StackTrainer:
    """``experiments.stacked``: every model of the stack trains on ``n_examples`` of its own order."""

    def __init__(self, configs: list[RunConfig], data, device: str):
        self.configs, self.trainer = configs, StackedTrainer(configs, device)
        self.X, self.y = training.split_to_torch(data.train, self.trainer.net.parameters[0].dtype, self.trainer.device)

    def run(self, n_examples: int, epoch: int) -> float:
        orders = np.stack([training.batch_order(c.seed, epoch, len(self.y))[:n_examples] for c in self.configs])
        losses = self.trainer.train_epoch(self.X, self.y, orders, self.configs[0].batch_size)
        self.trainer.sync()
        return float(np.mean(losses))


class SequentialTrainer:
    """The same models as ``StackTrainer``, trained one after another by ``training.TorchBackend``."""

    def __init__(self, configs: list[RunConfig], data, device: str):
        first = OrderTrainer(training.TorchBackend(configs[0], device), configs[0], data)
        self.trainers = [first] + [OrderTrainer(training.TorchBackend(c, device), c, data, (first.X, first.y))
                                   for c in configs[1:]]  # one copy of the training set, shared

    def run(self, n_examples: int, epoch: int) -> float:
        return float(np.mean([t.run(n_examples, epoch) for t in self.trainers]))


def stack_configs(config: RunConfig, name: str) -> list[RunConfig]:
    return [dataclasses.replace(config, seed=s, lr=lr) for s in STACK_SEEDS for lr in STACK_LRS[name]]


def build_trainer(impl: Impl, name: str, config: RunConfig, data, root):
    """The trainer that times ``impl`` on ``config`` (called ``name`` in ``CONFIGS``), in ``impl``'s dtype."""
    config = dataclasses.replace(config, dtype=impl.dtype, backend="manual" if impl.name == "manual" else "torch")
    if impl.name in ("manual", "torch"):
        return OrderTrainer(training.make_backend(config, impl.device), config, data)
    if impl.name == "per-example":
        return OrderTrainer(PerExampleLoop(config, impl.dtype), config, data)
    if impl.name.startswith("dataloader"):
        workers = 2 if impl.name == "dataloader-2-workers" else 0
        return LoaderTrainer(DataLoaderWay(config, impl.device, root, len(data.train), workers))
    cls = StackTrainer if impl.name.startswith("stacked") else SequentialTrainer
    return cls(stack_configs(config, name), data, impl.device)


# --------------------------------------------------------------------------- timing
@dataclass
class Timing:
    seconds: list  # per repeat
    examples: int  # examples per model per repeat

    def per_epoch(self, reduce) -> float:
        """Seconds per epoch of 50,000 images (per model set), extrapolated from the timed examples."""
        return float(reduce(self.seconds)) * N_TRAIN / self.examples


def time_runs(trainer, n_examples: int, repeats: int) -> tuple[list, bool]:
    """``repeats`` timed runs over ``n_examples`` (each a fresh order); the times and whether every loss was finite."""
    seconds, finite = [], True
    for epoch in range(1, repeats + 1):
        t0 = time.perf_counter()
        loss = trainer.run(n_examples, epoch)
        seconds.append(time.perf_counter() - t0)
        finite = finite and math.isfinite(loss)
    return seconds, finite


def calibrate(trainer, batch: int, target_seconds: float, limit: int) -> int:
    """Warm up on one mini-batch, then return how many examples (whole batches, ≤ ``limit``) fill ``target_seconds``."""
    trainer.run(batch, 0)
    t0 = time.perf_counter()
    trainer.run(batch, 0)
    per_batch = max(time.perf_counter() - t0, 1e-9)
    steps = max(1, math.ceil(target_seconds / per_batch))
    return max(1, min(steps * batch, limit // batch * batch, limit))


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Item:
    kind: str  # epoch, stacked, width, batch
    config_name: str
    config: RunConfig
    impl: Impl
    examples: int | None  # fixed examples per repeat, or None: calibrated to the sweep's time per point

    @property
    def models(self) -> int:
        return len(STACK_SEEDS) * len(STACK_LRS[self.config_name]) if self.kind == "stacked" else 1


def plan(settings: Settings, n_train: int) -> list[Item]:
    items = []
    for name, batch in HEADLINE:
        config = dataclasses.replace(CONFIGS[name], batch_size=batch)
        for impl in IMPLEMENTATIONS + (EXTRA_AT_128 if batch == 128 else ()):
            items.append(Item("epoch", name, config, impl, headline_examples(impl, settings, n_train)))
        for impl in STACK_IMPLS:
            items.append(Item("stacked", name, config, impl, min(settings.stack_examples, n_train)))
    classic = dataclasses.replace(CONFIGS["classic"], batch_size=128)
    for width in settings.widths:
        config = dataclasses.replace(classic, layer_sizes=(784, width, 10))
        items += [Item("width", "classic", config, impl, None) for impl in IMPLEMENTATIONS]
    for batch in settings.batches:
        config = dataclasses.replace(CONFIGS["classic"], batch_size=batch)
        items += [Item("batch", "classic", config, impl, None) for impl in IMPLEMENTATIONS]
    return items


def headline_examples(impl: Impl, settings: Settings, n_train: int) -> int:
    """Whole epochs, except for the slow baselines' bounded number of examples."""
    if impl.name == "per-example":
        return min(settings.per_example_cap, n_train)
    if impl.name.startswith("dataloader"):
        return min(settings.loader_cap, n_train)
    return n_train


def measure(item: Item, data, settings: Settings, root, threads: int) -> dict:
    """One row of bench.csv: the item timed (or marked not measured when its device is absent)."""
    row = {"kind": item.kind, "config": item.config_name, "layer_sizes": "-".join(map(str, item.config.layer_sizes)),
           "hidden_width": item.config.layer_sizes[1], "batch_size": item.config.batch_size,
           "implementation": item.impl.name, "dtype": item.impl.dtype, "device": item.impl.device,
           "models": item.models, "threads": threads}
    if item.impl.device == "cuda" and not cuda_available():
        return {**row, "status": NOT_MEASURED}
    trainer = build_trainer(item.impl, item.config_name, item.config, data, root)
    batch, n_train = item.config.batch_size, len(data.train)
    if item.examples is None:
        examples, repeats = calibrate(trainer, batch, settings.sweep_seconds, n_train), settings.sweep_repeats
    else:
        examples, repeats = item.examples, settings.repeats
        trainer.run(min(examples, 20 * batch), 0)  # warm-up
    seconds, finite = time_runs(trainer, examples, repeats)
    timing = Timing(seconds, examples)
    return {**row, "repeats": repeats, "measured_examples": examples * item.models,
            "median_s_per_epoch": timing.per_epoch(np.median), "min_s_per_epoch": timing.per_epoch(np.min),
            "max_s_per_epoch": timing.per_epoch(np.max),
            "examples_per_s": examples * item.models / float(np.median(seconds)),
            "status": "measured" if finite else "measured (loss became non-finite)"}


def profile_manual_step(data, repeats: int, steps: int = 500, calls: int = 2000) -> dict:
    """Where manual's classic batch-10 float64 step goes: the whole step vs the first layer's two matrix products.

    Those two products (forward a·Wᵀ and ∂E/∂W = δᵀ·a with W 30×784) are the step's only sizeable arithmetic,
    and the same in any batched implementation; everything else is NumPy calls on 10×30 arrays. Medians of
    ``repeats`` timings of ``steps`` steps and of ``calls`` pairs of products.
    """
    config = CONFIGS["classic"]
    trainer = OrderTrainer(training.ManualBackend(config), config, data)
    trainer.run(100, 0)  # warm-up
    steps = min(steps, len(trainer.y) // config.batch_size)
    seconds, _ = time_runs(trainer, steps * config.batch_size, repeats)
    x, W = trainer.X[:config.batch_size], trainer.impl.net[0].weight
    delta = np.ones((config.batch_size, W.shape[0]), dtype=W.dtype)
    matmuls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            x @ W.T
            delta.T @ x
        matmuls.append((time.perf_counter() - t0) / calls)
    step, matmul = float(np.median(seconds)) / steps, float(np.median(matmuls))
    return {"step_us": step * 1e6, "first_layer_matmuls_us": matmul * 1e6,
            "first_layer_gflops": 2 * 2 * x.shape[0] * W.size / matmul / 1e9}


def command_line(args) -> str:
    """The command that reproduces the run (the options that differ from the defaults)."""
    words = ["python -m experiments bench"]
    for option, default in (("quick", False), ("repeats", None), ("device", "auto"), ("threads", 1),
                            ("skip_sweeps", False), ("only", None), ("workers", None)):
        value = getattr(args, option)
        if value != default:
            words.append(f"--{option.replace('_', '-')}" + ("" if value is True else f" {value}"))
    return " ".join(words)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --------------------------------------------------------------------------- threads and machine
def numpy_openblas():
    """NumPy's bundled OpenBLAS through ctypes (as threadpoolctl finds it), with its symbol suffix; or None."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("*openblas*")):
        lib = ctypes.CDLL(str(path))
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                if hasattr(lib, f"{prefix}set_num_threads{suffix}"):
                    return lib, prefix, suffix
    return None


def set_threads(n: int) -> dict:
    """Use ``n`` threads in torch and in NumPy's OpenBLAS; what was set (BLAS threads None if not found)."""
    import torch

    torch.set_num_threads(n)
    blas = numpy_openblas()
    if blas is None:
        return {"torch_threads": torch.get_num_threads(), "blas_threads": None}
    lib, prefix, suffix = blas
    getattr(lib, f"{prefix}set_num_threads{suffix}")(n)
    return {"torch_threads": torch.get_num_threads(), "blas_threads": getattr(lib, f"{prefix}get_num_threads{suffix}")()}


def cpu_model() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: dict) -> dict:
    """The machine and library versions the numbers belong to."""
    import platform

    import torch
    import torchvision

    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return {
        "cpu": cpu_model(), "cpu_cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch_threads": threads["torch_threads"],
        "numpy_blas_threads": threads["blas_threads"] if threads["blas_threads"] is not None else "not set (unknown BLAS)",
        "python": platform.python_version(), "numpy": np.__version__,
        "numpy_blas": f"{blas.get('name', '?')} {blas.get('version', '')}".strip(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "os": platform.platform(),
    }


# --------------------------------------------------------------------------- the command
def run(args) -> int:
    from tqdm.auto import tqdm

    from experiments.bench import report as bench_report

    if args.only == "recurrent":
        from experiments.bench import recurrent

        return recurrent.run(args)
    if args.only == "conv":  # the convolution section: experiments.bench.conv
        from experiments.bench import conv

        return conv.run(args)
    if args.only == "sweep":
        return run_sweep(args, {"cpu_cores": os.cpu_count(), "load_average_before": os.getloadavg()})
    settings = Settings.quick(args.repeats) if args.quick else Settings(repeats=args.repeats or Settings.repeats)
    if args.device == "cuda" and not cuda_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available")
    check_output_folder(args.out)
    threads = set_threads(args.threads)
    load_before = os.getloadavg()
    data = load_mnist(args.data_dir, settings.train_subset)
    items = [item for item in plan(settings, len(data.train))
             if not (args.skip_sweeps and item.kind in ("width", "batch"))
             and not (args.device == "cpu" and item.impl.device == "cuda")]
    rows = []
    for item in tqdm(items, desc="bench", unit="item", disable=args.no_progress):
        rows.append(measure(item, data, settings, args.data_dir, args.threads))
    profile = profile_manual_step(data, settings.repeats)
    info = {**machine(threads), "load_average_before": load_before, "load_average_after": os.getloadavg(),
            "command": command_line(args), "repeats": settings.repeats, "sweep_repeats": settings.sweep_repeats}
    paths = bench_report.write(rows, info, profile, Path(args.out))
    print("\n".join(str(p) for p in paths))
    if args.only is None:
        return run_sweep(args, info, Path(args.out) / "BENCH.md")
    return 0


def run_sweep(args, info: dict, bench_md: Path | None = None) -> int:
    """The sweep section (``experiments.bench.sweep``): sweep.csv and SWEEP.md, and appended to ``bench_md``."""
    from experiments.bench import sweep
    from experiments.files import write_atomically, write_csv

    out = Path(args.out)
    workers = args.workers or os.cpu_count() or 1
    df = sweep.run_sweep(workers, args.quick, args.data_dir, cuda_available() and args.device != "cpu", args.threads,
                         None if args.no_progress else lambda mode: print(f"sweep: {mode.name} ({mode.device}) done",
                                                                          flush=True))
    text = sweep.markdown(df, {**info, "threads": args.threads})
    paths = [write_csv(df, out / "sweep.csv"),
             write_atomically(out / "SWEEP.md", lambda tmp: tmp.write_text(f"# Parallel sweep\n\nProduced by "
                                                                          f"`{command_line(args)}`.\n\n{text}"))]
    if bench_md is not None:
        bench = bench_md.read_text()
        paths.append(write_atomically(bench_md, lambda tmp: tmp.write_text(bench + "\n" + text)))
    print("\n".join(str(p) for p in paths))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench", help="time manual and torch against the per-example loop and the DataLoader way",
        description="Seconds per training epoch (50,000 MNIST images) of manual (float64/float32), torch on the "
                    "CPU and CUDA, a per-example backpropagation loop and the torchvision DataLoader way, for the "
                    "classic 784-30-10 sigmoid/MSE/SGD configuration (batch 10 and 128) and a modern "
                    "784-128-128-10 ReLU/cross-entropy/Adam one (batch 128); 16 models stacked vs one after "
                    "another; throughput sweeps over hidden width and batch size; and a sweep section, one small "
                    "study timed on every executor (sequential, process pool, stacked, Ray). Writes bench.csv, "
                    "ratios.csv, sweep.csv, BENCH.md, SWEEP.md and plots to --out. Takes about 15 minutes on 2 CPU "
                    "cores (--quick: under a minute).")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 2,000 images, 2 repeats, two sweep points each (for tests and CI)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help=f"timed runs per figure, the median reported (default: {Settings.repeats}; quick: 2)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: the CPU, plus CUDA when present; cpu: skip the CUDA rows (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch and NumPy BLAS threads (default: %(default)s; see the module docstring)")
    p.add_argument("--skip-sweeps", action="store_true", help="only the headline and stacked rows")
    p.add_argument("--only", choices=("timings", "sweep", "recurrent", "conv"),
                   help="timings: everything but the sweep section; sweep: only the sweep section — one fixed "
                        "32-run study timed sequentially, with --workers, stacked and on a local Ray instance "
                        "(writes sweep.csv and SWEEP.md); recurrent: manual's LSTM against nn.LSTM, batch 128, "
                        "T = 28, 128 hidden, 1 thread (writes recurrent.csv and RECURRENT.md); conv: manual's convolution "
                        "against nn.Conv2d, its loops, and a LeNet-5 epoch against the arithmetic floor, 1 thread "
                        "(writes conv.csv and CONV.md) (default: timings and sweep)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="processes of the sweep section's parallel modes (default: every core)")
    p.add_argument("--out", default=os.path.join("results", "bench"), help="output folder (default: %(default)s)")
    p.add_argument("--data-dir", default=str(DEFAULT_ROOT), help="folder holding MNIST/raw (default: the project's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p
