"""Absolute facts about the initialisers: each layer's sample variance against its formula.

Not "the same seed gives the same numbers" (that holds for a wrong formula too) but the scale itself, per
layer, on layers large enough that the sample variance is within a few per cent of the true one. The layer
sizes make fan-in and fan-out differ by a factor of 3, 2 and 8, so swapping them (He with fan-out, Xavier with
one fan only) moves the variance far outside the tolerance. Torch-free.
"""
import math

import numpy as np
import pytest

from manual.init import INITS, init_layer, init_params

pytestmark = pytest.mark.facts  # absolute facts, stated by hand (tests/conftest.py)

SIZES = (600, 200, 400, 50)  # layers of 120,000, 80,000 and 20,000 weights
LAYERS = list(zip(SIZES[:-1], SIZES[1:]))  # (fan_in, fan_out) per layer


def weight_variance(init, fan_in, fan_out):
    """The variance of one weight, from the paper that defines each initialiser."""
    return {
        "normal": 1.0,  # N(0, 1)
        "xavier": 2.0 / (fan_in + fan_out),  # U(−a, a) has variance a²/3 = 2/(fan_in + fan_out)
        "he": 2.0 / fan_in,  # N(0, 2/fan_in)
        "pytorch": 1.0 / (3 * fan_in),  # U(−1/√fan_in, 1/√fan_in): (1/√fan_in)²/3
    }[init]


def relative_tolerance(n):
    """Five standard errors of a sample variance of n draws (√(2/n) for a normal, less for a uniform)."""
    return 5 * math.sqrt(2.0 / n)


@pytest.fixture
def params():
    """Drawn afresh for each test (no module-scoped cache), so that mutmut sees every test call the initialisers."""
    return {init: init_params(SIZES, init, seed=7) for init in INITS}


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("layer", range(len(LAYERS)))
def test_weight_variance_matches_the_formula_per_layer(params, init, layer):
    fan_in, fan_out = LAYERS[layer]
    w = params[init][f"layers.{layer}.weight"]
    assert w.shape == (fan_out, fan_in)  # nn.Linear's (out, in)
    expected = weight_variance(init, fan_in, fan_out)
    assert np.var(w) == pytest.approx(expected, rel=relative_tolerance(w.size))
    assert abs(np.mean(w)) < 5 * math.sqrt(expected / w.size)  # centred at 0


@pytest.mark.parametrize("init, bound", [("xavier", lambda i, o: math.sqrt(6.0 / (i + o))),
                                         ("pytorch", lambda i, o: 1.0 / math.sqrt(i))])
def test_uniform_initialisers_fill_exactly_their_interval(params, init, bound):
    """U(−a, a): nothing beyond a, and with 20,000+ draws the extremes come within 0.1% of ±a."""
    for layer, (fan_in, fan_out) in enumerate(LAYERS):
        a = bound(fan_in, fan_out)
        w = params[init][f"layers.{layer}.weight"]
        assert np.abs(w).max() <= a
        assert w.max() > 0.999 * a and w.min() < -0.999 * a


def test_he_and_normal_are_gaussian_not_uniform(params):
    """A normal's kurtosis is 3 (a uniform's is 1.8): He and "normal" draw Gaussians."""
    for init in ("he", "normal"):
        w = params[init]["layers.0.weight"].ravel()
        kurtosis = np.mean(w**4) / np.mean(w**2) ** 2
        assert kurtosis == pytest.approx(3.0, abs=0.1), init


def test_biases(params):
    """normal: N(0, 1); pytorch: U(±1/√fan_in); xavier and he: exactly zero."""
    for layer, (fan_in, fan_out) in enumerate(LAYERS):
        for init in ("xavier", "he"):
            b = params[init][f"layers.{layer}.bias"]
            assert b.shape == (fan_out,) and not b.any()
        b = params["pytorch"][f"layers.{layer}.bias"]
        assert b.shape == (fan_out,) and np.abs(b).max() <= 1 / math.sqrt(fan_in)
        assert np.abs(b).max() > 0.9 / math.sqrt(fan_in)  # fills the interval, not a narrower one
    b = np.concatenate([params["normal"][f"layers.{l}.bias"] for l in range(len(LAYERS))])  # 650 draws
    assert np.var(b) == pytest.approx(1.0, rel=relative_tolerance(b.size))
    pytorch = np.concatenate([params["pytorch"][f"layers.{l}.bias"] * math.sqrt(fan_in)
                              for l, (fan_in, _) in enumerate(LAYERS)])  # U(−1, 1) once rescaled
    assert np.var(pytorch) == pytest.approx(1 / 3, rel=relative_tolerance(pytorch.size))


def test_each_layer_draws_fresh_numbers_in_a_fixed_order():
    """Layers are drawn one after another from one generator: the second layer is not a copy of the first,
    and the first layer does not depend on what comes after it."""
    a = init_params((30, 30, 30), "normal", seed=1)
    b = init_params((30, 30, 5), "normal", seed=1)
    assert not np.array_equal(a["layers.0.weight"], a["layers.1.weight"])
    np.testing.assert_array_equal(a["layers.0.weight"], b["layers.0.weight"])
    np.testing.assert_array_equal(a["layers.0.bias"], b["layers.0.bias"])
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((30, 30))  # the documented order: weight, then bias, layer by layer
    np.testing.assert_array_equal(a["layers.0.weight"], w0)
    np.testing.assert_array_equal(a["layers.0.bias"], rng.standard_normal(30))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parameters_come_in_the_asked_dtype(dtype):
    params = init_params((4, 3, 2), "he", seed=0, dtype=dtype)
    assert list(params) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert all(p.dtype == dtype for p in params.values())


def test_defaults_are_normal_seed_0_float64():
    default = init_params((3, 2))
    explicit = init_params((3, 2), "normal", 0, np.float64)
    assert all(np.array_equal(default[k], explicit[k]) and default[k].dtype == np.float64 for k in explicit)


def test_an_unknown_init_is_refused_by_both_entry_points():
    message = "unknown init 'kaiming'; valid inits: normal, xavier, he, pytorch"
    for make in (lambda: init_params((2, 2), "kaiming"), lambda: init_layer(np.random.default_rng(0), 2, 2, "kaiming")):
        with pytest.raises(ValueError) as error:
            make()
        assert str(error.value) == message


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None])
def test_a_seed_that_is_not_an_integer_from_0_is_refused_by_name(seed):
    import manual

    for make in (lambda: init_params((2, 2), "normal", seed), lambda: manual.MLP([2, 2], seed=seed)):
        with pytest.raises(ValueError) as error:
            make()
        assert str(error.value) == f"seed must be an integer ≥ 0, got {seed!r}"
    assert init_params((2, 2), "normal", np.int64(3))["layers.0.weight"].shape == (2, 2)
