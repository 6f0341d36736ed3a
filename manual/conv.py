"""Convolution, pooling and 2-D batch normalisation as forward/backward pairs (CS231n's convention, as ``manual.layers``).

    out, cache = <layer>_forward(x, ...)        # NCHW as torch: x (N, C, H, W)
    grads      = <layer>_backward(dout, cache)  # {input name: ∂E/∂input}, each in its input's shape

Convolution and the two poolings come twice. ``*_naive`` are the textbook loops, one output element at a time,
written to be read next to the equations; ``conv_forward`` / ``maxpool_forward`` / ``avgpool_forward`` (and their
backward passes) compute the same numbers with whole-array operations and are what ``manual.nn`` trains with.
The tests hold the two to each other and both to torch's autograd.

Notation. A layer with kernel (kh, kw), stride (sh, sw) and padding (ph, pw) sees the padded input xp
(N, C, H + 2ph, W + 2pw) and has one window per output position (i, j), the kh × kw patch whose top-left corner is
xp[..., i·sh, j·sw]. There are

    Ho = ⌊(H + 2ph − kh) / sh⌋ + 1,     Wo = ⌊(W + 2pw − kw) / sw⌋ + 1

windows down and across: a window that would run past the end does not exist (torch's ``ceil_mode=False``), so
the last rows or columns of x may be in no window at all, and their gradient is 0. Kernel, stride and padding
are an int (the same both ways) or a pair (height, width), as in torch.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from manual import layers


# ------------------------------------------------------------------------------------------ geometry
def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints as (height, width); a ValueError unless both are integers ≥ ``minimum``."""
    values = (value, value) if isinstance(value, (int, np.integer)) else tuple(value) if isinstance(
        value, (tuple, list)) else None
    if (values is None or len(values) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in values)):
        raise ValueError(f"{name} must be an integer ≥ {minimum} or a pair of them (height, width), got {value!r}")
    return int(values[0]), int(values[1])


def output_size(height: int, width: int, kernel, stride, padding, layer: str) -> tuple[int, int]:
    """(Ho, Wo) = (⌊(H + 2ph − kh)/sh⌋ + 1, ⌊(W + 2pw − kw)/sw⌋ + 1); a ValueError naming ``layer`` when the kernel
    is larger than the padded input (no window fits)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = (height + 2 * ph, width + 2 * pw)
    if kh > padded[0] or kw > padded[1]:
        raise ValueError(f"{layer}: kernel {(kh, kw)} is larger than the padded input {padded} (input "
                         f"{(height, width)}, padding {(ph, pw)})")
    return (padded[0] - kh) // sh + 1, (padded[1] - kw) // sw + 1


def pad(x: np.ndarray, padding, value: float = 0.0) -> np.ndarray:
    """x (N, C, H, W) with ``padding`` = (ph, pw) rows/columns of ``value`` on each side (x itself if none)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def crop(xp: np.ndarray, padding) -> np.ndarray:
    """The inverse of ``pad`` for a gradient: the padding is no input, so its gradient is dropped."""
    ph, pw = padding
    return xp[:, :, ph:xp.shape[2] - ph, pw:xp.shape[3] - pw]


def windows(xp: np.ndarray, kernel, stride) -> np.ndarray:
    """Every window of xp as a view (no copy): (N, C, Ho, Wo, kh, kw), windows[n, c, i, j] = xp[n, c, i·sh : i·sh + kh,
    j·sw : j·sw + kw]. ``sliding_window_view`` gives the windows at every position; keeping every sh-th row and
    sw-th column of them is the stride, and positions past the last full window never appear (floor)."""
    (sh, sw) = stride
    return sliding_window_view(xp, kernel, axis=(2, 3))[:, :, ::sh, ::sw]


def strided_slice(Ho: int, Wo: int, r: int, q: int, stride) -> tuple:
    """The kernel entry (r, q) of every window at once, as (rows, columns): rows r, r + sh, …, r + (Ho − 1)·sh and
    columns q, q + sw, …, q + (Wo − 1)·sw of the padded input, so that xp[:, :, rows, cols] is xp[:, :, r + i·sh,
    q + j·sw] for all (i, j)."""
    sh, sw = stride
    return slice(r, r + sh * (Ho - 1) + 1, sh), slice(q, q + sw * (Wo - 1) + 1, sw)


def _geometry(x, kernel, stride, padding, layer, stride_default=None):
    kernel = pair(kernel, "kernel_size")
    stride = pair(kernel if stride is None and stride_default == "kernel" else stride, "stride")
    padding = pair(padding, "padding", minimum=0)
    if x.ndim != 4:
        raise ValueError(f"{layer} takes (batch, channels, height, width) inputs, got shape {x.shape}")
    return kernel, stride, padding, output_size(x.shape[2], x.shape[3], kernel, stride, padding, layer)


# ------------------------------------------------------------------------------------------ convolution
# out[n, f, i, j] = b[f] + Σ_{c, r, q} w[f, c, r, q] · xp[n, c, i·sh + r, j·sw + q]
#
# (a cross-correlation, as torch's Conv2d: the kernel is not flipped). x (N, C, H, W), w (F, C, kh, kw), b (F,) →
# out (N, F, Ho, Wo). Each output is a linear function of the window under the kernel, so its backward pass is
# that of a linear layer applied at every position, with the gradients of shared weights summed over positions.

def conv_forward_naive(x, w, b=None, *, stride=1, padding=0):
    """The convolution one output element at a time: the equation above as loops. x (N, C, H, W),
    w (F, C, kh, kw), b (F,) or None → out (N, F, Ho, Wo)."""
    F, C, kh, kw = w.shape
    if x.ndim == 4 and x.shape[1] != C:
        raise ValueError(f"conv: w {w.shape} takes {C} input channels, x {x.shape} has {x.shape[1]}")
    kernel, stride, padding, (Ho, Wo) = _geometry(x, (kh, kw), stride, padding, "conv")
    sh, sw = stride
    xp = pad(x, padding)
    out = np.zeros((x.shape[0], F, Ho, Wo), dtype=np.result_type(x, w))
    for n in range(x.shape[0]):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, :, i * sh:i * sh + kh, j * sw:j * sw + kw]  # (C, kh, kw)
                    out[n, f, i, j] = np.sum(window * w[f]) + (b[f] if b is not None else 0)
    return out, (x, w, b is not None, stride, padding)


def conv_backward_naive(dout, cache) -> dict:
    """dout (N, F, Ho, Wo) → {"x", "w", "b"} by the chain rule through each output element, one at a time.

    out[n, f, i, j] depends on the window xp[n, :, i·sh : i·sh + kh, j·sw : j·sw + kw] through w[f] and on b[f]:

        ∂out[n,f,i,j]/∂w[f]      = that window          → ∂E/∂w[f] += dout[n,f,i,j] · window
        ∂out[n,f,i,j]/∂window    = w[f]                 → ∂E/∂window += dout[n,f,i,j] · w[f]
        ∂out[n,f,i,j]/∂b[f]      = 1                    → ∂E/∂b[f] += dout[n,f,i,j]

    A pixel in several windows (kernel larger than the stride) collects a term from each; the padding's gradient
    is cropped off at the end (it is not an input).
    """
    x, w, has_bias, stride, padding = cache
    F, C, kh, kw = w.shape
    sh, sw = stride
    xp = pad(x, padding)
    dxp, dw = np.zeros(xp.shape, dtype=np.result_type(x, dout)), np.zeros(w.shape, dtype=np.result_type(w, dout))
    for n in range(dout.shape[0]):
        for f in range(F):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
                    dw[f] += dout[n, f, i, j] * xp[n, :, rows, cols]
                    dxp[n, :, rows, cols] += dout[n, f, i, j] * w[f]
    grads = {"x": crop(dxp, padding), "w": dw}
    if has_bias:
        grads["b"] = dout.sum(axis=(0, 2, 3))
    return grads


def conv_forward(x, w, b=None, *, stride=1, padding=0):
    """The convolution as one matrix product (im2col). x (N, C, H, W), w (F, C, kh, kw), b (F,) or None →
    out (N, F, Ho, Wo).

    Copy every window into a column: cols[(c, r, q), (n, i, j)] = xp[n, c, i·sh + r, j·sw + q], a (C·kh·kw,
    N·Ho·Wo) matrix. With the kernel as a matrix W_m = w.reshape(F, C·kh·kw) the equation above is

        out_m = W_m · cols + b        (F, N·Ho·Wo),     out[n, f, i, j] = out_m[f, (n, i, j)],

    one BLAS product in place of the six loops. The columns are laid out channel-major ((c, r, q) down, (n, i, j)
    across) so that building them copies whole rows of the image and the product's result is already (F, N, Ho, Wo)
    in memory: ``out`` is its (N, F, Ho, Wo) transposed view, with no further copy.
    """
    F, C, kh, kw = w.shape
    if x.ndim == 4 and x.shape[1] != C:
        raise ValueError(f"conv: w {w.shape} takes {C} input channels, x {x.shape} has {x.shape[1]}")
    kernel, stride, padding, (Ho, Wo) = _geometry(x, (kh, kw), stride, padding, "conv")
    N = x.shape[0]
    xp = pad(x, padding)
    # (N, C, Ho, Wo, kh, kw) view → (C, kh, kw, N, Ho, Wo) → (C·kh·kw, N·Ho·Wo): the reshape makes the one copy
    cols = windows(xp, kernel, stride).transpose(1, 4, 5, 0, 2, 3).reshape(C * kh * kw, N * Ho * Wo)
    out_m = w.reshape(F, -1) @ cols
    if b is not None:
        out_m += b[:, None]
    out = out_m.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3)
    return out, (cols, w, b is not None, x.shape, stride, padding)


def conv_backward(dout, cache, *, input_grad: bool = True) -> dict:
    """dout (N, F, Ho, Wo) → {"x" (N, C, H, W), "w" (F, C, kh, kw), "b" (F,)}: the linear layer's backward pass
    applied to out_m = W_m · cols + b, then each column's gradient added back to the pixels it was copied from.

        ∂E/∂W_m  = dout_m · colsᵀ              (F, C·kh·kw)   Σ over every position (n, i, j) of dout ⊗ window
        ∂E/∂b    = Σ_(n,i,j) dout_m            (F,)
        ∂E/∂cols = W_mᵀ · dout_m               (C·kh·kw, N·Ho·Wo)

    with dout_m = dout as (F, N·Ho·Wo). im2col copied xp[n, c, i·sh + r, j·sw + q] into column (n, i, j), row
    (c, r, q); the gradient of a copy is the sum over its copies (col2im), so

        ∂E/∂xp[n, c, y, x] = Σ_{(r, q, i, j): i·sh + r = y, j·sw + q = x} ∂E/∂cols[(c, r, q), (n, i, j)],

    which is kh·kw strided additions, one per kernel entry (r, q), each covering every window at once. Written out,
    ∂E/∂xp = Σ_f dout[f] ⋆ w[f] is the "full" convolution of dout (spread out by the stride) with the kernel rotated
    by 180°: the forward pass correlates, the backward pass convolves. ∂E/∂x is ∂E/∂xp without the padding.
    ``input_grad=False`` leaves out ∂E/∂x (a network's first layer: its input is the data).
    """
    cols, w, has_bias, x_shape, stride, padding = cache
    F, C, kh, kw = w.shape
    N, _, Ho, Wo = dout.shape
    dout_m = dout.transpose(1, 0, 2, 3).reshape(F, N * Ho * Wo)
    grads = {"w": (dout_m @ cols.T).reshape(w.shape)}
    if has_bias:
        grads["b"] = dout_m.sum(axis=1)
    if input_grad:
        # ∂E/∂cols with its columns ordered (i, j, n), the image index last: each of the kh·kw additions below then
        # moves rows of Wo·N contiguous numbers, not rows of Wo (a 3× faster col2im for LeNet-5's conv2)
        dout_last = dout.transpose(1, 2, 3, 0).reshape(F, Ho * Wo * N)
        dcols = (w.reshape(F, -1).T @ dout_last).reshape(C, kh, kw, Ho, Wo, N)
        ph, pw = padding
        dxp = np.zeros((C, x_shape[2] + 2 * ph, x_shape[3] + 2 * pw, N), dtype=dcols.dtype)  # (C, Hp, Wp, N)
        for r in range(kh):
            for q in range(kw):
                rows, cols = strided_slice(Ho, Wo, r, q, stride)
                dxp[:, rows, cols] += dcols[:, r, q]
        grads["x"] = dxp[:, ph:dxp.shape[1] - ph, pw:dxp.shape[2] - pw].transpose(3, 0, 1, 2)  # (N, C, H, W) view
    return grads


# ------------------------------------------------------------------------------------------ max pooling
# out[n, c, i, j] = max_{r, q} xp[n, c, i·sh + r, j·sw + q],   xp padded with −∞ (padding never wins)
#
# The maximum is locally the identity of its winning input: ∂out/∂xp is 1 at the argmax and 0 elsewhere, so the
# whole of dout[n, c, i, j] goes to the one input that won the window. Where two inputs tie, max is not
# differentiable (a kink: any split of dout between them is a subgradient); torch's CPU kernel scans the window
# row by row and keeps the first maximum it meets (a later equal value does not replace it), and so do these
# functions: np.argmax returns the first maximum in row-major window order. Overlapping windows (stride < kernel)
# can each pick the same input, which then collects every one of their gradients. x (N, C, H, W) → (N, C, Ho, Wo).

def check_pool_padding(kernel, padding, layer: str) -> None:
    """A ValueError naming ``layer`` unless each padding is at most half the kernel along its own axis (as torch),
    so that every window holds an input."""
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{layer}: padding {padding} must be at most half the kernel {kernel} (as torch), so that "
                         "every window holds an input")


def _pool_geometry(x, kernel_size, stride, padding, layer):
    kernel, stride, padding, out_hw = _geometry(x, kernel_size, stride, padding, layer, stride_default="kernel")
    check_pool_padding(kernel, padding, layer)
    return kernel, stride, padding, out_hw


def maxpool_forward_naive(x, *, kernel_size, stride=None, padding=0):
    """Max pooling one window at a time; ``stride`` None means the kernel size (torch's default)."""
    kernel, stride, padding, (Ho, Wo) = _pool_geometry(x, kernel_size, stride, padding, "maxpool")
    (kh, kw), (sh, sw) = kernel, stride
    xp = pad(x, padding, -np.inf)
    N, C = x.shape[:2]
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    winner = np.empty((N, C, Ho, Wo, 2), dtype=np.intp)  # (row, column) in xp of each window's maximum
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    r, q = np.unravel_index(np.argmax(window), window.shape)  # the first maximum, row-major
                    out[n, c, i, j] = window[r, q]
                    winner[n, c, i, j] = i * sh + r, j * sw + q
    return out, (winner, x.shape, padding)


def maxpool_backward_naive(dout, cache) -> dict:
    """dout (N, C, Ho, Wo) → {"x"}: each window's dout added to the input that won it (cropped of the padding)."""
    winner, x_shape, (ph, pw) = cache
    dxp = np.zeros((*x_shape[:2], x_shape[2] + 2 * ph, x_shape[3] + 2 * pw), dtype=dout.dtype)
    for n, c, i, j in np.ndindex(dout.shape):
        y, x = winner[n, c, i, j]
        dxp[n, c, y, x] += dout[n, c, i, j]
    return {"x": crop(dxp, (ph, pw))}


def maxpool_forward(x, *, kernel_size, stride=None, padding=0):
    """Max pooling of every window at once: the windows as a view (N, C, Ho, Wo, kh·kw after one copy), the index of
    each window's first maximum in row-major order (``argmax``, torch's tie rule), the maximum read there."""
    kernel, stride, padding, (Ho, Wo) = _pool_geometry(x, kernel_size, stride, padding, "maxpool")
    N, C = x.shape[:2]
    flat = windows(pad(x, padding, -np.inf), kernel, stride).reshape(N, C, Ho, Wo, kernel[0] * kernel[1])
    arg = flat.argmax(axis=-1)  # r·kw + q of the winner in each window
    out = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return out, (arg, x.shape, kernel, stride, padding)


def maxpool_backward(dout, cache) -> dict:
    """dout (N, C, Ho, Wo) → {"x"}: for each kernel entry (r, q), the windows whose winner sits there send their dout
    to xp[:, :, r + i·sh, q + j·sw]: kh·kw strided additions (inputs shared by overlapping windows sum)."""
    arg, x_shape, (kh, kw), stride, padding = cache
    N, C, Ho, Wo = dout.shape
    dxp = np.zeros((N, C, x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1]), dtype=dout.dtype)
    for r in range(kh):
        for q in range(kw):
            rows, cols = strided_slice(Ho, Wo, r, q, stride)
            dxp[:, :, rows, cols] += np.where(arg == r * kw + q, dout, 0)
    return {"x": crop(dxp, padding)}


# ------------------------------------------------------------------------------------------ average pooling
# out[n, c, i, j] = (1 / (kh·kw)) · Σ_{r, q} x[n, c, i·sh + r, j·sw + q]     (no padding)
#
# Linear: each input of the window gets dout[n, c, i, j] / (kh·kw); an input in several windows gets the sum.

def avgpool_forward_naive(x, *, kernel_size, stride=None):
    """Average pooling one window at a time; ``stride`` None means the kernel size."""
    kernel, stride, _, (Ho, Wo) = _pool_geometry(x, kernel_size, stride, 0, "avgpool")
    (kh, kw), (sh, sw) = kernel, stride
    out = np.empty((*x.shape[:2], Ho, Wo), dtype=x.dtype)
    for n, c, i, j in np.ndindex(out.shape):
        out[n, c, i, j] = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw].mean()
    return out, (x.shape, kernel, stride)


def avgpool_backward_naive(dout, cache) -> dict:
    """dout (N, C, Ho, Wo) → {"x"}: each window's dout / (kh·kw) added to every input of the window."""
    x_shape, (kh, kw), (sh, sw) = cache
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for n, c, i, j in np.ndindex(dout.shape):
        dx[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw] += dout[n, c, i, j] / (kh * kw)
    return {"x": dx}


def avgpool_forward(x, *, kernel_size, stride=None):
    """Average pooling of every window at once: the sum of kh·kw strided slices, one per kernel entry, / (kh·kw)."""
    kernel, stride, _, (Ho, Wo) = _pool_geometry(x, kernel_size, stride, 0, "avgpool")
    (kh, kw) = kernel
    total = np.zeros((*x.shape[:2], Ho, Wo), dtype=x.dtype)
    for r in range(kh):
        for q in range(kw):
            rows, cols = strided_slice(Ho, Wo, r, q, stride)
            total += x[:, :, rows, cols]
    return total / (kh * kw), (x.shape, kernel, stride)


def avgpool_backward(dout, cache) -> dict:
    """dout (N, C, Ho, Wo) → {"x"}: dout / (kh·kw) added to each kernel entry's strided slice (the forward's adjoint)."""
    x_shape, (kh, kw), stride = cache
    Ho, Wo = dout.shape[2:]
    share = dout / (kh * kw)
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for r in range(kh):
        for q in range(kw):
            rows, cols = strided_slice(Ho, Wo, r, q, stride)
            dx[:, :, rows, cols] += share
    return {"x": dx}


# ------------------------------------------------------------------------------------------ batch normalisation
def to_rows(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) → (N·H·W, C): one row per image position, one column per channel."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def from_rows(rows: np.ndarray, shape) -> np.ndarray:
    """The inverse of ``to_rows``: (N·H·W, C) → (N, C, H, W)."""
    N, C, H, W = shape
    return rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def batchnorm2d_forward(x, gamma, beta, **options):
    """Per-channel batch normalisation, ``nn.BatchNorm2d``. x (N, C, H, W), gamma, beta (C,) → out (N, C, H, W).

    ``nn.BatchNorm2d`` normalises each channel c with the mean and biased variance of all N·H·W values of that
    channel (every image, every position), and updates its running variance with the unbiased correction
    n/(n − 1) for n = N·H·W values. Transposed to rows (N·H·W, C), those N·H·W values are exactly the column c,
    and ``manual.layers.batchnorm_forward`` does precisely that per column with B = N·H·W rows: the same mean,
    variance, correction and running update. So batch normalisation of images is ``batchnorm_forward`` on
    ``to_rows(x)``; ``options`` are its keyword options (training, running estimates, momentum, eps).
    """
    if x.ndim != 4:
        raise ValueError(f"batchnorm2d takes (batch, channels, height, width) inputs, got shape {x.shape}")
    out, cache = layers.batchnorm_forward(to_rows(x), gamma, beta, **options)
    return from_rows(out, x.shape), (cache, x.shape)


def batchnorm2d_backward(dout, cache) -> dict:
    """dout (N, C, H, W) → {"x", "gamma", "beta"}: ``manual.layers.batchnorm_backward`` on the rows (N·H·W, C). The
    transposition is a fixed permutation of the values, so its backward pass is the inverse permutation, and the
    derivation there holds with B = N·H·W."""
    rows_cache, shape = cache
    grads = layers.batchnorm_backward(to_rows(dout), rows_cache)
    return {"x": from_rows(grads["x"], shape), "gamma": grads["gamma"], "beta": grads["beta"]}
