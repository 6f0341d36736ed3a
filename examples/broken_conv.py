"""A deliberately broken convolution backward, and what ``experiments.gradcheck.check_modules`` says about it.

The bug, the classic one: col2im *assigns* each window's gradient to its pixels instead of adding it, so a pixel
under two overlapping windows (kernel 3, stride 2: every second row or column of the padded image) keeps only the
last window's share. The weight and bias gradients are right. ``python examples/broken_conv.py`` prints:

    layer '0: BrokenConv2d(2, 3, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))': FAILED (253 comparisons)
      gradient 'x' wrong at 132 element(s); worst x[1, 0, 3, 1]: analytic 0.2136, numeric -0.2238, autograd -0.2238 (abs err 0.44, rel err 2)
      (float64: step 6.1e-06·max(1,|x|), relative tolerance 1.5e-07 (from the dtype's ε), plus the differences' rounding noise; random upstream gradient, seed 0)
      (and against the reference gradient to relative 1e-08, absolute 1e-12·max(1, max|reference|))
    the six worst of 132 wrong elements:
    input        index  analytic  numeric  abs_err  rel_err  autograd
        x (1, 0, 3, 1)    0.2136  -0.2238   0.4375    1.954   -0.2238
        x (0, 1, 1, 3)  -0.08683  0.09738   0.1842    1.892   0.09738
        x (0, 0, 1, 6)  -0.07297  0.08564   0.1586    1.852   0.08564
        x (0, 1, 0, 1)   0.08568 -0.07073   0.1564    1.825  -0.07073
        x (0, 1, 6, 5)    0.2361  -0.2902   0.5264    1.814   -0.2902
        x (0, 0, 0, 5)    0.1351 -0.09723   0.2324    1.719  -0.09723

How to read it. The weight and the bias pass: their gradients never go through col2im. The input fails, and each
wrong element is named (n, c, h, w) with its analytic, finite-difference and autograd values: every one has an
odd h or an odd w, the pixels two windows share (windows start at rows −1, 1, 3, 5 of the unpadded image and
span 3 rows, so rows 1, 3 and 5 lie under two of them); the pixels under one window only are right.
"""
from __future__ import annotations

import numpy as np

import manual.nn
from manual import conv


def broken_conv_backward(dout, cache, *, input_grad=True):
    """``manual.conv.conv_backward`` with ``=`` where col2im needs ``+=``."""
    grads = conv.conv_backward(dout, cache, input_grad=False)  # w and b: right
    if input_grad:
        cols, w, _, x_shape, stride, padding = cache
        F, C, kh, kw = w.shape
        N, _, Ho, Wo = dout.shape
        dcols = (w.reshape(F, -1).T @ dout.transpose(1, 0, 2, 3).reshape(F, -1)).reshape(C, kh, kw, N, Ho, Wo)
        dxp = np.zeros((C, N, x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1]))
        for r in range(kh):
            for q in range(kw):
                rows, cols = conv.strided_slice(Ho, Wo, r, q, stride)
                dxp[:, :, rows, cols] = dcols[:, r, q]  # THE BUG: = where it needs +=
        grads["x"] = conv.crop(dxp, padding).transpose(1, 0, 2, 3)
    return grads


class BrokenConv2d(manual.nn.Conv2d):
    """``manual.nn.Conv2d`` whose backward is ``broken_conv_backward``."""

    def backward(self, dout, input_grad=True):
        grads = broken_conv_backward(dout, self.cache, input_grad=input_grad)
        self.grads = {name: grads[short] for name, short in (("weight", "w"), ("bias", "b"))}
        return grads.get("x")


def main() -> str:
    from experiments.gradcheck.modules import check_modules

    manual.nn.manual_seed(0)
    model = manual.nn.Sequential(BrokenConv2d(2, 3, 3, stride=2, padding=1))
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 7))
    report = check_modules(model, x)[0].report
    worst = report.failures.head(6).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    return f"{report}\nthe six worst of {len(report.failures)} wrong elements:\n{worst}"


if __name__ == "__main__":
    print(main())
