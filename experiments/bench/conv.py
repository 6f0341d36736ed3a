"""``python -m experiments bench --only conv``: how fast manual's convolution is, measured side by side in one run.

Three questions, on one thread (torch.set_num_threads(1); NumPy's BLAS limited to 1 thread by threadpoolctl):

1. **manual against torch.** ``manual.conv.conv_forward`` + ``conv_backward`` (im2col, all three gradients) against
   torch CPU ``nn.Conv2d`` forward + backward (``out.backward(dout)`` with the input requiring its gradient, so
   torch also computes all three), on LeNet-5's two convolutions at batch 128 and on CS231n's test shape
   (x (100, 3, 31, 31), w (25, 3, 3, 3), stride 2, padding 1), in float32 and float64. Goal: ≤ 2× torch.
2. **the loops against the vectorised version**, forward and backward separately: the loops on ``LOOP_BATCH``
   images, the vectorised functions on the full batch, both per image (CS231n's Cython im2col: 266× forward,
   479× backward against their loops).
3. **a LeNet-5 training epoch** (manual backend, float32, batch 128, plain SGD) on 50,000 MNIST images, timed on a
   measured fraction and scaled up, against the arithmetic floor: multiply-adds per image per training step over
   the core's peak, measured here as the rate of a large float32 matrix product in NumPy on one thread.

Every figure is the median of ``repeats`` timed runs after a warm-up; each ratio divides two medians of this run.
Writes conv.csv (one row per figure) and CONV.md (the tables, and how they were measured) to ``--out``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from manual import conv

# (name, x shape, w shape, stride, padding)
SHAPES = [
    ("LeNet-5 conv1 (batch 128)", (128, 1, 28, 28), (6, 1, 5, 5), 1, 2),
    ("LeNet-5 conv2 (batch 128)", (128, 6, 14, 14), (16, 6, 5, 5), 1, 0),
    ("CS231n (x 100×3×31×31, w 25×3×3×3, stride 2, pad 1)", (100, 3, 31, 31), (25, 3, 3, 3), 2, 1),
]
LOOP_BATCH = 2  # images the textbook loops are timed on
LENET = ["unflatten 1 28 28", "conv 6 5 padding=2", "relu", "maxpool 2", "conv 16 5", "relu", "maxpool 2", "flatten",
         "linear 120", "relu", "linear 84", "relu", "linear 10"]
EPOCH = 50_000
PEAK_N = 2048  # the float32 matrix product that measures the core's peak: (n × n)·(n × n), n³ multiply-adds


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def lenet_multiply_adds() -> dict:
    """Multiply-adds per image of LeNet-5 (pooling and activations are comparisons and additions, not counted).

    Forward: a convolution does out_channels·Ho·Wo·(in_channels·kh·kw), a linear layer out·in. Backward: ∂E/∂W and
    ∂E/∂x each cost as much as the forward product (forward 1×, backward 2×), except that the first layer computes
    no ∂E/∂x (its input is the data), so a training step costs 3× forward minus the first convolution once.
    """
    conv1, conv2 = 6 * 28 * 28 * (1 * 5 * 5), 16 * 10 * 10 * (6 * 5 * 5)
    linear = 400 * 120 + 120 * 84 + 84 * 10
    forward = conv1 + conv2 + linear
    return {"conv1": conv1, "conv2": conv2, "linear": linear, "forward": forward,
            "training_step": 3 * forward - conv1}


def core_peak(repeats: int) -> float:
    """Multiply-adds per second of NumPy's float32 (PEAK_N × PEAK_N) matrix product on one thread."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32), rng.standard_normal((PEAK_N, PEAK_N),
                                                                                         dtype=np.float32)
    return PEAK_N ** 3 / median_time(lambda: a @ b, repeats)


def conv_vs_torch(repeats: int) -> list[dict]:
    import torch

    rows = []
    for dtype in (np.float32, np.float64):
        for name, x_shape, w_shape, stride, padding in SHAPES:
            rng = np.random.default_rng(0)
            x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
            b = rng.standard_normal(w_shape[0]).astype(dtype)
            out_shape = conv.conv_forward(x, w, b, stride=stride, padding=padding)[0].shape
            dout = rng.standard_normal(out_shape).astype(dtype)

            def manual_step():
                out, cache = conv.conv_forward(x, w, b, stride=stride, padding=padding)
                conv.conv_backward(dout, cache)

            layer = torch.nn.Conv2d(w_shape[1], w_shape[0], w_shape[2:], stride=stride, padding=padding,
                                    dtype=torch.float32 if dtype == np.float32 else torch.float64)
            xt, dt = torch.tensor(x, requires_grad=True), torch.tensor(dout)

            def torch_step():
                layer.zero_grad(set_to_none=True)
                xt.grad = None
                layer(xt).backward(dt)

            mine, theirs = median_time(manual_step, repeats, 2), median_time(torch_step, repeats, 2)
            rows.append({"section": "manual vs torch", "case": name, "dtype": np.dtype(dtype).name,
                         "what": "forward + backward", "manual_ms": mine * 1e3, "torch_ms": theirs * 1e3,
                         "ratio": mine / theirs, "repeats": repeats})
    return rows


def loops_vs_vectorised(repeats: int) -> list[dict]:
    rows = []
    for name, x_shape, w_shape, stride, padding in SHAPES:
        rng = np.random.default_rng(0)
        x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
        small = x[:LOOP_BATCH]
        out, cache = conv.conv_forward(x, w, b, stride=stride, padding=padding)
        dout = rng.standard_normal(out.shape)
        loop_cache = conv.conv_forward_naive(small, w, b, stride=stride, padding=padding)[1]
        per = {  # seconds per image
            ("forward", "loops"): median_time(lambda: conv.conv_forward_naive(small, w, b, stride=stride,
                                                                             padding=padding), repeats, 0) / LOOP_BATCH,
            ("backward", "loops"): median_time(lambda: conv.conv_backward_naive(dout[:LOOP_BATCH], loop_cache),
                                               repeats, 0) / LOOP_BATCH,
            ("forward", "vectorised"): median_time(lambda: conv.conv_forward(x, w, b, stride=stride, padding=padding),
                                                   repeats) / len(x),
            ("backward", "vectorised"): median_time(lambda: conv.conv_backward(dout, cache), repeats) / len(x),
        }
        for what in ("forward", "backward"):
            loops, fast = per[(what, "loops")], per[(what, "vectorised")]
            rows.append({"section": "loops vs vectorised", "case": name, "dtype": "float64", "what": what,
                         "loops_ms_per_image": loops * 1e3, "vectorised_ms_per_image": fast * 1e3,
                         "ratio": loops / fast, "repeats": repeats,
                         "note": f"loops on {LOOP_BATCH} images, vectorised on {len(x)}"})
    return rows


def lenet_epoch(repeats: int, images: int, data_dir) -> list[dict]:
    """Seconds per 50,000-image epoch of LeNet-5 (manual, float32, batch 128, SGD lr 0.05; torch CPU alongside) from
    ``images`` timed images, against the arithmetic floor at the core's measured peak."""
    import torch

    import manual.nn
    import manual.optim
    from experiments.data import load_mnist
    from torch_ref.mirror import Criterion, mirror

    data = load_mnist(data_dir, images)
    X, y = data.train.features(np.float32), data.train.labels
    batch = 128
    model = manual.nn.build(LENET, 784, seed=0, dtype="float32")
    twin = mirror(model)
    optimizer, t_optimizer = manual.optim.SGD(model.params, lr=0.05), torch.optim.SGD(twin.parameters(), lr=0.05)
    criterion, Xt, yt = Criterion(), torch.tensor(X), torch.tensor(y)

    def manual_pass():
        for start in range(0, len(X), batch):
            _, grads = manual.nn.loss_and_grads(model, X[start:start + batch], y[start:start + batch])
            optimizer.step(grads)

    def torch_pass():
        for start in range(0, len(X), batch):
            t_optimizer.zero_grad(set_to_none=True)
            criterion(twin(Xt[start:start + batch]), yt[start:start + batch]).backward()
            t_optimizer.step()

    scale = EPOCH / len(X)
    manual_s, torch_s = median_time(manual_pass, repeats) * scale, median_time(torch_pass, repeats) * scale
    macs = lenet_multiply_adds()
    peak = core_peak(repeats)
    floor = macs["training_step"] * EPOCH / peak
    rows = []
    for impl, seconds in (("manual (float32)", manual_s), ("torch CPU (float32)", torch_s)):
        rows.append({"section": "LeNet-5 epoch", "case": impl, "dtype": "float32", "what": "training epoch",
                     "s_per_epoch": seconds, "measured_images": len(X), "repeats": repeats,
                     "multiply_adds_per_image_step": macs["training_step"], "peak_gmacs": peak / 1e9,
                     "floor_s_per_epoch": floor, "fraction_of_peak": floor / seconds})
    return rows


def markdown(df: pd.DataFrame, info: dict) -> str:
    macs = lenet_multiply_adds()
    vs = df[df.section == "manual vs torch"]
    lv = df[df.section == "loops vs vectorised"]
    ep = df[df.section == "LeNet-5 epoch"]
    lines = ["# Convolution speed", "", f"Produced by `{info['command']}` on {info['cpu']} ({info['cores']} cores, "
             f"load average {info['load_before']:.2f} before, {info['load_after']:.2f} after); NumPy {np.__version__}, "
             f"torch {info['torch']}. One thread everywhere: `torch.set_num_threads(1)`, NumPy's BLAS limited to 1 "
             f"thread by threadpoolctl. Every figure is the median of {info['repeats']} timed runs after a warm-up; "
             "ratios divide two medians of this one run.", "",
             "## manual's vectorised convolution against torch CPU `nn.Conv2d` (forward + backward)", "",
             "manual: `conv_forward` + `conv_backward` (im2col and two BLAS products; ∂E/∂x, ∂E/∂w, ∂E/∂b). torch: "
             "`nn.Conv2d` forward and `out.backward(dout)` with the input requiring its gradient (the same three "
             "gradients). Goal: ≤ 2× torch's time.", "",
             "| shape | dtype | manual (ms) | torch (ms) | manual / torch |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r.case} | {r.dtype} | {r.manual_ms:.2f} | {r.torch_ms:.2f} | {r.ratio:.2f}× |" for r in vs.itertuples()]
    lines += ["", "## The textbook loops against the vectorised functions (float64, per image)", "",
              f"`conv_forward_naive` / `conv_backward_naive` (one output element per Python iteration) timed on "
              f"{LOOP_BATCH} images, `conv_forward` / `conv_backward` on the full batch; both divided by their number "
              "of images. (CS231n's Cython im2col against its loops: 266× forward, 479× backward.)", "",
              "| shape | pass | loops (ms/image) | vectorised (ms/image) | loops / vectorised |",
              "|---|---|---:|---:|---:|"]
    lines += [f"| {r.case} | {r.what} | {r.loops_ms_per_image:.2f} | {r.vectorised_ms_per_image:.4f} | {r.ratio:.0f}× |"
              for r in lv.itertuples()]
    if len(ep):
        first = ep.iloc[0]
        lines += ["", "## A LeNet-5 training epoch against the arithmetic floor", "",
                  f"LeNet-5 (conv 6@5×5 pad 2 → ReLU → max-pool 2 → conv 16@5×5 → ReLU → max-pool 2 → 120 → 84 → 10), "
                  f"float32, batch 128, SGD, cross-entropy; {int(first.measured_images):,} MNIST images timed per "
                  f"repeat and scaled to {EPOCH:,} (manual and torch CPU, same network and parameters).", "",
                  "Multiply-adds per image: forward conv1 6·28·28·25 = "
                  f"{macs['conv1']:,}, conv2 16·10·10·150 = {macs['conv2']:,}, linear layers 400·120 + 120·84 + 84·10 = "
                  f"{macs['linear']:,}: {macs['forward']:,} forward. A training step is forward ≈ 1×, backward ≈ 2× "
                  "(∂E/∂W and ∂E/∂x each cost one forward product), less conv1's ∂E/∂x (its input is the data): "
                  f"3·{macs['forward']:,} − {macs['conv1']:,} = **{macs['training_step']:,} ≈ "
                  f"{macs['training_step'] / 1e6:.2f} M** multiply-adds per image per step (pooling, activations, "
                  "the loss and the update are not counted). The core's peak is measured here as NumPy's float32 "
                  f"{PEAK_N}×{PEAK_N} matrix product on one thread: **{first.peak_gmacs:.1f} G multiply-adds/s**. "
                  f"Floor = {macs['training_step']:,} × {EPOCH:,} / peak = {first.floor_s_per_epoch:.2f} s per epoch; "
                  "fraction of peak = floor / measured time.", "",
                  "| implementation | s per epoch | floor (s) | fraction of the core's peak |", "|---|---:|---:|---:|"]
        lines += [f"| {r.case} | {r.s_per_epoch:.1f} | {r.floor_s_per_epoch:.2f} | {100 * r.fraction_of_peak:.1f}% |"
                  for r in ep.itertuples()]
    return "\n".join(lines) + "\n"


def run(args) -> int:
    """Measure, write conv.csv and CONV.md to ``args.out``, print their paths."""
    import platform

    import torch
    from threadpoolctl import threadpool_limits

    from experiments.bench import command_line, cpu_model
    from experiments.files import check_output_folder, write_atomically, write_csv

    check_output_folder(args.out)
    repeats = args.repeats or (2 if args.quick else 5)
    images = 512 if args.quick else 5_000
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    try:
        with threadpool_limits(args.threads):
            rows = conv_vs_torch(repeats) + loops_vs_vectorised(max(1, min(repeats, 3))) + lenet_epoch(
                repeats if not args.quick else 1, images, args.data_dir)
    finally:
        torch.set_num_threads(threads)
    df = pd.DataFrame(rows)
    info = {"command": command_line(args), "cpu": cpu_model() or platform.machine(), "cores": os.cpu_count(),
            "load_before": load_before, "load_after": os.getloadavg()[0], "torch": torch.__version__,
            "repeats": repeats}
    out = Path(args.out)
    paths = [write_csv(df, out / "conv.csv"),
             write_atomically(out / "CONV.md", lambda tmp: tmp.write_text(markdown(df, info)))]
    print("\n".join(str(p) for p in paths))
    return 0
