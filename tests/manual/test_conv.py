"""Convolution, pooling and 2-D batch normalisation (``manual.conv``, ``manual.nn.conv``): the loops and the vectorised
functions against each other and against torch's autograd, in float64 on many small shapes; max-pooling's ties sent
where torch sends them; the modules' state dicts exchanged with torch's own modules both ways; ``check_backward``
passing on every layer, calling near-ties and ReLU's 0 kinks, and locating planted bugs element by element;
LeNet-5 written as data giving torch's loss and every gradient."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings, strategies as st

import manual.nn
from experiments.gradcheck.checks import check_backward
from manual import conv
from manual.nn.conv import make_conv
from tests.helpers import message
from torch_ref.mirror import Criterion, mirror, to_numpy_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (x shape, out channels, kernel, stride, padding): odd sizes where the last window does not fit (7 with kernel 2,
# stride 2; 8 with kernel 3, stride 2), batch 1, pairs, a kernel as large as the padded input, stride > kernel
CONV_CASES = [
    ((2, 3, 7, 8), 4, 3, 1, 0),
    ((1, 2, 7, 7), 3, 2, 2, 0),
    ((2, 1, 8, 5), 2, (3, 2), (2, 1), (1, 0)),
    ((3, 2, 5, 6), 2, 5, 1, 2),
    ((1, 1, 4, 4), 1, 6, 1, 1),
    ((2, 2, 9, 7), 3, (2, 3), 3, (0, 1)),
    ((2, 3, 31, 31), 5, 3, 2, 1),  # CS231n's test shape, fewer images and filters
]
# (x shape, kernel, stride, padding) for the poolings (avg-pooling takes the cases without padding)
POOL_CASES = [
    ((2, 3, 8, 8), 2, None, 0),
    ((1, 2, 7, 9), 2, None, 0),
    ((2, 1, 7, 7), 3, 2, 1),
    ((2, 2, 6, 5), (3, 2), (1, 2), (1, 1)),
    ((1, 1, 5, 5), 3, 1, 0),
    ((3, 2, 9, 8), (2, 3), (3, 2), (1, 0)),
    ((1, 1, 4, 4), 4, 1, 2),
]


def rand(rng, shape):
    return rng.standard_normal(shape)


def conv_inputs(rng, x_shape, out_channels, kernel):
    kh, kw = conv.pair(kernel, "kernel")
    return rand(rng, x_shape), rand(rng, (out_channels, x_shape[1], kh, kw)), rand(rng, out_channels)


def torch_grads(fn, arrays: dict, dout):
    """fn(**tensors) and autograd's gradient of Σ out·dout for every array, all as NumPy float64."""
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    out = fn(**tensors)
    out.backward(torch.as_tensor(dout))
    return out.detach().numpy(), {k: t.grad.numpy() for k, t in tensors.items()}


def assert_close(a, b, rtol=1e-12):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max(initial=0))))


# ------------------------------------------------------------------ the loops and the vectorised functions
@pytest.mark.parametrize("x_shape, out_channels, kernel, stride, padding", CONV_CASES[:-1])
def test_conv_loops_and_vectorised_agree_with_each_other_and_with_autograd(x_shape, out_channels, kernel, stride,
                                                                           padding):
    rng = np.random.default_rng(0)
    x, w, b = conv_inputs(rng, x_shape, out_channels, kernel)
    out, cache = conv.conv_forward(x, w, b, stride=stride, padding=padding)
    loop_out, loop_cache = conv.conv_forward_naive(x, w, b, stride=stride, padding=padding)
    dout = rand(rng, out.shape)
    grads, loop_grads = conv.conv_backward(dout, cache), conv.conv_backward_naive(dout, loop_cache)
    torch_out, auto = torch_grads(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
                                  {"x": x, "w": w, "b": b}, dout)
    assert_close(out, torch_out)
    assert_close(loop_out, torch_out)
    for key in ("x", "w", "b"):
        assert_close(grads[key], auto[key])
        assert_close(loop_grads[key], auto[key])


def test_conv_without_bias_and_without_input_gradient():
    rng = np.random.default_rng(1)
    x, w, _ = conv_inputs(rng, (2, 2, 6, 6), 3, 3)
    out, cache = conv.conv_forward(x, w, None, stride=2, padding=1)
    torch_out, auto = torch_grads(lambda x, w: F.conv2d(x, w, stride=2, padding=1), {"x": x, "w": w}, np.ones(out.shape))
    assert_close(out, torch_out)
    grads = conv.conv_backward(np.ones(out.shape), cache, input_grad=False)
    assert set(grads) == {"w"}
    assert_close(grads["w"], auto["w"])
    assert set(conv.conv_backward_naive(np.ones(out.shape), conv.conv_forward_naive(x, w, None, stride=2,
                                                                                    padding=1)[1])) == {"x", "w"}


def test_conv_loops_without_bias_add_nothing():
    rng = np.random.default_rng(20)
    x, w, _ = conv_inputs(rng, (2, 2, 5, 5), 3, 3)
    loop_out = conv.conv_forward_naive(x, w, None, stride=2, padding=1)[0]
    assert_close(loop_out, conv.conv_forward(x, w, None, stride=2, padding=1)[0])
    assert_close(loop_out, conv.conv_forward_naive(x, w, np.zeros(3), stride=2, padding=1)[0])


@pytest.mark.parametrize("forward", [conv.conv_forward, conv.conv_forward_naive])
def test_conv_defaults_to_stride_1_and_no_padding(forward):
    rng = np.random.default_rng(21)
    x, w, b = conv_inputs(rng, (1, 2, 6, 5), 2, (3, 2))
    out = forward(x, w, b)[0]
    assert out.shape == (1, 2, 6 - 3 + 1, 5 - 2 + 1)
    np.testing.assert_array_equal(out, forward(x, w, b, stride=1, padding=0)[0])


@pytest.mark.parametrize("x_dtype, w_dtype, dout_dtype", [
    (np.float32, np.float32, np.float64), (np.float64, np.float64, np.float32),  # dout wider or narrower
    (np.float32, np.float64, np.float64), (np.float64, np.float32, np.float64),  # dout in out's dtype
])
def test_conv_loops_and_vectorised_keep_float64_wherever_an_operand_is_float64(x_dtype, w_dtype, dout_dtype):
    """Mixed float32/float64 operands lose no precision: out has NumPy's promoted dtype, ∂E/∂x and ∂E/∂w are
    float64, in both implementations (which agree to float32 rounding)."""
    rng = np.random.default_rng(22)
    x, w, b = conv_inputs(rng, (2, 2, 5, 5), 3, 3)
    x, w, b = x.astype(x_dtype), w.astype(w_dtype), b.astype(w_dtype)
    dout = rand(rng, (2, 3, 3, 3)).astype(dout_dtype)
    results = []
    for forward, backward in [(conv.conv_forward, conv.conv_backward),
                              (conv.conv_forward_naive, conv.conv_backward_naive)]:
        out, cache = forward(x, w, b, stride=2, padding=1)
        grads = backward(dout, cache)
        assert out.dtype == np.result_type(x_dtype, w_dtype)
        assert grads["x"].dtype == grads["w"].dtype == np.float64
        results.append((out, grads["x"], grads["w"]))
    for vectorised, loops in zip(*results):
        assert_close(loops, vectorised, rtol=1e-5)


@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES)
def test_maxpool_loops_and_vectorised_agree_with_autograd(x_shape, kernel, stride, padding):
    rng = np.random.default_rng(2)
    x = rand(rng, x_shape)
    out, cache = conv.maxpool_forward(x, kernel_size=kernel, stride=stride, padding=padding)
    loop_out, loop_cache = conv.maxpool_forward_naive(x, kernel_size=kernel, stride=stride, padding=padding)
    dout = rand(rng, out.shape)
    torch_out, auto = torch_grads(lambda x: F.max_pool2d(x, kernel, stride, padding), {"x": x}, dout)
    assert_close(out, torch_out, rtol=0)
    assert_close(loop_out, torch_out, rtol=0)
    assert_close(conv.maxpool_backward(dout, cache)["x"], auto["x"])
    assert_close(conv.maxpool_backward_naive(dout, loop_cache)["x"], auto["x"])


@pytest.mark.parametrize("x_shape, kernel, stride", [(s, k, st) for s, k, st, _ in POOL_CASES])
def test_avgpool_loops_and_vectorised_agree_with_autograd(x_shape, kernel, stride):
    rng = np.random.default_rng(3)
    x = rand(rng, x_shape)
    out, cache = conv.avgpool_forward(x, kernel_size=kernel, stride=stride)
    loop_out, loop_cache = conv.avgpool_forward_naive(x, kernel_size=kernel, stride=stride)
    dout = rand(rng, out.shape)
    torch_out, auto = torch_grads(lambda x: F.avg_pool2d(x, kernel, stride), {"x": x}, dout)
    assert_close(out, torch_out)
    assert_close(loop_out, torch_out)
    assert_close(conv.avgpool_backward(dout, cache)["x"], auto["x"])
    assert_close(conv.avgpool_backward_naive(dout, loop_cache)["x"], auto["x"])


@pytest.mark.parametrize("x_shape", [(4, 3, 5, 5), (1, 2, 3, 4), (2, 1, 1, 1)])
def test_batchnorm2d_in_training_mode_is_torchs_batch_norm_with_its_running_estimates(x_shape):
    rng = np.random.default_rng(4)
    C = x_shape[1]
    x, gamma, beta = rand(rng, x_shape) * 3 + 1, rand(rng, C), rand(rng, C)
    mean, var, count = np.zeros(C), np.ones(C), np.zeros((), np.int64)
    out, cache = conv.batchnorm2d_forward(x, gamma, beta, training=True, running_mean=mean, running_var=var,
                                          num_batches_tracked=count)
    dout = rand(rng, out.shape)
    t_mean, t_var = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    torch_out, auto = torch_grads(lambda x, gamma, beta: F.batch_norm(x, t_mean, t_var, gamma, beta, training=True),
                                  {"x": x, "gamma": gamma, "beta": beta}, dout)
    grads = conv.batchnorm2d_backward(dout, cache)
    assert_close(out, torch_out, rtol=1e-11)
    for key in ("x", "gamma", "beta"):
        assert_close(grads[key], auto[key], rtol=1e-10)
    assert_close(mean, t_mean.numpy())
    assert_close(var, t_var.numpy())  # unbiased with n = N·H·W, as torch
    assert count == 1


def test_batchnorm2d_in_eval_mode_uses_the_running_estimates():
    rng = np.random.default_rng(5)
    x, gamma, beta = rand(rng, (2, 3, 4, 4)), rand(rng, 3), rand(rng, 3)
    mean, var = rand(rng, 3), rng.random(3) + 0.5
    out, cache = conv.batchnorm2d_forward(x, gamma, beta, training=False, running_mean=mean, running_var=var)
    dout = rand(rng, out.shape)
    torch_out, auto = torch_grads(lambda x, gamma, beta: F.batch_norm(x, torch.tensor(mean), torch.tensor(var), gamma,
                                                                      beta, training=False),
                                  {"x": x, "gamma": gamma, "beta": beta}, dout)
    assert_close(out, torch_out)
    for key, grad in conv.batchnorm2d_backward(dout, cache).items():
        assert_close(grad, auto[key])


# ------------------------------------------------------------------ ties in max-pooling
@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 1, 1), ((2, 3), (1, 2), (1, 0)), (3, 2, 0)])
def test_maxpool_ties_go_where_torch_sends_them(kernel, stride, padding):
    """Values from {0, 1, 2} tie in most windows; torch's CPU kernel keeps the first maximum in row-major window
    order, and so do both implementations (a last-maximum rule would differ at many elements here)."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, 3, (2, 2, 7, 8)).astype(np.float64)
    out, cache = conv.maxpool_forward(x, kernel_size=kernel, stride=stride, padding=padding)
    dout = rng.integers(1, 100, out.shape).astype(np.float64)  # distinct-ish weights show where each went
    _, auto = torch_grads(lambda x: F.max_pool2d(x, kernel, stride, padding), {"x": x}, dout)
    np.testing.assert_array_equal(conv.maxpool_backward(dout, cache)["x"], auto["x"])
    loop_cache = conv.maxpool_forward_naive(x, kernel_size=kernel, stride=stride, padding=padding)[1]
    np.testing.assert_array_equal(conv.maxpool_backward_naive(dout, loop_cache)["x"], auto["x"])
    last = last_max_backward(dout, x, kernel, stride, padding)
    assert not np.array_equal(last, auto["x"])  # the ties here do decide where gradients go


def test_torch_sends_a_tie_to_the_first_maximum_in_row_major_order():
    """The fact the rule above rests on, checked on torch itself: a 2×2 window of four equal values."""
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    assert x.grad[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]], dtype=torch.float64, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    assert x.grad[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]


def last_max_backward(dout, x, kernel, stride, padding):
    """A planted bug: max-pool's backward sending each window's gradient to its *last* maximum."""
    _, (winner, shape, pad_) = conv.maxpool_forward_naive(x, kernel_size=kernel, stride=stride, padding=padding)
    (kh, kw), (sh, sw) = conv.pair(kernel, "k"), conv.pair(kernel if stride is None else stride, "s")
    xp = conv.pad(x, pad_, -np.inf)
    for n, c, i, j in np.ndindex(dout.shape):
        window = xp[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
        last = window.size - 1 - int(np.argmax(window.ravel()[::-1]))
        winner[n, c, i, j] = i * sh + last // kw, j * sw + last % kw
    return conv.maxpool_backward_naive(dout, (winner, shape, pad_))["x"]


# ------------------------------------------------------------------ check_backward on every layer
LAYERS = {
    "conv": (lambda x, w, b: conv.conv_forward(x, w, b, stride=2, padding=1), conv.conv_backward,
             lambda rng: dict(zip("xwb", conv_inputs(rng, (2, 2, 5, 6), 3, 3)))),
    "conv loops": (lambda x, w, b: conv.conv_forward_naive(x, w, b, stride=(1, 2), padding=(0, 1)),
                   conv.conv_backward_naive, lambda rng: dict(zip("xwb", conv_inputs(rng, (1, 2, 5, 5), 2, (3, 2))))),
    "maxpool": (partial(conv.maxpool_forward, kernel_size=3, stride=2, padding=1), conv.maxpool_backward,
                lambda rng: {"x": rand(rng, (2, 2, 6, 7))}),
    "maxpool loops": (partial(conv.maxpool_forward_naive, kernel_size=2), conv.maxpool_backward_naive,
                      lambda rng: {"x": rand(rng, (1, 2, 5, 5))}),
    "avgpool": (partial(conv.avgpool_forward, kernel_size=(2, 3), stride=1), conv.avgpool_backward,
                lambda rng: {"x": rand(rng, (2, 2, 5, 6))}),
    "avgpool loops": (partial(conv.avgpool_forward_naive, kernel_size=2), conv.avgpool_backward_naive,
                      lambda rng: {"x": rand(rng, (1, 2, 5, 5))}),
    "batchnorm2d": (partial(conv.batchnorm2d_forward, training=True), conv.batchnorm2d_backward,
                    lambda rng: {"x": rand(rng, (3, 2, 3, 3)), "gamma": rand(rng, 2), "beta": rand(rng, 2)}),
}


@pytest.mark.parametrize("name", LAYERS)
def test_check_backward_passes_on_every_layer(name):
    forward, backward, make = LAYERS[name]
    inputs = make(np.random.default_rng(7))
    report = check_backward(forward, backward, inputs, name=name)
    assert report.passed, str(report)
    assert report.checked == sum(v.size for v in inputs.values())


@pytest.mark.parametrize("name", LAYERS)
def test_float32_in_float32_out_for_every_conv_and_pool_function(name):
    forward, backward, make = LAYERS[name]
    inputs = {k: v.astype(np.float32) for k, v in make(np.random.default_rng(17)).items()}
    out, cache = forward(**inputs)
    grads = backward(np.ones_like(out), cache)
    assert out.dtype == np.float32
    assert set(grads) == set(inputs) and {k: g.dtype for k, g in grads.items()} == {k: np.float32 for k in inputs}


def module_as_layer(module):
    """A manual.nn module as check_backward's (forward, backward, names): its parameters become inputs."""
    names = list(module.params)

    def forward(x, **params):
        for key, value in params.items():
            module.params[key][...] = value
        return module.forward(x), None

    def backward(dout, _):
        return {"x": module.backward(dout), **module.grads}

    return forward, backward, names


@pytest.mark.parametrize("module, shape", [
    (lambda: manual.nn.Conv2d(2, 3, (2, 3), stride=(2, 1), padding=1), (2, 2, 5, 5)),
    (lambda: manual.nn.Conv2d(1, 2, 3, bias=False), (1, 1, 5, 4)),
    (lambda: manual.nn.MaxPool2d(2, 1), (2, 2, 4, 5)),
    (lambda: manual.nn.AvgPool2d(3, 2), (2, 1, 7, 6)),
    (lambda: manual.nn.BatchNorm2d(2), (2, 2, 3, 3)),
])
def test_check_backward_passes_on_every_module(module, shape):
    rng = np.random.default_rng(8)
    m = module()
    forward, backward, names = module_as_layer(m)
    inputs = {"x": rand(rng, shape), **{k: rand(rng, v.shape) for k, v in m.params.items()}}
    report = check_backward(forward, backward, inputs, name=type(m).__name__)
    assert report.passed, str(report)
    assert set(names) <= set(inputs)


def test_a_conv_backward_with_a_flipped_kernel_is_located_element_by_element():
    rng = np.random.default_rng(9)
    inputs = dict(zip("xwb", conv_inputs(rng, (2, 2, 5, 5), 2, 3)))
    forward = partial(conv.conv_forward, stride=1, padding=1)

    def flipped(dout, cache):
        cols, w, *rest = cache
        grads = conv.conv_backward(dout, (cols, w[:, :, ::-1, ::-1], *rest))
        return {**conv.conv_backward(dout, cache), "x": grads["x"]}

    report = check_backward(forward, flipped, inputs, name="conv, flipped kernel")
    assert not report.passed
    assert set(report.failures["input"]) == {"x"}  # w and b are right
    expected_failures_match(report, "x", forward, conv.conv_backward, flipped, inputs)
    n, c, h, w = report.failures.iloc[0]["index"]
    assert f"worst x[{n}, {c}, {h}, {w}]" in str(report)


def test_an_off_by_one_stride_in_the_backward_pass_is_located():
    """The loops' backward run with stride 1 where the forward pass had stride 2: wrong ∂E/∂x and ∂E/∂w."""
    rng = np.random.default_rng(10)
    inputs = dict(zip("xwb", conv_inputs(rng, (1, 2, 7, 7), 2, 3)))
    forward = partial(conv.conv_forward_naive, stride=2, padding=0)

    def off_by_one(dout, cache):
        x, w, has_bias, (sh, sw), padding = cache
        return conv.conv_backward_naive(dout, (x, w, has_bias, (sh - 1, sw - 1), padding))

    report = check_backward(forward, off_by_one, inputs, name="conv, stride off by one")
    assert set(report.failures["input"]) == {"x", "w"}
    for key in ("x", "w"):
        expected_failures_match(report, key, forward, conv.conv_backward_naive, off_by_one, inputs)
    assert all(len(i) == 4 for i in report.failures["index"])  # (n, c, h, w) and (out, in, kh, kw)


def expected_failures_match(report, key, forward, right, wrong, inputs):
    """The report's failing elements of ``key`` are exactly where the wrong gradient differs from the right one
    (elements off by less than 1e-3 of the scale may pass or fail; none that agree to rounding may fail)."""
    out, cache = forward(**inputs)
    dout = np.random.default_rng(0).standard_normal(out.shape)  # check_backward's dout for seed 0
    good, bad = right(dout, cache)[key], wrong(dout, forward(**inputs)[1])[key]
    diff = np.abs(good - bad)
    reported = {tuple(i) for i in report.failures.loc[report.failures["input"] == key, "index"]}
    surely = {tuple(int(j) for j in i) for i in np.argwhere(diff > 1e-3 * np.abs(good).max())}
    possibly = {tuple(int(j) for j in i) for i in np.argwhere(diff > 1e-9 * np.abs(good).max())}
    assert surely and surely <= reported <= possibly


def test_a_maxpool_backward_sending_ties_to_the_last_maximum_is_located_against_autograd():
    """On an exact tie every split is a subgradient, so finite differences call the tied elements kinks either way;
    the reference (torch's autograd) names the elements where the gradient is not where torch sends it."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, (1, 2, 4, 4)).astype(np.float64)
    forward = partial(conv.maxpool_forward_naive, kernel_size=2, stride=1)

    def last(dout, cache):
        return {"x": last_max_backward(dout, cache_x[0], 2, 1, 0)}

    cache_x = [x]

    def reference(dout, inputs):
        return torch_grads(lambda x: F.max_pool2d(x, 2, 1), {"x": inputs["x"]}, dout)[1]

    alone = check_backward(forward, last, {"x": x}, name="maxpool, last maximum")
    assert alone.passed and len(alone.kinks)  # finite differences cannot tell a tie's subgradients apart
    report = check_backward(forward, last, {"x": x}, name="maxpool, last maximum", reference=reference)
    dout = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    right, wrong = reference(dout, {"x": x})["x"], last(dout, None)["x"]
    assert {tuple(i) for i in report.failures["index"]} == {tuple(int(j) for j in i)
                                                            for i in np.argwhere(right != wrong)}
    assert "autograd" in report.failures and "autograd" in str(report)
    good = check_backward(forward, conv.maxpool_backward_naive, {"x": x}, reference=reference)
    assert good.passed and len(good.kinks), str(good)


def test_a_near_tie_in_a_max_pool_window_is_a_kink_not_an_error():
    """Two inputs of one window closer than the finite-difference step: the centred difference straddles the switch
    of winner; the one-sided differences disagree and the analytic value lies between them."""
    rng = np.random.default_rng(12)
    x = rand(rng, (1, 1, 4, 4))
    x[0, 0, 0, 0] = 3.0
    x[0, 0, 1, 1] = 3.0 - 1e-7  # within the step (6e-6·3) of the window's maximum
    report = check_backward(partial(conv.maxpool_forward, kernel_size=2), conv.maxpool_backward, {"x": x})
    assert report.passed, str(report)
    assert set(report.kinks["where"]) == {"x[0, 0, 0, 0]", "x[0, 0, 1, 1]"}
    assert set(report.kinks["input"]) == {"x"} and (0, 0, 1, 1) in set(report.kinks["index"])
    assert "not an error" in str(report)


def test_relu_at_zero_before_a_pool_is_a_kink_not_an_error():
    rng = np.random.default_rng(13)
    x = rand(rng, (1, 1, 4, 4))
    x[0, 0, 2, 3] = 0.0
    x[0, 0, 2, 2] = -5.0  # so that the 0 wins its window and its kink shows through the max
    x[0, 0, 3, 2:] = -5.0

    def forward(x):
        out, cache = conv.maxpool_forward(np.maximum(x, 0), kernel_size=2)
        return out, (x, cache)

    def backward(dout, cache):
        x, pool = cache
        return {"x": conv.maxpool_backward(dout, pool)["x"] * (x > 0)}

    report = check_backward(forward, backward, {"x": x})
    assert report.passed, str(report)
    assert "x[0, 0, 2, 3]" in set(report.kinks["where"])


# ------------------------------------------------------------------ modules, state dicts and the torch mirror
EVERY_LAYER = ["unflatten 2 6 6", "conv 3 3 padding=1 bias=false", "batchnorm", "relu", "maxpool 2 stride=1 padding=1",
               "conv 4 2x3 stride=2x1", "tanh", "avgpool 2 stride=1", "flatten", "linear 5"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_dicts_have_torchs_keys_and_shapes_and_exchange_exactly_both_ways(dtype):
    model = manual.nn.build(EVERY_LAYER, 72, seed=3, dtype=dtype)
    twin = mirror(model)
    theirs = twin.state_dict()
    assert list(model.state_dict()) == list(theirs)
    for key, value in model.state_dict().items():
        assert value.shape == tuple(theirs[key].shape) and value.dtype == theirs[key].numpy().dtype
        np.testing.assert_array_equal(value, theirs[key].numpy())
    with torch.no_grad():  # torch → manual: new values in torch, loaded into manual bit for bit
        for p in twin.parameters():
            p.copy_(torch.randn_like(p))
        twin[2].running_mean.copy_(torch.randn(3))
        twin[2].running_var.copy_(torch.rand(3) + 0.5)
        twin[2].num_batches_tracked.fill_(7)
    model.load_state_dict(to_numpy_state(twin.state_dict()))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, twin.state_dict()[key].numpy())
        assert value.dtype == twin.state_dict()[key].numpy().dtype


@pytest.mark.parametrize("training", [True, False])
def test_every_layer_type_agrees_with_its_torch_mirror_in_outputs_and_gradients(training):
    rng = np.random.default_rng(14)
    model = manual.nn.build(EVERY_LAYER, 72, seed=4).train(training)
    twin = mirror(model)
    X, y = rng.standard_normal((3, 72)), rng.integers(0, 5, 3)
    loss, grads = manual.nn.loss_and_grads(model, X, y, "cross_entropy")
    torch_loss = Criterion("cross_entropy")(twin(torch.tensor(X)), torch.tensor(y))
    torch_loss.backward()
    assert abs(loss - torch_loss.item()) <= 1e-12 * abs(loss)
    for key, p in twin.named_parameters():
        assert_close(grads[key], p.grad.numpy(), rtol=1e-10)
    for key, value in twin.state_dict().items():  # running estimates after the step
        assert_close(model.state_dict()[key], value.numpy())


def test_lenet5_as_data_gives_torchs_loss_and_every_gradient():
    lenet = ["unflatten 1 28 28", "conv 6 5 padding=2", "relu", "maxpool 2", "conv 16 5", "relu", "maxpool 2",
             "flatten", "linear 120", "relu", "linear 84", "relu", "linear 10"]
    model = manual.nn.build(lenet, 784)
    assert model.output_shape((784,)) == (10,)
    assert {k: v.shape for k, v in model.params.items()} == {
        "1.weight": (6, 1, 5, 5), "1.bias": (6,), "4.weight": (16, 6, 5, 5), "4.bias": (16,), "8.weight": (120, 400),
        "8.bias": (120,), "10.weight": (84, 120), "10.bias": (84,), "12.weight": (10, 84), "12.bias": (10,)}
    twin = mirror(model)
    rng = np.random.default_rng(15)
    X, y = rng.random((8, 784)), rng.integers(0, 10, 8)
    loss, grads = manual.nn.loss_and_grads(model, X, y, "cross_entropy")
    torch_loss = Criterion()(twin(torch.tensor(X)), torch.tensor(y))
    torch_loss.backward()
    assert abs(loss - torch_loss.item()) <= 1e-10 * abs(loss)
    assert set(grads) == {k for k, _ in twin.named_parameters()}
    for key, p in twin.named_parameters():
        g = p.grad.numpy()
        assert np.abs(grads[key] - g).max() <= 1e-10 * np.abs(g).max(), key


def test_conv2d_draws_torchs_default_and_its_fans_are_torchs():
    manual.nn.manual_seed(0)
    layer = manual.nn.Conv2d(3, 4, (5, 3))
    bound = 1 / np.sqrt(3 * 5 * 3)  # U(±1/√fan_in), fan_in = in·kh·kw
    assert layer.weight.shape == (4, 3, 5, 3) and np.abs(layer.weight).max() <= bound
    assert np.abs(layer.weight).max() > 0.8 * bound and np.abs(layer.bias).max() <= bound
    layer.reset_parameters(np.random.default_rng(0), "xavier")  # √(6/(fan_in + fan_out)), fan_out = out·kh·kw
    assert np.abs(layer.weight).max() <= np.sqrt(6 / (45 + 60)) and not layer.bias.any()
    assert repr(layer) == "Conv2d(3, 4, kernel_size=(5, 3), stride=(1, 1))"
    assert layer.torch_spec() == ("Conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": (5, 3),
                                             "stride": (1, 1), "padding": (0, 0), "bias": True})


def test_the_modules_skip_the_input_gradient_when_asked_and_batchnorm2d_eval_uses_running_estimates():
    rng = np.random.default_rng(16)
    layer = manual.nn.Conv2d(1, 2, 3)
    out = layer.forward(rand(rng, (2, 1, 5, 5)))
    assert layer.backward(np.ones(out.shape), input_grad=False) is None and set(layer.grads) == {"weight", "bias"}
    bn = manual.nn.BatchNorm2d(2).eval()
    bn.running_mean[...], bn.running_var[...] = [1.0, -1.0], [4.0, 0.25]
    x = rand(rng, (1, 2, 2, 2))  # one image: eval mode needs no batch statistics
    expected = (x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + bn.eps)
    np.testing.assert_allclose(bn.forward(x), expected, rtol=1e-15)
    with pytest.raises(ValueError, match="more than one value per channel"):
        manual.nn.BatchNorm2d(2).forward(rand(rng, (1, 2, 1, 1)))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("layers, message", [
    (["conv 6 5"], "a convolution takes (channels, height, width) images, gets shape (784,): put 'unflatten 1 28 28' "
                   "before it"),
    (["unflatten 1 28 28", "conv 6 29"], "kernel (29, 29) is larger than the padded input (28, 28)"),
    (["unflatten 1 28 28", "conv 6 31 padding=1"], "kernel (31, 31) is larger than the padded input (30, 30)"),
    (["maxpool 2"], "max pooling takes (channels, height, width) images, gets shape (784,)"),
    (["unflatten 1 28 28", "maxpool 2 padding=2"], "padding (2, 2) must be at most half the kernel (2, 2)"),
    (["unflatten 1 28 28", "avgpool 0"], "kernel_size must be an integer ≥ 1"),
    (["unflatten 1 28 28", "conv 6 5 stride=0"], "stride must be an integer ≥ 1"),
    (["unflatten 4 196", "batchnorm"], "batch normalisation takes (features,) inputs (BatchNorm1d) or (channels, "
                                       "height, width) images (BatchNorm2d); gets shape (4, 196)"),
])
def test_layers_that_do_not_fit_are_one_line_errors_naming_the_layer(layers, message):
    with pytest.raises(ValueError) as err:
        manual.nn.build(layers, 784)
    assert message in str(err.value) and f"layers[{len(layers) - 1}]" in str(err.value)
    assert "\n" not in str(err.value)


def test_batchnorm_after_a_convolution_is_batchnorm2d_and_pairs_are_written_hxw():
    model = manual.nn.build(["unflatten 1 28 28", "conv 4 5x3 stride=2x1 padding=1x0", "batchnorm", "maxpool 3x2"],
                            784)
    assert isinstance(model[2], manual.nn.BatchNorm2d)
    assert model[1].kernel_size == (5, 3) and model[1].stride == (2, 1) and model[1].padding == (1, 0)
    assert model.output_shape((784,)) == (4, 4, 13)  # ((28+2−5)//2+1, 28−3+1) = (13, 26), pooled (3, 2)
    assert model.forward(np.zeros((2, 784))).shape == (2, 4, 4, 13)


def test_the_functions_refuse_bad_arguments_in_one_line():
    x, w = np.zeros((1, 2, 4, 4)), np.zeros((3, 3, 2, 2))
    with pytest.raises(ValueError, match=r"w \(3, 3, 2, 2\) takes 3 input channels, x \(1, 2, 4, 4\) has 2"):
        conv.conv_forward(x, w)
    with pytest.raises(ValueError, match="takes \\(batch, channels, height, width\\) inputs, got shape \\(4, 4\\)"):
        conv.maxpool_forward(np.zeros((4, 4)), kernel_size=2)
    with pytest.raises(ValueError, match="padding must be an integer ≥ 0"):
        conv.maxpool_forward(x, kernel_size=2, padding=-1)
    with pytest.raises(ValueError, match=r"stride must be an integer ≥ 1 or a pair of them \(height, width\), got "
                                         r"\(1, -1\)"):
        conv.avgpool_forward(x, kernel_size=2, stride=(1, -1))


@pytest.mark.parametrize("value", [2.5, None, "3", (2, 2, 2), (2,), True, (2, 1.0)])
def test_a_size_that_is_not_an_integer_or_a_pair_of_them_is_one_line(value):
    assert message(conv.pair, value, "stride") == (f"stride must be an integer ≥ 1 or a pair of them (height, width), "
                                                   f"got {value!r}")


@pytest.mark.parametrize("forward", [conv.conv_forward, conv.conv_forward_naive])
def test_both_convs_refuse_a_channel_mismatch_naming_both_channel_counts(forward):
    w = np.zeros((2, 3, 2, 2))
    # one channel where w takes three: broadcasting would run the loops without complaint
    assert message(forward, np.zeros((1, 1, 5, 4)), w) == ("conv: w (2, 3, 2, 2) takes 3 input channels, "
                                                           "x (1, 1, 5, 4) has 1")
    assert message(forward, np.zeros((3, 5, 4)), w) == ("conv takes (batch, channels, height, width) inputs, got "
                                                        "shape (3, 5, 4)")


NAMED_CALLS = {  # each function given an input and a kernel (height, width)
    "conv": lambda x, k: conv.conv_forward(x, np.zeros((1, x.shape[1], *k))),
    "conv loops": lambda x, k: conv.conv_forward_naive(x, np.zeros((1, x.shape[1], *k))),
    "maxpool": lambda x, k: conv.maxpool_forward(x, kernel_size=k),
    "maxpool loops": lambda x, k: conv.maxpool_forward_naive(x, kernel_size=k),
    "avgpool": lambda x, k: conv.avgpool_forward(x, kernel_size=k),
    "avgpool loops": lambda x, k: conv.avgpool_forward_naive(x, kernel_size=k),
}


@pytest.mark.parametrize("name", NAMED_CALLS)
def test_every_conv_and_pool_function_names_its_layer_and_the_bad_argument(name):
    layer, call, x = name.split()[0], NAMED_CALLS[name], np.zeros((1, 2, 4, 3))
    assert message(call, x, (3, 4)) == (f"{layer}: kernel (3, 4) is larger than the padded input (4, 3) (input (4, 3),"
                                        f" padding (0, 0))")
    assert message(call, x[0], (2, 2)).startswith(f"{layer} takes (batch, channels, height, width) inputs")
    assert message(call, x, (0, 2)).startswith("kernel_size must be an integer ≥ 1")


@pytest.mark.parametrize("kernel, padding, accepted", [
    ((2, 4), (1, 2), True), ((4, 2), (2, 1), True), ((2, 4), (0, 2), True), ((4, 2), (2, 0), True),
    ((2, 4), (2, 0), False), ((4, 2), (0, 2), False), ((2, 4), (1, 3), False), ((3, 3), (2, 2), False),
])
def test_pool_padding_is_held_to_half_the_kernel_axis_by_axis_as_torch(kernel, padding, accepted):
    """Each padding at most half the kernel along its own axis: non-square kernels tell the axes apart, and each
    refusal has one axis (or both) over."""
    x = np.random.default_rng(23).standard_normal((1, 2, 5, 6))
    for forward in (conv.maxpool_forward, conv.maxpool_forward_naive):
        if accepted:
            torch_out = F.max_pool2d(torch.tensor(x), kernel, kernel, padding).numpy()
            assert_close(forward(x, kernel_size=kernel, padding=padding)[0], torch_out, rtol=0)
        else:
            assert message(forward, x, kernel_size=kernel, padding=padding) == (
                f"maxpool: padding {padding} must be at most half the kernel {kernel} (as torch), so that every "
                "window holds an input")
            with pytest.raises(RuntimeError, match="pad should be"):
                F.max_pool2d(torch.tensor(x), kernel, kernel, padding)


def test_batchnorm2d_refuses_an_input_that_is_not_a_batch_of_images():
    assert message(conv.batchnorm2d_forward, np.zeros((2, 3, 4)), np.ones(3), np.zeros(3)) == (
        "batchnorm2d takes (batch, channels, height, width) inputs, got shape (2, 3, 4)")


# ------------------------------------------------------------------ properties
images = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9))
sizes = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))


@settings(max_examples=25, deadline=None)
@given(shape=images, out_channels=st.integers(1, 3), kernel=sizes, stride=sizes, padding=st.integers(0, 2),
       seed=st.integers(0, 2 ** 16))
def test_property_conv_matches_autograd_on_any_shape_that_fits(shape, out_channels, kernel, stride, padding, seed):
    kh, kw = conv.pair(kernel, "k")
    if kh > shape[2] + 2 * padding or kw > shape[3] + 2 * padding:
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv.conv_forward(np.zeros(shape), np.zeros((out_channels, shape[1], kh, kw)), padding=padding)
        return
    rng = np.random.default_rng(seed)
    x, w, b = conv_inputs(rng, shape, out_channels, kernel)
    out, cache = conv.conv_forward(x, w, b, stride=stride, padding=padding)
    dout = rand(rng, out.shape)
    torch_out, auto = torch_grads(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
                                  {"x": x, "w": w, "b": b}, dout)
    assert_close(out, torch_out)
    grads = conv.conv_backward(dout, cache)
    for key in "xwb":
        assert_close(grads[key], auto[key])


@settings(max_examples=25, deadline=None)
@given(shape=images, kernel=sizes, stride=st.one_of(st.none(), sizes), padding=st.integers(0, 2),
       ties=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_property_pools_match_autograd_on_any_shape_that_fits(shape, kernel, stride, padding, ties, seed):
    kh, kw = conv.pair(kernel, "k")
    padding = min(padding, kh // 2, kw // 2)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, shape).astype(np.float64) if ties else rand(rng, shape)
    fits = kh <= shape[2] + 2 * padding and kw <= shape[3] + 2 * padding
    if not fits:
        with pytest.raises(ValueError, match="larger than the padded input"):
            conv.maxpool_forward(x, kernel_size=kernel, stride=stride, padding=padding)
        return
    out, cache = conv.maxpool_forward(x, kernel_size=kernel, stride=stride, padding=padding)
    dout = rand(rng, out.shape)
    torch_out, auto = torch_grads(lambda x: F.max_pool2d(x, kernel, stride, padding), {"x": x}, dout)
    assert_close(out, torch_out, rtol=0)
    assert_close(conv.maxpool_backward(dout, cache)["x"], auto["x"])
    if kh <= shape[2] and kw <= shape[3]:
        out, cache = conv.avgpool_forward(x, kernel_size=kernel, stride=stride)
        dout = rand(rng, out.shape)
        torch_out, auto = torch_grads(lambda x: F.avg_pool2d(x, kernel, stride), {"x": x}, dout)
        assert_close(out, torch_out)
        assert_close(conv.avgpool_backward(dout, cache)["x"], auto["x"])


@settings(max_examples=15, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(2, 6), st.integers(2, 6)),
       kernel=st.integers(1, 2), stride=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
@example(shape=(1, 1, 3, 3), kernel=2, stride=1, seed=1)  # overlapping windows: one input is two windows' maximum
def test_property_loops_and_vectorised_agree(shape, kernel, stride, seed):
    rng = np.random.default_rng(seed)
    x, w, b = conv_inputs(rng, shape, 2, kernel)
    out, cache = conv.conv_forward(x, w, b, stride=stride, padding=1)
    loop_out, loop_cache = conv.conv_forward_naive(x, w, b, stride=stride, padding=1)
    dout = rand(rng, out.shape)
    assert_close(out, loop_out)
    loop_grads = conv.conv_backward_naive(dout, loop_cache)
    for key, grad in conv.conv_backward(dout, cache).items():
        assert_close(grad, loop_grads[key])
    pooled, pool_cache = conv.maxpool_forward(x, kernel_size=kernel, stride=stride)
    loop_pooled, loop_pool_cache = conv.maxpool_forward_naive(x, kernel_size=kernel, stride=stride)
    np.testing.assert_array_equal(pooled, loop_pooled)
    d = rand(rng, pooled.shape)
    routed = conv.maxpool_backward(d, pool_cache)["x"]
    loop_routed = conv.maxpool_backward_naive(d, loop_pool_cache)["x"]
    # Both send each window's gradient to the same input; where windows overlap, one input collects several
    # windows' gradients, summed in another order by each implementation (equal to the last bit or two).
    np.testing.assert_array_equal(routed != 0, loop_routed != 0)
    assert_close(routed, loop_routed, rtol=1e-15)


def test_broken_conv_example_names_exactly_the_pixels_two_windows_share():
    """examples/broken_conv.py assigns where col2im must add: the wrong input elements are the pixels under two
    windows (an odd row or column for kernel 3, stride 2, padding 1), every one of them, and nothing else."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("broken_conv", Path(__file__).parents[2] / "examples" /
                                                  "broken_conv.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    text = example.main()
    assert text.splitlines()[0].endswith("FAILED (253 comparisons)")
    assert "gradient 'x' wrong at 132 element(s)" in text and "gradient 'w'" not in text
    manual.nn.manual_seed(0)
    model = manual.nn.Sequential(example.BrokenConv2d(2, 3, 3, stride=2, padding=1))
    from experiments.gradcheck.modules import check_modules

    report = check_modules(model, np.random.default_rng(0).standard_normal((2, 2, 7, 7)))[0].report
    wrong = {tuple(index) for index in report.failures["index"]}
    shared = {(n, c, h, w) for n in range(2) for c in range(2) for h in range(7) for w in range(7) if h % 2 or w % 2}
    assert wrong == shared and set(report.failures["input"]) == {"x"}
    assert example.__doc__.count(text.splitlines()[1].strip()) == 1  # the docstring quotes the real output


# ------------------------------------------------------------------------------ the modules' own checks
def test_a_conv_module_refuses_no_channels_and_bad_sizes_naming_the_argument():
    assert message(manual.nn.Conv2d, 0, 3, 2) == "Conv2d needs in_channels and out_channels ≥ 1, got 0 and 3"
    assert message(manual.nn.Conv2d, 3, 0, 2) == "Conv2d needs in_channels and out_channels ≥ 1, got 3 and 0"
    assert manual.nn.Conv2d(1, 1, 1).weight.shape == (1, 1, 1, 1)  # one channel in and out is allowed
    assert message(manual.nn.Conv2d, 1, 1, 0).startswith("kernel_size must be an integer ≥ 1")
    assert message(manual.nn.Conv2d, 1, 1, 2, stride=0).startswith("stride must be an integer ≥ 1")
    assert message(manual.nn.Conv2d, 1, 1, 2, padding=-1).startswith("padding must be an integer ≥ 0")
    assert message(manual.nn.MaxPool2d, 0).startswith("kernel_size must be an integer ≥ 1")
    assert message(manual.nn.MaxPool2d, 2, stride=0).startswith("stride must be an integer ≥ 1")
    assert message(manual.nn.MaxPool2d, 2, padding=-1).startswith("padding must be an integer ≥ 0")
    assert message(manual.nn.AvgPool2d, 2, stride=(1, 0)).startswith("stride must be an integer ≥ 1")


@pytest.mark.parametrize("kernel, padding, accepted", [
    ((2, 4), (1, 2), True), ((4, 2), (2, 1), True), ((3, 5), (1, 2), True),
    ((2, 4), (2, 0), False), ((4, 2), (0, 2), False), ((2, 4), (1, 3), False), ((3, 3), (2, 1), False),
])
def test_a_max_pool_module_holds_its_padding_to_half_the_kernel_axis_by_axis(kernel, padding, accepted):
    if accepted:
        assert manual.nn.MaxPool2d(kernel, padding=padding).padding == padding
    else:
        assert message(manual.nn.MaxPool2d, kernel, padding=padding) == (
            f"MaxPool2d: padding {padding} must be at most half the kernel {kernel} (as torch), so that every window "
            "holds an input")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_conv_module_holds_its_parameters_in_the_dtype_it_was_given(dtype):
    layer = manual.nn.Conv2d(2, 3, 2, dtype=dtype)
    assert layer.weight.dtype == layer.bias.dtype == dtype


def test_a_max_pool_module_pads_nothing_unless_told_and_prints_its_geometry():
    assert manual.nn.MaxPool2d(2).padding == (0, 0) and manual.nn.MaxPool2d(2).output_shape((1, 4, 4)) == (1, 2, 2)
    assert repr(manual.nn.MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"
    assert repr(manual.nn.AvgPool2d((2, 3))) == "AvgPool2d(kernel_size=(2, 3), stride=(2, 3))"


@pytest.mark.torch
@pytest.mark.parametrize("kwargs", [{}, {"padding": 1}, {"bias": False},
                                    {"stride": 2, "padding": (1, 0), "bias": False}])
def test_a_conv_module_prints_as_torchs(kwargs):
    assert repr(manual.nn.Conv2d(1, 2, 3, **kwargs)) == repr(torch.nn.Conv2d(1, 2, 3, **kwargs))


def test_the_modules_output_shape_refuses_what_they_cannot_take_naming_the_module():
    layer = manual.nn.Conv2d(3, 4, 2)
    name = "Conv2d(3, 4, kernel_size=(2, 2), stride=(1, 1))"
    assert message(layer.output_shape, (2, 5, 5)) == f"{name} takes 3 input channel(s), gets shape (2, 5, 5)"
    assert message(layer.output_shape, (3, 5)) == f"{name} takes (channels, height, width) images, gets shape (3, 5)"
    assert message(layer.output_shape, (3, 1, 4)) == (f"{name}: kernel (2, 2) is larger than the padded input (1, 4) "
                                                      "(input (1, 4), padding (0, 0))")
    pool, name = manual.nn.MaxPool2d(3), "MaxPool2d(kernel_size=(3, 3), stride=(3, 3), padding=(0, 0))"
    assert message(pool.output_shape, (2, 2)) == f"{name} takes (channels, height, width) images, gets shape (2, 2)"
    assert message(pool.output_shape, (1, 2, 5)) == (f"{name}: kernel (3, 3) is larger than the padded input (2, 5) "
                                                     "(input (2, 5), padding (0, 0))")


@pytest.mark.parametrize("shape, sizes", [((784,), "1 28 28"), ((1,), "1 1 1"), ((0,), "C H W"), ((10,), "C H W"),
                                          ((4, 7), "C H W"), ((1, 7), "C H W")])
def test_a_conv_written_as_data_after_a_flat_or_2d_shape_says_which_unflatten_fits(shape, sizes):
    assert message(make_conv, shape, 4, 3) == (f"a convolution takes (channels, height, width) images, gets shape "
                                               f"{shape}: put 'unflatten {sizes}' before it")


def test_a_conv_written_as_data_keeps_bias_false():
    assert list(make_conv((1, 5, 5), 2, 3, bias=False).state_dict()) == ["weight"]
    assert list(make_conv((1, 5, 5), 2, 3).state_dict()) == ["weight", "bias"]
