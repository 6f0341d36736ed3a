"""``python -m experiments gradcheck``, run in-process through ``experiments.cli.main``."""
import csv
import textwrap
from pathlib import Path

import numpy as np
import pytest

from experiments.cli import main
from experiments.gradcheck import CSV_COLUMNS, centred_difference, max_rel_err, rel_err
from manual.activations import ACTIVATIONS, Activation, tanh

pytestmark = pytest.mark.torch  # tests/conftest.py

LAYER = Path(__file__).resolve().parents[2] / "examples" / "affine_relu.py"
SMALL_GRID = ["--activations", "tanh", "relu", "--losses", "mse", "cross_entropy", "--depths", "1", "2"]


def read_rows(directory):
    with open(directory / "gradcheck.csv", newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_small_grid_passes_and_writes_one_row_per_parameter(tmp_path, capsys):
    assert main(["gradcheck", *SMALL_GRID, "--out", str(tmp_path)]) == 0
    header, rows = read_rows(tmp_path)
    assert tuple(header) == CSV_COLUMNS
    # 2 activations × 2 losses × (depth 1: 4 tensors + depth 2: 6 tensors)
    assert len(rows) == 2 * 2 * (4 + 6)
    assert {r["passed"] for r in rows} == {"True"}
    assert {r["dtype"] for r in rows} == {"float64"}
    depth2 = [r for r in rows if r["activation"] == "relu" and r["loss"] == "mse" and r["depth"] == "2"]
    assert [(r["parameter"], r["shape"]) for r in depth2] == [
        ("layers.0.weight", "5x6"), ("layers.0.bias", "5"), ("layers.1.weight", "5x5"), ("layers.1.bias", "5"),
        ("layers.2.weight", "4x5"), ("layers.2.bias", "4")]
    for r in rows:
        assert float(r["max_rel_err_autograd"]) <= 1e-10 and float(r["max_rel_err_fd"]) <= 1e-6
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["failures.csv", "functions.csv", "gradcheck.csv"]
    out = capsys.readouterr().out
    assert "40/40 rows passed" in out
    assert all(f"{a:<11} {loss:<14}" in out for a in ("tanh", "relu") for loss in ("mse", "cross_entropy"))


def test_float32_passes_with_its_own_tolerances(tmp_path, capsys):
    args = ["gradcheck", "--activations", "sigmoid", "gelu", "--depths", "1", "3", "--dtype", "float32"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    _, rows = read_rows(tmp_path)
    assert {r["dtype"] for r in rows} == {"float32"}
    assert max(float(r["max_rel_err_autograd"]) for r in rows) > 1e-10  # float32 rounding shows
    assert "tolerances: autograd 0.0001, finite differences 0.0001" in capsys.readouterr().out


def test_float32_batch_norm_passes_where_the_exact_gradient_is_zero(tmp_path):
    """identity + batch norm: every β but the last has gradient exactly 0, which float32 returns as noise of about
    ε₃₂·max|∂E/∂θ|; compared in absolute terms below FLOAT32_FLOOR, it passes (it failed 12 rows)."""
    args = ["gradcheck", "--activations", "identity", "--depths", "2", "3", "6", "--batch-norm", "--dtype", "float32"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    _, rows = read_rows(tmp_path)
    betas = [r for r in rows if r["batch_norm"] == "True" and ".bias" in r["parameter"] and "norms" in r["parameter"]]
    assert betas and all(r["passed"] == "True" for r in betas)


def test_a_float32_network_with_a_wrong_derivative_still_fails(tmp_path, monkeypatch):
    """The float32 floor does not hide a real error: tanh' as 1 − tanh(z) fails every hidden parameter."""
    monkeypatch.setitem(ACTIVATIONS, "tanh", Activation("tanh", tanh, lambda z: 1 - np.tanh(z), max_slope=1.0))
    assert main(["gradcheck", *SMALL_GRID, "--dtype", "float32", "--out", str(tmp_path)]) == 1
    _, rows = read_rows(tmp_path)
    broken = [r for r in rows if r["activation"] == "tanh" and not r["parameter"].startswith(f"layers.{r['depth']}.")]
    assert broken and all(r["passed"] == "False" for r in broken)


def test_a_wrong_derivative_fails(tmp_path, monkeypatch, capsys):
    """tanh'(z) written as 1 − tanh(z) instead of 1 − tanh²(z): both references must catch it."""
    monkeypatch.setitem(ACTIVATIONS, "tanh", Activation("tanh", tanh, lambda z: 1 - np.tanh(z), max_slope=1.0))
    assert main(["gradcheck", *SMALL_GRID, "--out", str(tmp_path)]) == 1
    _, rows = read_rows(tmp_path)
    broken = [r for r in rows if r["activation"] == "tanh"]
    # the hidden activation reaches every parameter but the output layer's
    assert all(r["passed"] == "False" for r in broken if not r["parameter"].startswith(f"layers.{r['depth']}."))
    assert all(float(r["max_rel_err_autograd"]) > 1e-3 and float(r["max_rel_err_fd"]) > 1e-3
               for r in broken if r["passed"] == "False")
    assert all(r["passed"] == "True" for r in rows if r["activation"] == "relu")
    out = capsys.readouterr().out
    assert "FAILED tanh" in out and "FAILED relu" not in out


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--activations", "--losses", "--depths", "--width", "--batch", "--dtype", "--init", "--tol",
                   "--fd-tol", "--out", "--seed"):
        assert option in text
    assert "gradcheck.csv" in text and "exits 1" in text


@pytest.mark.parametrize("argv", [["--depths", "0"], ["--activations", "sigmod"], ["--width", "-3"],
                                  ["--tol", "0"]])
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gradcheck", *argv])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_no_kink_free_batch_is_an_error_not_a_false_failure(tmp_path, capsys):
    """One relu unit per layer and 40 rows: some row always kills a layer, putting the next z exactly on the kink."""
    argv = ["gradcheck", "--activations", "relu", "--losses", "mse", "--depths", "3", "--width", "1",
            "--batch", "40", "--init", "he", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "away from a kink of relu" in capsys.readouterr().err
    assert not (tmp_path / "gradcheck.csv").exists()


def test_relative_errors():
    assert max_rel_err([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert max_rel_err([1.0, 100.0], [1.5, 100.0]) == pytest.approx(0.5 / 100)  # relative to the tensor's max
    assert max_rel_err([1e-9], [2e-9], floor=1e-3) == pytest.approx(1e-6)
    np.testing.assert_allclose(rel_err([1.0, -2.0, 0.0], [1.0, -1.0, 1e-9], floor=1e-6), [0.0, 0.5, 1e-3])
    for broken in (np.nan, np.inf):  # a NaN or infinite gradient never passes a tolerance
        assert not max_rel_err([1.0, broken], [1.0, 2.0]) <= 1.0


def test_centred_difference_is_fourth_order():
    """Exact for quartics (its error is h⁴·f⁽⁵⁾/30); for e^x it is accurate to rounding."""
    assert centred_difference(lambda x: x**4 - 3 * x**3, 2.0, h=0.1) == pytest.approx(4 * 8 - 9 * 4, rel=1e-12)
    assert centred_difference(np.exp, 1.0) == pytest.approx(np.e, rel=1e-11)


def test_batch_norm_grid_checks_gamma_and_beta_too(tmp_path, capsys):
    args = ["--activations", "sigmoid", "identity", "--losses", "cross_entropy", "--depths", "2", "--batch-norm"]
    assert main(["gradcheck", *args, "--out", str(tmp_path)]) == 0
    _, rows = read_rows(tmp_path)
    with_bn = [r for r in rows if r["batch_norm"] == "True" and r["activation"] == "sigmoid"]
    assert [r["parameter"] for r in with_bn] == ["layers.0.weight", "layers.1.weight", "layers.2.weight",
                                                 "layers.2.bias", "norms.0.weight", "norms.0.bias",
                                                 "norms.1.weight", "norms.1.bias"]
    assert len([r for r in rows if r["batch_norm"] == "False"]) == 2 * 6
    # identity + batch norm: norms.0.bias is cancelled by the next layer's mean subtraction (gradient exactly 0),
    # judged against the network's largest gradient instead of its own rounding noise
    assert {r["passed"] for r in rows} == {"True"}
    assert "28/28 rows passed" in capsys.readouterr().out


@pytest.mark.parametrize("batch", [2, 3])
def test_batch_norm_grid_passes_with_the_smallest_batches(tmp_path, capsys, batch):
    """With 2 rows a feature's batch variance can be ≈ batch norm's ε (1e-5), where the finite difference's step is
    too coarse (layers.0.weight: rel err 4e-4 for exact gradients); the batch is redrawn until it is not."""
    argv = ["gradcheck", "--activations", "relu", "sigmoid", "identity", "--depths", "2", "3", "--batch-norm",
            "--batch", str(batch), "--out", str(tmp_path)]
    assert main(argv) == 0, capsys.readouterr().out
    _, rows = read_rows(tmp_path)
    assert {r["passed"] for r in rows} == {"True"} and len(rows) == 3 * 2 * (6 + 8 + 8 + 11)
    assert max(float(r["max_rel_err_fd"]) for r in rows) < 1e-6


def test_no_batch_with_batch_norm_variances_above_the_margin_is_an_error_not_a_false_failure(tmp_path, capsys):
    """With 2 rows, depth 6 and this seed, a sixth-layer feature's variance stays below 5e-5 (at most 1.8e-5) for
    every batch: batch norm maps each feature of 2 rows to about ±1, so few inputs ever reach the later layers."""
    argv = ["gradcheck", "--activations", "sigmoid", "--losses", "mse", "--depths", "6", "--batch-norm", "--batch",
            "2", "--seed", "3", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "no batch in 1000 tries gives every batch-normalised feature of the sigmoid network a batch variance " \
           "of at least 5e-05" in capsys.readouterr().err
    assert not (tmp_path / "gradcheck.csv").exists()


def layer_file(tmp_path, inputs_body: str, backward_W: str = "dz.T @ x") -> str:
    """examples/affine_relu.py with another ``affine_relu_inputs`` body and W gradient."""
    text = LAYER.read_text().replace('"W": dz.T @ x', f'"W": {backward_W}')
    start = text.index("def affine_relu_inputs(rng):")
    path = tmp_path / "my_layer.py"
    path.write_text(text[:start] + "def affine_relu_inputs(rng):\n" + textwrap.indent(inputs_body, "    ") + "\n")
    return f"{path}:affine_relu"


def test_a_float32_layer_gradient_10_percent_off_fails_the_command(tmp_path, capsys):
    spec = layer_file(tmp_path, 'return {"x": rng.standard_normal((4, 5)), "W": rng.standard_normal((3, 5)), '
                                '"b": rng.standard_normal(3)}', backward_W="0.9 * (dz.T @ x)")
    assert main(["gradcheck", "--layer", spec, "--dtype", "float32", "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "layer 'affine_relu': FAILED" in out and "gradient 'W' wrong at 14 element(s)" in out


@pytest.mark.parametrize("body, message", [
    ('raise ValueError("no rng\\nhere")', "affine_relu_inputs(rng) raised ValueError: no rng here"),
    ("return [rng.standard_normal(3)]", "affine_relu_inputs(rng) returned a list; return a dict"),
    ('return {"x": [[1.0] * 5] * 4, "W": [[1.0] * 5] * 3, "b": [0.5] * 3}',
     "affine_relu_inputs(rng) returned a list for input 'x'; return NumPy arrays"),
    ('return {"x": rng.integers(0, 3, (4, 5)), "W": rng.integers(0, 3, (3, 5)), "b": np.zeros(3, dtype=int)}',
     "affine_relu_inputs(rng) returned no floating-point array (x int"),
])
def test_broken_example_inputs_are_a_one_line_error_naming_file_and_function(tmp_path, capsys, body, message):
    spec = layer_file(tmp_path, body)
    assert main(["gradcheck", "--layer", spec, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: layer {spec}: {message}") and err.count("\n") == 1
