"""``manual.nn.RNN``, ``LSTM``, ``GRU`` and ``LastStep`` against torch's own modules, and the recurrent gradient check.

Agreement (float64, ≤ 1e-10 relative per tensor) of outputs, final states and every gradient with autograd of
``torch_ref.mirror``, for several shapes and lengths up to T = 50; exact state-dict exchange; the
sequential-MNIST model against its mirror; the architecture as data; clipping; and planted bugs that
``experiments.gradcheck.recurrent.check_recurrent`` must locate in gate and time.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import manual.nn
import manual.recurrent
import torch_ref
from experiments.gradcheck.recurrent import check_recurrent, units_text
from manual.init import INITS
from manual.optim.clip import clip_grad_norm_
from tests.helpers import message
from torch_ref.mirror import torch_dtype

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOL = 1e-10
KINDS = {"rnn_tanh": (manual.nn.RNN, {}), "rnn_relu": (manual.nn.RNN, {"nonlinearity": "relu"}),
         "lstm": (manual.nn.LSTM, {}), "gru": (manual.nn.GRU, {})}


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-300)


def parts(state, module):
    return tuple(state) if isinstance(module, manual.nn.LSTM) else (state,)


def pack(arrays, module):
    return tuple(arrays) if isinstance(module, manual.nn.LSTM) else arrays[0]


def compare_with_torch(module, x, hx, rng) -> dict:
    """{what: relative error} of output, final state, ∂E/∂x, ∂E/∂hx and every parameter gradient, for E = Σ out·dout
    + Σ state·dstate with random dout and dstate."""
    out, state = module.forward(x, hx)
    dout = rng.standard_normal(out.shape)
    dstate = [rng.standard_normal(s.shape) for s in parts(state, module)]
    dx = module.backward((dout, pack(dstate, module)))
    twin = torch_ref.mirror(module)
    xt = torch.tensor(x, requires_grad=True)
    hxt = None if hx is None else [torch.tensor(h, requires_grad=True) for h in parts(hx, module)]
    out_t, state_t = twin(xt, None if hxt is None else pack(hxt, module))
    E = (out_t * torch.tensor(dout)).sum() + sum((s * torch.tensor(d)).sum()
                                                 for s, d in zip(parts(state_t, module), dstate))
    E.backward()
    errors = {"output": rel(out, out_t.detach()), "dx": rel(dx, xt.grad)}
    errors.update({f"state{k}": rel(a, b.detach()) for k, (a, b) in enumerate(zip(parts(state, module),
                                                                                    parts(state_t, module)))})
    errors.update({key: rel(module.grads[key], p.grad) for key, p in twin.named_parameters()})
    if hx is not None:
        errors.update({f"dhx{k}": rel(a, b.grad) for k, (a, b) in enumerate(zip(parts(module.grad_hx, module), hxt))})
    return errors


CASES = [  # (kind, batch, T, input, hidden, layers, with initial state)
    ("rnn_tanh", 3, 1, 2, 3, 1, False), ("rnn_tanh", 2, 50, 4, 5, 2, True), ("rnn_relu", 4, 17, 3, 6, 1, True),
    ("rnn_relu", 2, 50, 3, 4, 2, False), ("lstm", 3, 1, 2, 3, 1, True), ("lstm", 2, 50, 4, 5, 1, False),
    ("lstm", 3, 23, 5, 4, 2, True), ("lstm", 1, 50, 3, 3, 2, False), ("gru", 3, 1, 2, 3, 1, False),
    ("gru", 2, 50, 4, 5, 1, True), ("gru", 4, 11, 3, 6, 2, False), ("gru", 2, 50, 3, 4, 2, True),
]


@pytest.mark.parametrize("kind,batch,T,inputs,hidden,layers,with_hx", CASES)
def test_outputs_and_every_gradient_agree_with_autograd(kind, batch, T, inputs, hidden, layers, with_hx):
    rng = np.random.default_rng(T * 100 + hidden)
    cls, kwargs = KINDS[kind]
    manual.nn.manual_seed(T)
    module = cls(inputs, hidden, num_layers=layers, **kwargs)
    x = rng.standard_normal((batch, T, inputs))
    hx = None
    if with_hx:
        hx = pack([rng.standard_normal((layers, batch, hidden)) for _ in range(2 if kind == "lstm" else 1)], module)
    errors = compare_with_torch(module, x, hx, rng)
    n_params = 4 * layers
    assert len(errors) == 2 + n_params + (2 if kind == "lstm" else 1) * (2 if with_hx else 1)
    assert max(errors.values()) <= TOL, {k: v for k, v in errors.items() if v > TOL}


def test_without_bias_and_with_large_preactivations():
    """bias=False has no bias tensors (as torch's), and N(0, 1) weights with inputs of 30 drive every gate into
    saturation: the tanh form of σ stays finite and agrees with torch."""
    rng = np.random.default_rng(5)
    for cls in (manual.nn.LSTM, manual.nn.GRU, manual.nn.RNN):
        module = cls(3, 4, bias=False)
        module.reset_parameters(rng, "normal")
        assert list(module.state_dict()) == ["weight_ih_l0", "weight_hh_l0"]
        errors = compare_with_torch(module, 30 * rng.standard_normal((2, 9, 3)), None, rng)
        assert max(errors.values()) <= TOL, errors


def test_gradient_shapes_follow_the_output_only_or_state_only():
    """backward takes ∂E/∂output alone, or a tuple with None parts: the missing part contributes nothing."""
    rng = np.random.default_rng(1)
    lstm = manual.nn.LSTM(3, 4, num_layers=2)
    x = rng.standard_normal((2, 6, 3))
    out, _ = lstm.forward(x)
    dout = rng.standard_normal(out.shape)
    dx_array = lstm.backward(dout)
    dx_tuple = lstm.backward((dout, (None, None)))
    np.testing.assert_array_equal(dx_array, dx_tuple)
    dh_n = rng.standard_normal((2, 2, 4))
    dx_state = lstm.backward((None, (dh_n, None)))
    # ∂E/∂h_n of the top layer is ∂E/∂(output at the last step)
    top_only = np.zeros_like(dh_n)
    top_only[1] = dh_n[1]
    dseq = np.zeros_like(dout)
    dseq[:, -1] = dh_n[1]
    np.testing.assert_allclose(lstm.backward((None, (top_only, None))), lstm.backward(dseq), rtol=1e-12, atol=1e-15)
    assert dx_state.shape == x.shape and lstm.grad_hx is None
    assert lstm.grad_h.shape == (2, 2, 6, 4) and lstm.grad_gates.shape == (2, 2, 6, 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dicts_exchange_exactly_both_ways(kind, dtype):
    cls, kwargs = KINDS[kind]
    module = cls(3, 5, num_layers=2, dtype=dtype, **kwargs)
    reference = getattr(torch.nn, cls.__name__)(3, 5, num_layers=2, batch_first=True, **kwargs)
    assert [(k, v.shape) for k, v in module.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]
    twin = torch_ref.mirror(module)
    assert next(twin.parameters()).dtype == torch_dtype(dtype)
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), module.state_dict()[key])
    other = cls(3, 5, num_layers=2, dtype=dtype, **kwargs)
    other.reset_parameters(np.random.default_rng(9), "normal")
    twin.load_state_dict(torch_ref.to_torch_state(other.state_dict()))
    module.load_state_dict(torch_ref.to_numpy_state(twin.state_dict()))
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(module.state_dict()[key], value)
        assert module.state_dict()[key].dtype == dtype


def test_default_and_reset_initialisations():
    """Construction draws U(±1/√H) for every tensor (torch's default); xavier/he use the weight's columns as
    fan_in and zero the biases; an unknown init is refused."""
    manual.nn.manual_seed(3)
    lstm = manual.nn.LSTM(7, 16)
    bound = 1 / np.sqrt(16)
    for value in lstm.params.values():
        assert np.abs(value).max() <= bound and np.abs(value).max() > 0.8 * bound
    lstm.reset_parameters(np.random.default_rng(0), "he")
    assert lstm.bias_ih_l0.max() == 0 and lstm.bias_hh_l0.min() == 0
    assert abs(lstm.weight_ih_l0.std() - np.sqrt(2 / 7)) < 0.1 * np.sqrt(2 / 7)
    with pytest.raises(ValueError, match="unknown init"):
        lstm.reset_parameters(np.random.default_rng(0), "orthogonal")


@pytest.mark.parametrize("call,match", [
    (lambda: manual.nn.LSTM(3, 4, batch_first=False), "only batch_first=True"),
    (lambda: manual.nn.RNN(3, 4, nonlinearity="sigmoid"), "nonlinearity must be one of tanh, relu"),
    (lambda: manual.nn.GRU(0, 4), "input_size must be an integer ≥ 1"),
    (lambda: manual.nn.LSTM(3, 4).forward(np.zeros((2, 5, 4))), r"takes \(batch, time, 3\) inputs"),
    (lambda: manual.nn.LSTM(3, 4).forward(np.zeros((2, 5, 3)), np.zeros((1, 2, 4))), r"pair \(h0, c0\)"),
    (lambda: manual.nn.GRU(3, 4).forward(np.zeros((2, 5, 3)), np.zeros((1, 3, 4))), "initial state must have"),
    (lambda: manual.nn.GRU(3, 4).output_shape((5, 4)), r"takes \(time steps, 3\) per example, gets shape \(5, 4\)"),
    (lambda: manual.nn.LastStep().forward(np.zeros((2, 4))),
     r"LastStep takes a \(batch, time, hidden\) sequence, got shape \(2, 4\)"),
    (lambda: manual.recurrent.rnn_forward(np.zeros((1, 2, 3)), np.zeros((2, 4)), np.zeros((4, 3)), np.zeros((4, 4)),
                                          nonlinearity="sigmoid"),
     "nonlinearity must be one of tanh, relu, got 'sigmoid'"),
])
def test_bad_arguments_are_one_line_errors(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_sequential_mnist_model_matches_its_mirror():
    """LSTM(28, 16) → LastStep → Linear(16, 10) on (B, 28, 28) images: loss and every gradient as torch's."""
    manual.nn.manual_seed(0)
    model = manual.nn.Sequential(manual.nn.LSTM(28, 16, batch_first=True), manual.nn.LastStep(),
                                 manual.nn.Linear(16, 10))
    rng = np.random.default_rng(0)
    X, y = rng.random((6, 28, 28)), rng.integers(0, 10, 6)
    loss, grads = manual.nn.loss_and_grads(model, X, y, "cross_entropy")
    twin = torch_ref.mirror(model)
    assert [type(m).__name__ for m in twin] == ["LSTM", "LastStep", "Linear"]
    loss_t = torch_ref.Criterion("cross_entropy")(twin(torch.tensor(X)), torch.tensor(y))
    loss_t.backward()
    assert abs(loss - loss_t.item()) <= TOL * abs(loss)
    assert list(grads) == [k for k, _ in twin.named_parameters()]
    for key, p in twin.named_parameters():
        assert rel(grads[key], p.grad) <= TOL, key


def test_sequential_mnist_model_trains_in_float32_with_clipping():
    """The model built from data, float32, Adam with clipped gradients: the loss of a fixed batch falls 5×."""
    import manual.optim

    model = manual.nn.build(["unflatten 28 28", "lstm 16", "last", "linear 10"], 784, seed=0, dtype="float32")
    rng = np.random.default_rng(0)
    X, y = rng.random((16, 784)).astype(np.float32), rng.integers(0, 10, 16)
    opt = manual.optim.Adam(model.params, lr=0.03)
    losses = []
    for _ in range(40):
        loss, grads = manual.nn.loss_and_grads(model, X, y, "cross_entropy")
        assert all(g.dtype == np.float32 for g in grads.values())
        clip_grad_norm_(grads, 1.0)
        opt.step(grads)
        losses.append(loss)
    assert np.isfinite(losses).all() and losses[-1] < losses[0] / 5, losses


def test_last_step_passes_arrays_and_tuples():
    step = manual.nn.LastStep()
    seq = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(step.forward(seq), seq[:, -1])
    d = step.backward(np.ones((2, 4)))
    assert isinstance(d, np.ndarray) and d[:, -1].sum() == 8 and d[:, :-1].sum() == 0
    step.forward((seq, np.zeros((1, 2, 4))))
    d_out, d_state = step.backward(np.ones((2, 4)))
    assert d_state is None and d_out.shape == seq.shape
    assert step.output_shape((3, 4)) == (4,)
    assert step.grads == {}  # no parameters: an empty dict, as every module's (check_modules spreads it)


@pytest.mark.parametrize("seq_dtype,dout_dtype", [(np.float32, np.float32), (np.float32, np.float64),
                                                  (np.float64, np.float32), (np.float64, np.float64)])
def test_last_step_gradient_is_as_precise_as_its_input_and_dout(seq_dtype, dout_dtype):
    """∂E/∂output has the wider of the two dtypes (float32 stays float32), and dout at the last step exactly."""
    rng = np.random.default_rng(0)
    step = manual.nn.LastStep()
    step.forward(rng.standard_normal((2, 3, 4)).astype(seq_dtype))
    dout = rng.standard_normal((2, 4)).astype(dout_dtype)
    d = step.backward(dout)
    assert d.dtype == np.promote_types(seq_dtype, dout_dtype)
    np.testing.assert_array_equal(d[:, -1], dout)
    assert not d[:, :-1].any()


def test_recurrent_output_shape_per_example_is_time_steps_by_hidden():
    for cls in (manual.nn.RNN, manual.nn.LSTM, manual.nn.GRU):
        assert cls(3, 4).output_shape((7, 3)) == (7, 4)


@pytest.mark.parametrize("layers,bias", [(1, True), (2, False)])
@pytest.mark.parametrize("kind", list(KINDS))
def test_repr_is_torchs_and_names_a_relu_nonlinearity(kind, layers, bias):
    """repr as torch's module of the same arguments; torch's leaves out the nonlinearity, ours names ReLU."""
    cls, kwargs = KINDS[kind]
    expected = repr(getattr(torch.nn, cls.__name__)(3, 4, num_layers=layers, bias=bias, batch_first=True, **kwargs))
    if kwargs.get("nonlinearity") == "relu":
        expected = expected[:-1] + ", nonlinearity='relu')"
    assert repr(cls(3, 4, num_layers=layers, bias=bias, **kwargs)) == expected


def test_architecture_as_data_builds_the_recurrent_model():
    model = manual.nn.build(["unflatten 28 28", "lstm 16", "last", "linear 10"], 784, seed=1)
    assert model.output_shape((784,)) == (10,) and model[1].hidden_size == 16 and model[1].input_size == 28
    X = np.random.default_rng(0).random((4, 784))
    loss, grads = manual.nn.loss_and_grads(model, X, np.array([1, 2, 3, 4]), "cross_entropy")
    assert np.isfinite(loss) and set(grads) == set(model.params)
    torch_model = torch_ref.build(["unflatten 28 28", "gru 8 num_layers=2", "last", "linear 10"], 784, seed=1,
                                  dtype="float64")
    assert isinstance(torch_model[1], torch.nn.GRU) and torch_model[1].num_layers == 2
    rnn = manual.nn.build(["unflatten 28 28", "rnn 8 nonlinearity=relu", "last"], 784)
    assert rnn[1].nonlinearity == "relu" and rnn.output_shape((784,)) == (8,)
    with pytest.raises(ValueError, match="put 'unflatten 28 28' before it"):
        manual.nn.build(["lstm 16"], 784)
    with pytest.raises(ValueError, match="keeps the last of"):
        manual.nn.build(["last"], 784)


def test_clipping_the_lstm_gradients_matches_torch():
    manual.nn.manual_seed(2)
    lstm = manual.nn.LSTM(3, 6, num_layers=2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 12, 3))
    out, _ = lstm.forward(x)
    dout = 10 * rng.standard_normal(out.shape)
    lstm.backward(dout)
    grads = lstm.named_grads()
    twin = torch_ref.mirror(lstm)
    twin(torch.tensor(x))[0].backward(torch.tensor(dout))
    norm = clip_grad_norm_(grads, 1.0)
    norm_t = torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
    assert norm > 1 and abs(norm - norm_t.item()) <= TOL * norm
    for key, p in twin.named_parameters():
        assert rel(grads[key], p.grad) <= TOL, key


# ------------------------------------------------------------------------------ the cells of manual.recurrent
def cell(kind, rng, dtype, T=6, B=3, I=2, H=5):
    """One cell of ``manual.recurrent`` on random float inputs of ``dtype``: (forward(), backward(dout, dstate,
    **kwargs), the state's shapes). forward runs the cell; backward runs the cell's backward on its last cache."""
    name, _, nonlinearity = kind.partition("_")
    gates, states = {"rnn": (1, 1), "lstm": (4, 2), "gru": (3, 1)}[name]
    shapes = [(T, B, I)] + [(B, H)] * states + [(gates * H, I), (gates * H, H), (gates * H,), (gates * H,)]
    args = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    kwargs = {"nonlinearity": nonlinearity} if nonlinearity else {}
    caches = []

    def forward():
        result, cache = getattr(manual.recurrent, f"{name}_forward")(*args, **kwargs)
        caches.append(cache)
        return result, cache

    def backward(dout, dstate, **options):
        return getattr(manual.recurrent, f"{name}_backward")(dout, *dstate, caches[-1], **options)

    return forward, backward, [(B, H)] * states


def arrays_in(value):
    """Every ndarray in a nested tuple, list or dict (a cell's cache)."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [a for v in value for a in arrays_in(v)] if isinstance(value, (tuple, list)) else []


@pytest.mark.parametrize("dstate_dtype", [None, np.float32, np.float64])
@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_cells_stay_float32_in_outputs_caches_and_every_gradient(kind, dstate_dtype):
    """float32 inputs: float32 outputs, float32 caches (half the memory) and float32 gradients, whether ∂E/∂(final
    state) is absent, float32 or float64."""
    rng = np.random.default_rng(1)
    forward, backward, state_shapes = cell(kind, rng, np.float32)
    result, cache = forward()
    assert {a.dtype for a in arrays_in((result, cache))} == {np.dtype(np.float32)}
    out = result[0]
    dstate = [None if dstate_dtype is None else rng.standard_normal(s).astype(dstate_dtype) for s in state_shapes]
    grads = backward(rng.standard_normal(out.shape).astype(np.float32), dstate)
    assert {name: g.dtype for name, g in grads.items()} == {name: np.dtype(np.float32) for name in grads}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_float64_final_state_gradient_is_rounded_to_the_cells_float32_first(kind):
    """∂E/∂(final state) in float64 enters a float32 cell as its float32 rounding: bit for bit the same results."""
    rng = np.random.default_rng(2)
    forward, backward, state_shapes = cell(kind, rng, np.float32, B=8, H=16)
    out = forward()[0][0]
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dstate = [rng.standard_normal(s) for s in state_shapes]
    exact = backward(dout, dstate)
    rounded = backward(dout, [d.astype(np.float32) for d in dstate])
    for name in exact:
        np.testing.assert_array_equal(exact[name], rounded[name], err_msg=name)


@pytest.mark.parametrize("kind", list(KINDS))
def test_no_final_state_gradient_is_a_zero_one(kind):
    """dh_n (and dc_n) None: the same gradients, bit for bit, as zeros of the state's shape."""
    rng = np.random.default_rng(3)
    forward, backward, state_shapes = cell(kind, rng, np.float64)
    out = forward()[0][0]
    dout = rng.standard_normal(out.shape)
    without = backward(dout, [None] * len(state_shapes))
    zeros = backward(dout, [np.zeros(s) for s in state_shapes])
    assert list(without) == list(zeros)
    for name in zeros:
        np.testing.assert_array_equal(without[name], zeros[name], err_msg=name)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_the_cells_default_to_tanh_and_to_computing_the_input_gradient(kind):
    """rnn_forward without nonlinearity is tanh; each backward without input_grad returns ∂E/∂x."""
    rng = np.random.default_rng(4)
    forward, backward, state_shapes = cell(kind, rng, np.float64)
    out = forward()[0][0]
    if kind == "rnn":  # the same arrays (the same seed), nonlinearity="tanh" given
        np.testing.assert_array_equal(out, cell("rnn_tanh", np.random.default_rng(4), np.float64)[0]()[0][0])
    dout = rng.standard_normal(out.shape)
    dstate = [rng.standard_normal(s) for s in state_shapes]
    default, asked = backward(dout, dstate), backward(dout, dstate, input_grad=True)
    assert default["x"] is not None
    np.testing.assert_array_equal(default["x"], asked["x"])
    assert backward(dout, dstate, input_grad=False)["x"] is None


@pytest.mark.parametrize("kind", list(KINDS))
def test_backward_without_input_grad_skips_the_data_gradient_in_the_cell(kind, monkeypatch):
    """input_grad=False: the first layer's cell is not asked for ∂E/∂x (the work is skipped, not discarded); the
    layer above still gets its ∂E/∂(input), and the parameter gradients are unchanged."""
    cls, kwargs = KINDS[kind]
    name = kind.partition("_")[0]
    correct = getattr(manual.recurrent, f"{name}_backward")
    returned = []

    def recording(*args, **options):
        grads = correct(*args, **options)
        returned.append(grads["x"])
        return grads

    monkeypatch.setattr(manual.recurrent, f"{name}_backward", recording)
    rng = np.random.default_rng(5)
    module = cls(3, 4, num_layers=2, **kwargs)
    out, _ = module.forward(rng.standard_normal((2, 5, 3)))
    dout = rng.standard_normal(out.shape)
    module.backward(dout)
    with_input = dict(module.grads)
    returned.clear()
    assert module.backward(dout, input_grad=False) is None
    assert [g is None for g in returned] == [False, True]  # layer 1, then layer 0
    for key, value in with_input.items():
        np.testing.assert_array_equal(module.grads[key], value, err_msg=key)


# ------------------------------------------------------------------------------ the located check
@pytest.mark.parametrize("kind,layers,with_hx", [("lstm", 2, True), ("gru", 1, True), ("rnn_relu", 1, False)])
def test_check_recurrent_passes_correct_layers(kind, layers, with_hx):
    cls, kwargs = KINDS[kind]
    module = cls(3, 4, num_layers=layers, **kwargs)
    rng = np.random.default_rng(0)
    hx = pack([rng.standard_normal((layers, 2, 4)) for _ in range(2 if kind == "lstm" else 1)], module) \
        if with_hx else None
    report = check_recurrent(module, rng.standard_normal((2, 15, 3)), hx)
    assert report.passed, str(report)
    assert list(report.steps["t"]) == list(range(15)) * layers
    assert report.steps["rel_err"].max() <= 1e-10
    assert report.tensors["max_rel_err_autograd"].max() <= 1e-10
    assert report.tensors["max_rel_err_fd"].max() <= 1e-6
    assert "passed" in str(report).splitlines()[0]


def test_planted_bug_in_two_units_of_a_gate_is_located_in_gate_units_and_time(monkeypatch):
    """The output gate's σ′ is 1.5× too large in units 3 and 7, from t = 4 on."""
    correct = manual.recurrent.lstm_gate_derivatives

    def broken(gates):
        dact = correct(gates)
        H = gates.shape[-1] // 4
        dact[4:, :, 3 * H + np.array([3, 7])] *= 1.5
        return dact

    monkeypatch.setattr(manual.recurrent, "lstm_gate_derivatives", broken)
    manual.nn.manual_seed(0)
    report = check_recurrent(manual.nn.LSTM(3, 8), np.random.default_rng(0).standard_normal((4, 10, 3)),
                             finite_differences=False)
    text = str(report)
    assert not report.passed
    assert "the error enters at t = 4: output gate, units 3 and 7" in text
    assert set(report.failures["first_t"]) == {4}
    bad_steps = report.steps[~report.steps["ok"]]
    assert list(bad_steps["t"]) == list(range(10))  # from the last step back: the gates at 9, then every ∂E/∂h_t
    assert report.steps.loc[report.steps["t"] == 9, "rel_err"].item() == 0.0  # ∂E/∂h_9 itself is right


def test_broken_lstm_example_reports_the_forget_gate_from_the_first_step():
    spec = importlib.util.spec_from_file_location("broken_lstm", Path(__file__).parents[2] / "examples" /
                                                  "broken_lstm.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    text = example.main()
    lines = text.splitlines()
    assert lines[0].startswith("BrokenLSTM (3, 8, batch_first=True): FAILED")
    assert lines[1].startswith("  the error enters at t = 0: forget gate, all 8 units")
    assert "  weight_ih_l0, forget gate, all 8 units: wrong from t = 0" in text
    assert "  weight_hh_l0, forget gate, all 8 units: wrong from t = 1" in text  # h_{−1} = 0 hides it at t = 0
    assert "  weight_hh_l0, input, cell and output gates, all 8 units: wrong from t = 2" in text
    assert "finite differences: weight_hh_l0" in text
    assert example.__doc__.count(lines[1].strip()) == 1  # the docstring quotes the real output


def test_gru_bug_in_the_reset_gate_is_named(monkeypatch):
    """GRU: ∂E/∂r without the hidden bias b_hn (the paper's placement, not torch's) is wrong in the reset gate."""
    correct = manual.recurrent.gru_forward

    def forward_forgetting_b_hn(x, h0, W_ih, W_hh, b_ih=None, b_hh=None):
        out, cache = correct(x, h0, W_ih, W_hh, b_ih, b_hh)
        x_, hs, gates, q_n, *rest = cache
        H = q_n.shape[-1]
        return out, (x_, hs, gates, q_n - b_hh[2 * H:], *rest)  # the cached W_hn h + b_hn loses b_hn

    monkeypatch.setattr(manual.recurrent, "gru_forward", forward_forgetting_b_hn)
    report = check_recurrent(manual.nn.GRU(2, 5), np.random.default_rng(1).standard_normal((3, 6, 2)),
                             finite_differences=False)
    assert report.regions[0].startswith("the error enters at t = 0: reset gate, all 5 units")


def test_units_text():
    assert units_text([3, 7], 8) == "units 3 and 7"
    assert units_text([2], 8) == "unit 2"
    assert units_text(range(8), 8) == "all 8 units"
    assert units_text([0, 1, 2, 5], 8) == "units 0–2 and 5"
    assert units_text([1, 2, 3], None, noun="time step") == "time steps 1–3"


def test_finite_difference_allowance_grows_with_the_sequence():
    from experiments.gradcheck.recurrent import fd_allowance

    short, long_ = np.ones((1, 5, 1)), np.ones((1, 50, 1))
    ratio = fd_allowance(long_, long_, (), None, 1e-5) / fd_allowance(short, short, (), None, 1e-5)
    assert ratio == pytest.approx((50 * 51) / (5 * 6))  # Σ_t (t + 1): quadratic in T


def test_bench_only_recurrent_writes_its_table(tmp_path):
    """``bench --only recurrent`` (one repeat here) writes recurrent.csv and RECURRENT.md with the ratios."""
    import pandas as pd

    from experiments.cli import main

    assert main(["bench", "--only", "recurrent", "--repeats", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    df = pd.read_csv(tmp_path / "recurrent.csv")
    assert list(df["dtype"]) == ["float32", "float32", "float64", "float64"]
    assert (df["manual_ms"] > 0).all() and np.allclose(df["ratio"], df["manual_ms"] / df["torch_ms"])
    text = (tmp_path / "RECURRENT.md").read_text()
    assert "| float32 | parameters |" in text and "goal ≤ 2×" in text


# ------------------------------------------------------------------------------ refusals, dtypes and inits in full
CLASSES = [manual.nn.RNN, manual.nn.LSTM, manual.nn.GRU]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("sizes,what,value", [((0, 4, 1), "input_size", 0), ((3, 0, 1), "hidden_size", 0),
                                              ((3, 4, 0), "num_layers", 0), ((3, True, 1), "hidden_size", True),
                                              ((3, 4, 1.0), "num_layers", 1.0)])
def test_a_bad_size_is_refused_naming_the_class_and_the_argument(cls, sizes, what, value):
    assert message(cls, *sizes) == f"{cls.__name__}: {what} must be an integer ≥ 1, got {value!r}"


@pytest.mark.parametrize("cls", CLASSES)
def test_a_new_module_is_batch_first_and_has_no_initial_state_gradient(cls):
    module = cls(3, 4)
    assert module.batch_first is True and module.grad_hx is None


@pytest.mark.parametrize("cls", CLASSES)
def test_forward_refusals_name_the_class_and_the_shapes(cls):
    module = cls(3, 4)
    assert message(module.forward, np.zeros((2, 5, 4))) == \
        f"{cls.__name__}(3, 4) takes (batch, time, 3) inputs, got shape (2, 5, 4)"
    assert message(module.forward, np.zeros((2, 0, 3))) == \
        f"{cls.__name__} needs at least one time step, got shape (2, 0, 3)"
    bad = np.zeros((1, 3, 4))
    assert message(module.forward, np.zeros((2, 5, 3)), (bad, bad) if cls is manual.nn.LSTM else bad) == \
        f"{cls.__name__}: the initial state must have shape (num_layers, batch, hidden_size) = (1, 2, 4), " \
        "got (1, 3, 4)"


def test_an_lstm_initial_state_that_is_not_a_pair_is_refused():
    """An array whose first axis happens to have length 2 (two layers) is still not the pair (h0, c0)."""
    lstm = manual.nn.LSTM(3, 4, num_layers=2)
    x = np.zeros((2, 5, 3))
    expected = "LSTM's initial state is a pair (h0, c0), each (2, 2, 4)"
    assert message(lstm.forward, x, np.zeros((2, 2, 4))) == expected
    assert message(lstm.forward, x, (np.zeros((2, 2, 4)),) * 3) == expected


@pytest.mark.parametrize("cls", CLASSES)
def test_backward_refusals_name_the_class_and_the_shapes(cls):
    module = cls(3, 4)
    out, state = module.forward(np.zeros((2, 5, 3)))
    assert message(module.backward, np.zeros((2, 4, 4))) == \
        f"{cls.__name__}: ∂E/∂output has the output's shape (2, 5, 4), got (2, 4, 4)"
    bad = np.zeros((1, 3, 4))
    dstate = (bad, None) if cls is manual.nn.LSTM else bad
    assert message(module.backward, (out, dstate)) == f"{cls.__name__}: ∂E/∂state has shape (1, 2, 4), got (1, 3, 4)"


def test_an_lstm_state_gradient_that_is_not_a_pair_is_refused():
    lstm = manual.nn.LSTM(3, 4, num_layers=2)
    out, _ = lstm.forward(np.zeros((2, 5, 3)))
    expected = "LSTM: ∂E/∂state is a pair (∂E/∂h_n, ∂E/∂c_n) or None"
    assert message(lstm.backward, (out, np.zeros((2, 2, 4)))) == expected
    assert message(lstm.backward, (out, (np.zeros((2, 2, 4)),) * 3)) == expected


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_float32_module_computes_in_float32_whatever_the_dtype_of_its_inputs(kind):
    """float64 x, hx, ∂E/∂output and ∂E/∂state into a float32 module: float32 output, state and every gradient."""
    rng = np.random.default_rng(4)
    cls, kwargs = KINDS[kind]
    module = cls(2, 3, num_layers=2, dtype=np.float32, **kwargs)
    hx = [rng.standard_normal((2, 4, 3)) for _ in range(module.STATES)]
    out, state = module.forward(rng.standard_normal((4, 5, 2)), pack(hx, module))
    dstate = [rng.standard_normal(s.shape) for s in parts(state, module)]
    dx = module.backward((rng.standard_normal(out.shape), pack(dstate, module)))
    results = {"output": out, "dx": dx, "grad_h": module.grad_h, "grad_gates": module.grad_gates}
    results.update({f"state{k}": s for k, s in enumerate(parts(state, module))})
    results.update({f"grad_hx{k}": g for k, g in enumerate(parts(module.grad_hx, module))})
    results.update(module.grads)
    assert {k: v.dtype for k, v in results.items()} == {k: np.dtype(np.float32) for k in results}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_float64_output_gradient_is_rounded_to_the_modules_float32_first(kind):
    """∂E/∂output in float64 enters a float32 module as its float32 rounding: bit for bit the same gradients."""
    rng = np.random.default_rng(5)
    cls, kwargs = KINDS[kind]
    module = cls(3, 16, dtype=np.float32, **kwargs)
    out, _ = module.forward(rng.standard_normal((8, 6, 3)).astype(np.float32))
    dout = rng.standard_normal(out.shape)
    exact = module.backward(dout), dict(module.grads), module.grad_h
    rounded = module.backward(dout.astype(np.float32)), dict(module.grads), module.grad_h
    np.testing.assert_array_equal(exact[0], rounded[0])
    np.testing.assert_array_equal(exact[2], rounded[2])
    for name in exact[1]:
        np.testing.assert_array_equal(exact[1][name], rounded[1][name], err_msg=name)


@pytest.mark.parametrize("cls", CLASSES)
def test_normal_init_draws_every_tensor_from_a_standard_normal_in_torchs_order(cls):
    module = cls(3, 5, num_layers=2)
    module.reset_parameters(np.random.default_rng(7), "normal")
    rng = np.random.default_rng(7)
    for name, value in module.params.items():
        np.testing.assert_array_equal(value, rng.standard_normal(value.shape), err_msg=name)


@pytest.mark.parametrize("cls", CLASSES)
def test_xavier_init_takes_each_weights_fans_from_its_columns_and_rows(cls):
    """weight_ih_l0 (G·H, I) and weight_hh_l0 (G·H, H) ~ U(±√(6 / (fan_in + fan_out))) with fan_in = columns and
    fan_out = rows (torch's xavier_uniform_ fans); the biases 0."""
    module = cls(3, 5, num_layers=2)
    module.reset_parameters(np.random.default_rng(8), "xavier")
    rng = np.random.default_rng(8)
    for name, value in module.params.items():
        if value.ndim == 1:
            assert not value.any(), name
            continue
        fan_out, fan_in = value.shape
        bound = np.sqrt(6 / (fan_in + fan_out))
        np.testing.assert_array_equal(value, rng.uniform(-bound, bound, value.shape), err_msg=name)


def test_an_unknown_init_is_refused_listing_the_valid_ones():
    assert message(manual.nn.GRU(3, 4).reset_parameters, np.random.default_rng(0), "orthogonal") == \
        f"unknown init 'orthogonal'; valid inits: {', '.join(INITS)}"
