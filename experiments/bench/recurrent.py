"""``python -m experiments bench --only recurrent``: manual's LSTM forward + backward against torch's ``nn.LSTM``.

One training step's recurrent work on the sequential-MNIST shape: batch 128, T = 28 steps of 28 inputs,
128 hidden units, one layer; forward, then backward from a random ∂E/∂output to every parameter gradient.
Two variants: ``parameters`` (the first layer of a network: no ∂E/∂x, as ``loss_and_grads`` asks, and torch's
input does not require grad) and ``parameters and input`` (∂E/∂x too). float32 is the comparison the issue sets
(goal: manual ≤ 2× torch's time); float64 is there for reference.

Both run on one thread (``threadpoolctl`` limits NumPy's BLAS, ``torch.set_num_threads(1)``). The two
implementations alternate within each repeat, so that a change of load on a shared machine hits both, and each
figure is the median over repeats of the mean time of ``CALLS`` steps; the ratio divides two medians of this run.
Writes ``recurrent.csv`` and ``RECURRENT.md`` to ``--out``.
"""
from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

BATCH, STEPS, INPUTS, HIDDEN = 128, 28, 28, 128
GOAL = 2.0  # manual's time over torch's, float32
CALLS = 5  # steps per timing
REPEATS, QUICK_REPEATS = 21, 3
VARIANTS = {"parameters": False, "parameters and input": True}  # variant → ∂E/∂x computed too
COLUMNS = ("dtype", "gradients", "batch", "steps", "inputs", "hidden", "threads", "repeats", "calls",
           "manual_ms", "torch_ms", "ratio", "manual_ms_min", "torch_ms_min")


def steppers(dtype, input_grad: bool):
    """(manual step, torch step) on the same parameters and data: a forward and a backward each."""
    import torch

    import manual.nn
    import torch_ref

    manual.nn.manual_seed(0)
    lstm = manual.nn.LSTM(INPUTS, HIDDEN, dtype=dtype)
    twin = torch_ref.mirror(lstm)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, STEPS, INPUTS)).astype(dtype)
    dout = rng.standard_normal((BATCH, STEPS, HIDDEN)).astype(dtype)
    xt, dout_t = torch.tensor(x, requires_grad=input_grad), torch.tensor(dout)

    def manual_step():
        lstm.forward(x)
        lstm.backward(dout, input_grad=input_grad)

    def torch_step():
        twin.zero_grad(set_to_none=True)
        xt.grad = None
        out, _ = twin(xt)
        out.backward(dout_t)

    return manual_step, torch_step


def time_calls(step, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - t0) / calls


def measure(dtype, input_grad: bool, repeats: int, calls: int = CALLS) -> dict:
    """Median (and minimum) milliseconds per step of both, alternating within each repeat, after a warm-up."""
    manual_step, torch_step = steppers(dtype, input_grad)
    for step in (manual_step, torch_step):
        time_calls(step, 2)
    manual_s, torch_s = [], []
    for _ in range(repeats):
        manual_s.append(time_calls(manual_step, calls))
        torch_s.append(time_calls(torch_step, calls))
    m, t = 1e3 * float(np.median(manual_s)), 1e3 * float(np.median(torch_s))
    return {"manual_ms": m, "torch_ms": t, "ratio": m / t, "manual_ms_min": 1e3 * min(manual_s),
            "torch_ms_min": 1e3 * min(torch_s)}


def run_benchmark(repeats: int = REPEATS, calls: int = CALLS) -> pd.DataFrame:
    """Every (dtype, variant) on one thread; a DataFrame with ``COLUMNS``."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        with threadpool_limits(limits=1):
            for dtype in (np.float32, np.float64):
                for variant, input_grad in VARIANTS.items():
                    rows.append({"dtype": np.dtype(dtype).name, "gradients": variant, "batch": BATCH,
                                 "steps": STEPS, "inputs": INPUTS, "hidden": HIDDEN, "threads": 1,
                                 "repeats": repeats, "calls": calls, **measure(dtype, input_grad, repeats, calls)})
    finally:
        torch.set_num_threads(threads)
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(df: pd.DataFrame, info: dict) -> str:
    """RECURRENT.md: the table, the float32 verdict against the goal, and the conditions of the run."""
    from experiments.report import md_table

    table = md_table(["dtype", "gradients", "manual ms/step", "torch ms/step", "manual / torch"],
                     [(r.dtype, r.gradients, f"{r.manual_ms:.2f}", f"{r.torch_ms:.2f}", f"{r.ratio:.2f}×")
                      for r in df.itertuples()])
    lines = ["# Recurrent layers: manual LSTM against torch's nn.LSTM", "",
             f"Produced by `{info['command']}` on {info['date']}.", "",
             f"One LSTM layer, batch {BATCH}, T = {STEPS} steps of {INPUTS} inputs, {HIDDEN} hidden units; one "
             "step = forward + backward from a random ∂E/∂output to every parameter gradient (\"parameters and "
             "input\": ∂E/∂x too). One thread for both (threadpoolctl for NumPy's BLAS, torch.set_num_threads(1)); "
             f"each figure is the median of {int(df['repeats'].iloc[0])} repeats of {int(df['calls'].iloc[0])} "
             "steps, manual and torch alternating within each repeat; the ratio is manual's median over torch's.", "",
             table, ""]
    for _, row in df[df["dtype"] == "float32"].iterrows():
        verdict = "met" if row["ratio"] <= GOAL else "NOT met"
        lines.append(f"- float32, {row['gradients']}: manual takes {row['ratio']:.2f}× torch's time; goal ≤ "
                     f"{GOAL:g}× {verdict}.")
    lines += ["", "What the time goes to (manual): per step one (B, H)·(H, 4H) product forward and one (B, 4H)·(4H, H) "
              "backward, the gates' element-wise equations in preallocated arrays; the input projection, ∂E/∂W_ih, "
              "∂E/∂W_hh and ∂E/∂x are single products over all T·B rows. torch's CPU nn.LSTM does the same "
              "products in C++; manual pays one NumPy call, and one pass over memory, per element-wise operation "
              "(about a dozen per step each way).", "",
              f"Machine: {info['cpu']} ({info['cpu_cores']} cores, shared), Python {info['python']}, NumPy "
              f"{info['numpy']}, torch {info['torch']}; load average {info['load_before']} before, "
              f"{info['load_after']} after."]
    if info["loaded"]:
        lines += ["", "The load average exceeded the number of cores: other work shared the CPU and slowed both "
                     "sides. The ratio divides two medians taken alternately, so it is the figure to read; the "
                     "absolute times are not."]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    """The ``--only recurrent`` section of ``python -m experiments bench``: writes recurrent.csv and RECURRENT.md."""
    import torch

    from experiments.bench import command_line, cpu_model
    from experiments.files import check_output_folder, write_atomically, write_csv

    out = check_output_folder(args.out)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else REPEATS)
    load_before = os.getloadavg()
    df = run_benchmark(repeats)
    info = {"command": command_line(args), "date": datetime.date.today().isoformat(), "cpu": cpu_model(),
            "cpu_cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "load_before": " ".join(f"{v:.2f}" for v in load_before),
            "loaded": max(load_before[0], os.getloadavg()[0]) > (os.cpu_count() or 1),
            "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    paths = [write_csv(df, Path(out) / "recurrent.csv"),
             write_atomically(Path(out) / "RECURRENT.md", lambda tmp: tmp.write_text(markdown(df, info)))]
    print("\n".join(str(p) for p in paths))
    return 0
