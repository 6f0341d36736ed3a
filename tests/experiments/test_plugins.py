"""Plug-ins: your own activations and losses work wherever a built-in does, and a broken one is a one-line error."""
import dataclasses
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import manual
import torch_ref
from experiments.cli import main
from experiments.gradcheck import autograd_loss_and_grads, max_rel_err, random_batch, torch_twin
from experiments.plugins import PluginError, load_layer, load_plugins
from manual.activations import ACTIVATIONS, Activation, register, unregister
from manual.losses import LOSSES, Loss, LossResult, get_loss, one_hot, register_loss

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("clean_registries")]  # tests/conftest.py

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MISH, SOFTSIGN, LAYER = str(EXAMPLES / "mish.py"), str(EXAMPLES / "softsign.py"), str(EXAMPLES / "affine_relu.py")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# ------------------------------------------------------------------ the registry
def test_register_makes_a_name_usable_and_measures_max_slope():
    act = Activation("tanh2", lambda z: np.tanh(2 * z), lambda z: 2 * (1 - np.tanh(2 * z) ** 2))
    assert act.max_slope == pytest.approx(2.0, rel=1e-9)  # measured: sup |f'| at z = 0
    assert register(act) is act and register(act) is act  # the same object twice: a no-op
    net = manual.MLP([3, 4, 2], activation="tanh2")
    assert net.activation is act
    unregister("tanh2")
    with pytest.raises(ValueError, match="unknown activation 'tanh2'"):
        manual.MLP([3, 4, 2], activation="tanh2")


def test_builtins_cannot_be_replaced_and_names_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="clashes with the built-in"):
        register(Activation("relu", np.tanh, lambda z: 1 - np.tanh(z) ** 2), override=True)
    register(Activation("t", np.tanh, lambda z: 1 - np.tanh(z) ** 2))
    other = Activation("t", np.sin, np.cos)
    with pytest.raises(ValueError, match="already registered"):
        register(other)
    assert register(other, override=True) is ACTIVATIONS["t"]


@pytest.mark.parametrize("df, message", [
    (lambda z: np.sum(z), r"df\(z\) returned shape \(\) for z of shape \(3, 2, 3\)"),
    (lambda z: np.log(z), r"df\(z\) is nan at z = -6"),
    (lambda z: np.ones(z.shape), r"df\(z\) returned float64 for float32 z"),
    (lambda z: z.foo, r"df\(z\) raised AttributeError"),
])
def test_register_refuses_a_df_that_breaks_the_contract(df, message):
    with pytest.raises(ValueError, match=message):
        register(Activation("bad", np.tanh, df))
    assert "bad" not in ACTIVATIONS


def test_the_builtins_keep_their_numbers():
    assert [a.max_slope for a in manual.activations.BUILTINS.values()] == [0.25, 1, 1, 1, 1, 1.0998, 1.1289, 1, 1]
    assert manual.activations.BUILTINS["relu"].kinks == (0.0,)


# ------------------------------------------------------------------ loading plug-ins
def test_load_plugins_registers_every_activation_in_a_file_once():
    assert load_plugins([MISH, SOFTSIGN]) == ["mish", "softsign"]
    first = ACTIVATIONS["mish"]
    assert load_plugins([MISH]) == ["mish"] and ACTIVATIONS["mish"] is first  # idempotent
    assert ACTIVATIONS["softsign"].saturated is not None


def test_module_attr_specs(tmp_path, monkeypatch):
    write(tmp_path, "my_acts.py", """
        import numpy as np
        from manual.activations import Activation
        one = Activation("sq1", lambda z: z * z, lambda z: 2 * z)
        two = Activation("sq2", lambda z: z * z, lambda z: 2 * z)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugins(["my_acts:two"]) == ["sq2"] and "sq1" not in ACTIVATIONS
    with pytest.raises(PluginError, match="my_acts defines no 'three'"):
        load_plugins(["my_acts:three"])


@pytest.mark.parametrize("text, message", [
    (None, r"plugin .*nope\.py: no such file"),
    ("x = (\n", r"plugin .*p\.py: syntax error at line 1: '\(' was never closed"),
    ("import numpy as np\nfrom manual.activations import Activation\nrelu = Activation('relu', np.tanh, np.tanh)\n",
     r"plugin .*p\.py: activation 'relu' clashes with the built-in of that name"),
    ("import numpy as np\nfrom manual.activations import Activation\nq = Activation('q', np.tanh, np.sum)\n",
     r"plugin .*p\.py: activation 'q': df\(z\) returned shape \(\)"),
    ("import numpy as np\nfrom manual.activations import Activation\nq = Activation('q', np.tanh, np.log)\n",
     r"plugin .*p\.py: activation 'q': df\(z\) is nan"),
    ("raise RuntimeError('oops')\n", r"plugin .*p\.py: importing it raised RuntimeError \(line 1\): oops"),
    ("x = 1\n", r"plugin .*p\.py: defines no Activation or Loss"),
])
def test_a_broken_plugin_is_a_one_line_error_naming_the_file(tmp_path, capsys, text, message):
    path = str(tmp_path / "nope.py") if text is None else write(tmp_path, "p.py", text)
    with pytest.raises(PluginError, match=message):
        load_plugins([path])
    assert main(["train", "--plugin", path, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: plugin ") and err.count("\n") == 1 and "Traceback" not in err


TORCH_FN_FILE = """
    import numpy as np
    import torch
    from manual.activations import Activation, register
    register(Activation("first", np.tanh, lambda z: 1 - np.tanh(z) ** 2, torch_fn=torch.tanh))
    broken = Activation("broken", np.tanh, lambda z: 1 - np.tanh(z) ** 2, torch_fn=lambda z: {body})
"""


@pytest.mark.parametrize("body, message", [
    ("torch.tanh(z).sum()", r"torch_fn\(z\) returned shape \(\) for z of shape \(3, 2, 3\)"),
    ("torch.tanh(z.reshape(-1))", r"torch_fn\(z\) returned shape \(18,\) for z of shape \(3, 2, 3\)"),
    ("torch.tanh(z).float()", r"torch_fn\(z\) returned torch.float32 for torch.float64 z"),
    ("np.tanh(z.detach().numpy())", r"torch_fn\(z\) returned a ndarray, not a tensor"),
    ("z.foo", r"torch_fn\(z\) raised AttributeError: 'Tensor' object has no attribute 'foo'"),
    ("torch.log(z)", r"torch_fn\(z\) is nan at z = -30"),
    ("torch.sqrt(z.abs())", r"autograd's derivative of torch_fn\(z\) is nan at z = 0"),
    ("torch.tanh(z).detach()", r"autograd cannot differentiate torch_fn\(z\) \(RuntimeError: element 0"),
])
def test_a_broken_torch_fn_is_refused_when_the_plugin_is_loaded(tmp_path, capsys, body, message):
    path = write(tmp_path, "p.py", TORCH_FN_FILE.format(body=body))
    with pytest.raises(PluginError, match=rf"^plugin .*p\.py: activation 'broken': {message}"):
        load_plugins([path])
    assert "broken" not in ACTIVATIONS and "first" not in ACTIVATIONS  # nothing of the plug-in stays registered
    for argv in (["gradcheck", "--plugin", path, "--activations", "broken", "--depths", "1", "--out",
                  str(tmp_path / "out")],
                 ["train", "--backend", "torch", "--plugin", path, "--activation", "broken", "--epochs", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: plugin {path}: activation 'broken': ")
        assert err.count("\n") == 1 and "internal error" not in err


def test_a_package_whose_own_import_fails_is_not_called_missing(tmp_path, monkeypatch):
    (tmp_path / "needs_dep").mkdir()
    (tmp_path / "needs_dep" / "__init__.py").write_text("import dep_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as error:
        load_plugins(["needs_dep"])
    assert str(error.value) == ("plugin needs_dep: the plug-in's import of 'dep_that_is_not_installed' failed (No "
                                "module named 'dep_that_is_not_installed'); install 'dep_that_is_not_installed' or "
                                "fix that import in needs_dep")
    for spec, missing in (("no_such_plugin_pkg", "no_such_plugin_pkg"), ("no_such_plugin_pkg.acts:mish",
                                                                         "no_such_plugin_pkg")):
        with pytest.raises(PluginError) as error:
            load_plugins([spec])
        assert str(error.value) == (f"plugin {spec}: no module named {missing!r} (give a FILE.py or an importable "
                                    "MODULE[:ATTR])")


def test_a_layer_file_needs_all_three_functions(tmp_path):
    assert load_layer(f"{LAYER}:affine_relu").name == "affine_relu"
    with pytest.raises(PluginError, match="defines no affine_forward, affine_backward, affine_inputs"):
        load_layer(f"{LAYER}:affine")
    with pytest.raises(PluginError, match="name the layer after a colon"):
        load_layer(LAYER)


# ------------------------------------------------------------------ torch_ref and losses
def test_torch_ref_wraps_torch_fn_and_refuses_a_plugin_without_one():
    load_plugins([MISH])
    net = manual.MLP([5, 4, 3], activation="mish", loss="cross_entropy", init="pytorch", seed=1)
    X, y = random_batch(net, 6, 0)
    loss, grads = net.loss_and_grads(X, y)
    auto_loss, auto = autograd_loss_and_grads(torch_twin(net), X, y)
    assert auto_loss == pytest.approx(loss, rel=1e-14)
    assert max(max_rel_err(grads[k], auto[k]) for k in grads) < 1e-10
    assert "PluginActivation(mish)" in repr(torch_twin(net))  # a printed model names its plug-in
    register(Activation("numpy_only", np.tanh, lambda z: 1 - np.tanh(z) ** 2))
    with pytest.raises(ValueError, match="activation 'numpy_only' has no torch_fn"):
        torch_ref.MLP([5, 4, 3], activation="numpy_only")


def squared_hinge(z, y, output, a=None):
    """Mean over the batch of Σ_k max(0, 1 − s_k·z_k)², s = +1 for the label, −1 otherwise (identity outputs)."""
    s = 2 * one_hot(y, z.shape[1], z.dtype) - 1
    margin = np.maximum(0, 1 - s * z)
    return LossResult(float(np.sum(margin**2)) / len(z), -2 * s * margin / len(z))


def squared_hinge_torch(out, y):
    s = 2 * torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype) - 1
    return torch.clamp(1 - s * out, min=0).pow(2).sum() / out.shape[0]


def test_a_loss_plugin_works_in_both_networks():
    register_loss(Loss("squared_hinge", squared_hinge, squared_hinge_torch))
    assert get_loss("squared_hinge").output_activation == "identity"
    assert manual.losses.DEFAULT_OUTPUT_ACTIVATION["squared_hinge"] == "identity"
    net = manual.MLP([5, 4, 3], activation="tanh", loss="squared_hinge", init="pytorch", seed=2)
    X, y = random_batch(net, 7, 0)
    loss, grads = net.loss_and_grads(X, y)
    auto_loss, auto = autograd_loss_and_grads(torch_twin(net), X, y)
    assert auto_loss == pytest.approx(loss, rel=1e-14)
    assert max(max_rel_err(grads[k], auto[k]) for k in grads) < 1e-10
    with pytest.raises(ValueError, match="clashes with the built-in"):
        register_loss(Loss("mse", squared_hinge))
    register_loss(Loss("hinge_numpy", squared_hinge))
    with pytest.raises(ValueError, match="loss 'hinge_numpy' has no torch_fn"):
        torch_ref.MLP([5, 4, 3], loss="hinge_numpy")


def broken_hinge(break_it):
    """squared_hinge with one thing wrong, as ``break_it(value, dz)`` returns it."""
    def fn(z, y, output, a=None):
        return LossResult(*break_it(*squared_hinge(z, y, output, a)))
    return fn


def nan_at_1_2(value, dz):
    dz = dz.copy()
    dz[1, 2] = np.nan
    return value, dz


@pytest.mark.parametrize("break_it, message", [
    (lambda value, dz: (np.inf, dz), "loss 'bad': fn must return a finite scalar loss first, got inf"),
    (lambda value, dz: (np.ones(2), dz), "loss 'bad': fn must return a finite scalar loss first, got array([1., 1.])"),
    (lambda value, dz: (value, dz[:, :2]), "loss 'bad': fn's gradient dz must have z's shape (3, 4), got shape (3, 2)"),
    (lambda value, dz: (value, dz.T), "loss 'bad': fn's gradient dz must have z's shape (3, 4), got shape (4, 3)"),
    (nan_at_1_2, "loss 'bad': fn's gradient dz is nan at index (1, 2); it must be finite"),
])
def test_a_broken_loss_plugin_is_refused_saying_what_is_wrong(break_it, message):
    with pytest.raises(ValueError) as error:
        register_loss(Loss("bad", broken_hinge(break_it)))
    assert str(error.value) == message
    assert "bad" not in LOSSES


# ------------------------------------------------------------------ the commands
def test_gradcheck_of_a_plugin_checks_the_function_and_its_networks(tmp_path, capsys):
    argv = ["gradcheck", "--plugin", MISH, "--activations", "mish", "--depths", "1", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "activation 'mish': passed" in out and "20/20 rows passed" in out
    assert (tmp_path / "functions.csv").read_text().splitlines()[1].startswith("mish,activation,True,")


def test_gradcheck_of_a_wrong_plugin_prints_the_regions_and_exits_1(tmp_path, capsys):
    path = write(tmp_path, "wrong.py", '''
        import numpy as np
        import torch
        from manual.activations import Activation

        def d_cube(z):
            return np.where(z < 0, -3 * z * z, 3 * z * z)  # wrong sign for z < 0

        cube = Activation("cube", lambda z: z**3 / 100, lambda z: d_cube(z) / 100, torch_fn=lambda z: z**3 / 100)
    ''')
    assert main(["gradcheck", "--plugin", path, "--activations", "cube", "--depths", "1", "--out",
                 str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "activation 'cube': FAILED" in out and "df wrong for z ≤ -" in out
    failures = (tmp_path / "out" / "failures.csv").read_text().splitlines()
    assert failures[0] == "function,check,z,input,index,analytic,numeric,abs_err,rel_err" and len(failures) > 100


def test_gradcheck_of_a_layer(tmp_path, capsys):
    assert main(["gradcheck", "--layer", f"{LAYER}:affine_relu", "--out", str(tmp_path)]) == 0
    assert "layer 'affine_relu': passed" in capsys.readouterr().out
    wrong = write(tmp_path, "wrong_layer.py", f'''
        import importlib.util
        spec = importlib.util.spec_from_file_location("ar", {LAYER!r})
        ar = importlib.util.module_from_spec(spec); spec.loader.exec_module(ar)
        affine_relu_forward, affine_relu_inputs = ar.affine_relu_forward, ar.affine_relu_inputs

        def affine_relu_backward(dout, cache):
            grads = ar.affine_relu_backward(dout, cache)
            grads["W"] = 2 * grads["W"]
            return grads
    ''')
    assert main(["gradcheck", "--layer", f"{wrong}:affine_relu", "--dtype", "float32", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "gradient 'W' wrong at" in out and "float32: step" in out


def test_every_command_takes_plugin(capsys):
    from experiments.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        assert "--plugin" in parser.format_help(), name


def test_train_accepts_a_plugin_activation_name(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--activation", "mish", "--help"])  # without the plug-in: not a valid choice
    assert "invalid choice: 'mish'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--plugin", MISH, "--activation", "mish", "--help"])
    assert exit_info.value.code == 0 and "mish" in capsys.readouterr().out


@pytest.mark.usefixtures("one_torch_thread")
def test_a_plugin_activation_trains_to_the_same_curves_on_both_backends(mnist):
    from experiments.runs.training import RunConfig, train

    load_plugins([MISH])
    data = mnist(500)
    config = RunConfig(layer_sizes=(784, 16, 10), activation="mish", init="xavier", optimizer="SGD", momentum=0.9,
                       lr=0.05, batch_size=50, epochs=2, dtype="float64", train_subset=500, seed=1)
    runs = {b: train(dataclasses.replace(config, backend=b), data, "cpu") for b in ("manual", "torch")}
    assert runs["manual"].run["status"] == "ok" and runs["manual"].run["activation"] == "mish"
    for a, b in zip(runs["manual"].epochs, runs["torch"].epochs):
        for metric in ("train_loss", "val_loss", "val_acc"):
            assert a[metric] == pytest.approx(b[metric], rel=1e-10, abs=1e-12), metric
    assert runs["manual"].epochs[-1]["train_loss"] < runs["manual"].epochs[0]["train_loss"]
    assert runs["manual"].run["test_acc"] == runs["torch"].run["test_acc"]


STUDY_SPEC = """\
name = "with-mish"
description = "ReLU and GELU against Mish, a plug-in."
plugins = [{mish!r}]
compare = "activation"
seeds = 2

[base]
layer_sizes = [784, 16, 10]
optimizer = "SGD"
momentum = 0.9
lr = 0.05
epochs = 1
train_subset = 500

[grid]
activation = ["relu", "gelu", "mish"]
"""


@pytest.mark.usefixtures("one_torch_thread")
def test_a_study_with_a_plugin_activation_writes_it_like_a_builtin(tmp_path):
    import pandas as pd

    spec = tmp_path / "with-mish.toml"
    spec.write_text(STUDY_SPEC.format(mish=MISH))
    with np.errstate(all="ignore"):
        assert main(["study", str(spec), "--out", str(tmp_path / "study"), "--workers", "1", "--no-progress",
                     "--device", "cpu"]) == 0
    runs = pd.read_csv(tmp_path / "study" / "runs.csv")
    assert sorted(runs["activation"]) == ["gelu", "gelu", "mish", "mish", "relu", "relu"] and set(runs["status"]) == {"ok"}
    comparisons = pd.read_csv(tmp_path / "study" / "comparisons.csv")
    assert {frozenset(pair) for pair in zip(comparisons["arm_a"], comparisons["arm_b"])} == {
        frozenset(pair) for pair in (("relu", "gelu"), ("relu", "mish"), ("gelu", "mish"))}
    report = (tmp_path / "study" / "REPORT.md").read_text()
    sections = dict(part.split("\n", 1) for part in report.split("\n## ")[1:])  # title → text
    named = {arm: [title for title, text in sections.items() if arm in text] for arm in ("gelu", "mish")}
    assert named["mish"] == named["gelu"] and len(named["mish"]) >= 4  # findings, accuracy, pairs, layers, …
    table_rows = {arm: sum(line.startswith("|") and f"| {arm} |" in line for line in report.splitlines())
                  for arm in ("gelu", "mish")}
    assert table_rows["mish"] == table_rows["gelu"] >= 3


def test_max_slope_is_measured_up_to_the_end_of_the_range_and_no_further():
    from manual.activations import measure_max_slope
    assert measure_max_slope(lambda z: z + 100) == 150.0  # |df| grows to z = 50 exactly: 150, not 150.001
    assert measure_max_slope(lambda z: 2 * np.exp(-z * z)) == 2.0  # the peak inside the range, at z = 0


def test_max_slope_of_a_df_with_the_wrong_shape_is_nan():
    from manual.activations import measure_max_slope
    assert np.isnan(measure_max_slope(lambda z: np.ones(2001)))  # right only on the fine grid's 2,001 points
    assert np.isnan(measure_max_slope(lambda z: np.ones(3)))
    assert np.isnan(measure_max_slope(lambda z: np.full_like(z, np.nan)))
