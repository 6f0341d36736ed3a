"""What ``python -m experiments bench`` writes: bench.csv, ratios.csv, BENCH.md and the throughput plots.

Every number in BENCH.md is read from the rows measured in the same run; the
ratios divide two medians of that run. Each file is written to a temporary name
and moved into place (``os.replace``), so a reader never sees half a file.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.bench import HEADLINE
from experiments.data import N_TRAIN
from experiments.files import write_atomically, write_csv
from experiments.report import md_table

COLUMNS = ("kind", "config", "layer_sizes", "hidden_width", "batch_size", "implementation", "dtype", "device",
           "models", "threads", "repeats", "measured_examples", "median_s_per_epoch", "min_s_per_epoch",
           "max_s_per_epoch", "examples_per_s", "status")
RATIO_COLUMNS = ("target", "config", "batch_size", "device", "slower", "faster", "slower_s_per_epoch",
                 "faster_s_per_epoch", "ratio", "target_ratio", "met", "note")


@dataclass(frozen=True)
class Target:
    """A speed ratio with a target: median s/epoch of ``slower`` over that of ``faster`` (impl, dtype, device)."""

    name: str
    kind: str
    slower: tuple
    faster: tuple
    at: tuple  # (config, batch size) pairs
    target: float
    for_gpu_only: bool = False  # measured on the CPU for information; the target is a GPU's


TARGETS = (
    Target("manual ≥ 10× faster than the per-example loop", "epoch", ("per-example", "float64", "cpu"),
           ("manual", "float64", "cpu"), (("classic", 10),), 10),
    Target("manual float32 no slower than torch on the CPU", "epoch", ("torch", "float32", "cpu"),
           ("manual", "float32", "cpu"), HEADLINE, 1),
    Target("data held on the device ≥ 8× faster than the DataLoader way (CPU)", "epoch",
           ("dataloader", "float32", "cpu"), ("torch", "float32", "cpu"), (("classic", 128), ("modern", 128)), 8),
    Target("data held on the device ≥ 30× faster than the DataLoader way (GPU)", "epoch",
           ("dataloader", "float32", "cuda"), ("torch", "float32", "cuda"), (("classic", 128), ("modern", 128)), 30),
    Target("16 stacked models ≥ 8× the throughput of training them one after another (GPU)", "stacked",
           ("sequential-16", "float32", "cuda"), ("stacked-16", "float32", "cuda"), HEADLINE, 8),
    Target("16 stacked models vs one after another, on the CPU (the 8× target is for a GPU)", "stacked",
           ("sequential-16", "float32", "cpu"), ("stacked-16", "float32", "cpu"), HEADLINE, 8,
           for_gpu_only=True),
)


# --------------------------------------------------------------------------- ratios
def lookup(df: pd.DataFrame, kind: str, impl: tuple, config: str, batch: int) -> pd.Series | None:
    name, dtype, device = impl
    rows = df[(df.kind == kind) & (df.implementation == name) & (df.dtype == dtype) & (df.device == device)
              & (df.config == config) & (df.batch_size == batch)]
    return None if rows.empty else rows.iloc[0]


def ratios(df: pd.DataFrame) -> pd.DataFrame:
    """One row per target and configuration: the measured ratio, the target, and whether it was met."""
    out = []
    for t in TARGETS:
        for config, batch in t.at:
            slow, fast = lookup(df, t.kind, t.slower, config, batch), lookup(df, t.kind, t.faster, config, batch)
            row = {"target": t.name, "config": config, "batch_size": batch, "device": t.faster[2],
                   "slower": " ".join(t.slower[:2]), "faster": " ".join(t.faster[:2]), "target_ratio": t.target}
            if slow is None or fast is None:
                continue  # not planned in this run (--device cpu, --skip-sweeps)
            if slow.status.startswith("not measured") or fast.status.startswith("not measured"):
                out.append({**row, "met": fast.status if fast.status.startswith("not") else slow.status,
                            "note": "no number is given for what was not measured"})
                continue
            ratio = slow.median_s_per_epoch / fast.median_s_per_epoch
            met = ratio >= t.target
            note = (f"missed: {ratio:.2f}× is {ratio / t.target:.0%} of {t.target:g}×" if not met else "")
            if t.for_gpu_only:
                met, note = "n/a (GPU target)", "measured on the CPU for information"
            out.append({**row, "slower_s_per_epoch": slow.median_s_per_epoch,
                        "faster_s_per_epoch": fast.median_s_per_epoch, "ratio": ratio,
                        "met": met if isinstance(met, str) else ("yes" if met else "no"), "note": note})
    return pd.DataFrame(out, columns=RATIO_COLUMNS)


# --------------------------------------------------------------------------- plots
def impl_labels(df: pd.DataFrame) -> pd.Series:
    """'manual float32 (cpu)' and the like, one per row."""
    return df.implementation + " " + df["dtype"] + " (" + df.device + ")"


def plot_sweep(df: pd.DataFrame, kind: str, x: str, xlabel: str, title: str, path: Path) -> Path:
    """Throughput (examples/s) against ``x`` for every implementation measured, log-log."""
    from matplotlib.figure import Figure

    sweep = df[df.kind == kind]
    fig = Figure(figsize=(8.5, 5.2), layout="constrained")
    ax = fig.subplots()
    labels = impl_labels(sweep)
    measured = sweep.status.str.startswith("measured")
    for label, rows in sweep[measured].groupby(labels[measured], sort=False):
        rows = rows.sort_values(x)
        ax.plot(rows[x], rows.examples_per_s, marker="o", label=label)
    missing = sorted(set(labels[~measured]))
    if missing:
        title += "\n(" + ", ".join(missing) + ": not measured, no GPU lent)"
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="training throughput (examples/s)", title=title)
    ax.set_xticks(sorted(sweep[x].unique()), [str(v) for v in sorted(sweep[x].unique())])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


# --------------------------------------------------------------------------- BENCH.md
def seconds(row) -> str:
    """A median s/epoch with its min–max, starred when extrapolated from part of an epoch."""
    if not row.status.startswith("measured"):
        return row.status
    star = "*" if row.measured_examples < N_TRAIN * row.models else ""
    return f"{row.median_s_per_epoch:.3g}{star} ({row.min_s_per_epoch:.3g}–{row.max_s_per_epoch:.3g})"


def headline_table(df: pd.DataFrame) -> str:
    epoch = df[df.kind == "epoch"]
    rows = []
    for (name, dtype, device), group in epoch.groupby(["implementation", "dtype", "device"], sort=False):
        cells = []
        for config, batch in HEADLINE:
            match = group[(group.config == config) & (group.batch_size == batch)]
            cells.append(seconds(match.iloc[0]) if len(match) else "—")
        rows.append([f"{name} {dtype} ({device})", *cells])
    header = ["implementation", *[f"{c} batch {b}" for c, b in HEADLINE]]
    return md_table(header, rows)


def ratio_table(r: pd.DataFrame) -> str:
    rows = []
    for row in r.itertuples():
        ratio = "—" if pd.isna(row.ratio) else f"{row.ratio:.2f}×"
        rows.append([row.target, f"{row.config} batch {row.batch_size}", f"{row.slower} / {row.faster}", ratio,
                     f"{row.target_ratio:g}×", row.met, row.note if isinstance(row.note, str) else ""])
    return md_table(["target", "configuration", "slower / faster", "measured", "target", "met", "note"], rows)


def stacked_table(df: pd.DataFrame) -> str:
    rows = []
    for (config, batch, device), group in df[df.kind == "stacked"].groupby(["config", "batch_size", "device"],
                                                                            sort=False):
        by = {r.implementation: r for r in group.itertuples()}
        stacked, seq = by.get("stacked-16"), by.get("sequential-16")
        if stacked is None or seq is None:
            continue
        if not stacked.status.startswith("measured") or not seq.status.startswith("measured"):
            rows.append([f"{config} batch {batch}", device, stacked.status, seq.status, "—"])
            continue
        rows.append([f"{config} batch {batch}", device, seconds(stacked), seconds(seq),
                     f"{seq.median_s_per_epoch / stacked.median_s_per_epoch:.2f}×"])
    return md_table(["configuration", "device", "16 stacked: s per epoch of all 16 *",
                     "16 one after another: s per epoch of all 16 *", "throughput ratio"], rows)


def profile_text(profile: dict, df: pd.DataFrame) -> str:
    step, matmuls = profile["step_us"], profile["first_layer_matmuls_us"]
    text = (f"manual, classic configuration, batch 10, float64: **{step:.0f} µs per mini-batch** (forward, "
            f"backward and SGD step). Of this, the first layer's two matrix products (a·Wᵀ and δᵀ·a, W of "
            f"30×784) take **{matmuls:.0f} µs** ({profile['first_layer_gflops']:.1f} GFLOP/s in NumPy's BLAS for "
            f"such thin products): the step's only sizeable arithmetic, the same in any batched implementation. "
            f"The other {step - matmuls:.0f} µs go to the step's remaining NumPy calls — about 45 of them, on "
            f"10×30 and 10×10 arrays — so per-call overhead, not arithmetic, sets manual's speed at this batch "
            f"size.")
    per_example = lookup(df, "epoch", ("per-example", "float64", "cpu"), "classic", 10)
    if per_example is not None and per_example.status.startswith("measured"):
        us = per_example.median_s_per_epoch / N_TRAIN * 1e6
        text += (f" The per-example loop (its headline row) spends {us:.0f} µs per example, {10 * us:.0f} µs per "
                 f"mini-batch of 10. Being 10× faster would take manual's whole step down to {us:.0f} µs; a step "
                 f"that cost nothing but its two matrix products would be {10 * us / matmuls:.0f}× faster.")
    return text + (" (Timed at the end of the run, each a median of the repeats, under whatever load the machine "
                   "had then.)")


def markdown(df: pd.DataFrame, r: pd.DataFrame, info: dict, profile: dict, plots: list) -> str:
    machine = md_table(["", ""], [[k.replace("_", " "), ", ".join(f"{x:.2f}" for x in v) if isinstance(v, tuple) else v]
                                  for k, v in info.items() if k not in ("command", "repeats", "sweep_repeats")])
    stacked = df[(df.kind == "stacked") & df.measured_examples.notna()]
    per_model = int(stacked.measured_examples.max() // stacked.models.max()) if len(stacked) else 0
    return f"""# Training speed: manual and torch against the usual ways

Produced by `{info['command']}` on {datetime.date.today().isoformat()}. Every figure is the median of
{info['repeats']} timed runs ({info['sweep_repeats']} for the sweep points) after a warm-up; every ratio divides
two medians measured in this same run. The raw numbers are in `bench.csv` and `ratios.csv`.

## Machine

{machine}

Load average (1, 5, 15 min) before and after the run, from `os.getloadavg()`: other processes sharing the
CPU slow every implementation, though not all by the same factor.

## Targets

{ratio_table(r)}

## Seconds per training epoch (50,000 images)

Median (min–max) over the repeats. \\* = timed on fewer examples than a whole epoch and scaled to 50,000
(the `measured_examples` column of `bench.csv`): the two slow baselines are timed on a bounded number of examples.

{headline_table(df)}

- **manual**: the hand-written NumPy MLP (`training.ManualBackend`); **torch**: `torch_ref.MLP` with
  `torch.optim`, the whole training set held on the device as one tensor and indexed per mini-batch
  (`training.TorchBackend`).
- **per-example**: backpropagation one example at a time inside each mini-batch, gradients summed and
  averaged before one step, as Nielsen's `network.py` (`experiments.baselines.PerExampleLoop`).
- **dataloader**: the PyTorch MNIST example's pipeline, `torchvision.datasets.MNIST(transform=ToTensor())`
  (first 50,000 images) in a `DataLoader(shuffle=True, num_workers=0)`, each batch moved to the device
  (`experiments.baselines.DataLoaderWay`); **dataloader-2-workers**: the same with `num_workers=2`.

## Many models at once

Sixteen runs of one configuration (4 seeds × 4 learning rates) trained as one batched model by
`experiments.stacked` (weights of shape (16, out, in), `torch.baddbmm`, one backward pass, one `torch.optim`
step scaled per model), against the same sixteen trained one after another by `training.TorchBackend`.
\\* = seconds for all 16 models to train one epoch each, scaled from {per_model:,} examples per model.

{stacked_table(df)}

## Profile of manual's step

{profile_text(profile, df)}

## Throughput sweeps

Classic configuration (sigmoid, squared error, SGD): hidden width at batch 128, and batch size at width 30.
Each point is timed on as many whole mini-batches as fill about a third of a second (at least one).

{chr(10).join(f'![{p.stem}]({p.name})' for p in plots)}
"""


def write(rows: list[dict], info: dict, profile: dict, out: Path) -> list[Path]:
    """Write every output of the run into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=COLUMNS)
    r = ratios(df)
    paths = [write_csv(df, out / "bench.csv"), write_csv(r, out / "ratios.csv")]
    plots = []
    if (df.kind == "width").any():
        plots.append(plot_sweep(df, "width", "hidden_width", "hidden width (784-W-10, batch 128)",
                                "Throughput against hidden width", out / "throughput_vs_width.png"))
    if (df.kind == "batch").any():
        plots.append(plot_sweep(df, "batch", "batch_size", "batch size (784-30-10)",
                                "Throughput against batch size", out / "throughput_vs_batch.png"))
    text = markdown(df, r, info, profile, plots)
    paths += plots + [write_atomically(out / "BENCH.md", lambda tmp: tmp.write_text(text))]
    return paths
