"""Study specs: the loader's one-line errors (key and line), overrides, [quick], plug-ins, fresh seeds, the
built-in specs; and the plan: arms, groups, tuning on the mean of the tuning seeds."""
import sys
import types

import pandas as pd
import pytest
from pathlib import Path

from experiments import spec as spec_module
from experiments.commands.studies import BUILTIN, builtin_spec
from experiments.plan import choose, make_arms, tune_configs
from experiments.spec import SpecError, load_spec, parse_spec
from manual.activations import ACTIVATIONS

GOOD = """\
name = "t"
compare = "activation"
seeds = 3

[base]
optimizer = "SGD"
momentum = 0.9
epochs = 2

[grid]
activation = ["relu", "tanh"]
layer_sizes = [[784, 32, 10], [784, 16, 16, 10]]

[tune]
lr = [0.01, 0.1]
seeds = 2
"""


def test_a_good_spec_gives_arms_groups_and_fresh_seeds():
    spec = parse_spec(GOOD, "good.toml")
    assert spec.tune_seeds == (0, 1) and spec.seeds == (2, 3, 4)  # final seeds never tuning seeds
    arms = make_arms(spec)
    assert [(a.group, a.name) for a in arms] == [("1 hidden (784-32-10)", "relu"), ("1 hidden (784-32-10)", "tanh"),
                                                 ("2 hidden (784-16-16-10)", "relu"),
                                                 ("2 hidden (784-16-16-10)", "tanh")]
    configs = tune_configs(arms[0], spec.tune_seeds)
    assert [(c.lr, c.seed) for c in configs] == [(0.01, 0), (0.01, 1), (0.1, 0), (0.1, 1)]
    assert configs[0].momentum == 0.9 and configs[0].layer_sizes == (784, 32, 10)


def test_seed_lists_must_be_disjoint_from_the_tuning_seeds():
    spec = parse_spec(GOOD.replace("seeds = 3", "seeds = [5, 7]"), "s.toml")
    assert spec.seeds == (5, 7)
    with pytest.raises(SpecError, match=r"s\.toml line 3: seeds: seeds \[1\] are also tuning seeds"):
        parse_spec(GOOD.replace("seeds = 3", "seeds = [1, 7]"), "s.toml")


def test_choice_is_on_the_mean_of_the_tuning_seeds_and_diverged_never_wins():
    arm = make_arms(parse_spec(GOOD))[0]
    keys = {(c.lr, c.seed): c.key() for c in tune_configs(arm, (0, 1))}

    def runs(acc):  # (lr, seed) → accuracy, NaN = diverged
        return pd.DataFrame({"key": [keys[k] for k in acc], "final_val_acc": list(acc.values()),
                             "status": ["diverged" if v != v else "ok" for v in acc.values()]})

    # seed 0 alone would pick 0.01 (its lucky 0.95); the mean over seeds 0 and 1 picks 0.1
    assert choose(runs({(0.01, 0): 0.95, (0.01, 1): 0.60, (0.1, 0): 0.90, (0.1, 1): 0.90}), arm, (0, 1)) == {"lr": 0.1}
    # a candidate with a diverged seed never wins, however good its other seed
    assert choose(runs({(0.01, 0): 0.80, (0.01, 1): 0.80, (0.1, 0): 0.99, (0.1, 1): float("nan")}), arm,
                  (0, 1)) == {"lr": 0.01}
    # ties go to the first candidate listed
    assert choose(runs({(0.01, 0): 0.9, (0.01, 1): 0.9, (0.1, 0): 0.9, (0.1, 1): 0.9}), arm, (0, 1)) == {"lr": 0.01}


BAD = [  # (what is changed in GOOD, the error's text)
    (("seeds = 3", "seeds = 3\ncolour = 1"), r"t\.toml line 4: colour: unknown key; valid top-level keys"),
    (("epochs = 2", "epochs = 2\nepoch = 3"), r"line 9: base\.epoch: unknown key; valid keys are RunConfig fields"),
    (("epochs = 2", 'epochs = "ten"'), r"line 8: base\.epochs: expected an integer, got 'ten'"),
    (("momentum = 0.9", "momentum = true"), r"line 7: base\.momentum: expected a number, got True"),
    (('activation = ["relu", "tanh"]', 'activation = "relu"'), r"line 11: grid\.activation: expected a non-empty list"),
    (('activation = ["relu", "tanh"]', "activation = []"), r"line 11: grid\.activation: expected a non-empty list"),
    (('activation = ["relu", "tanh"]', 'activation = ["relu", "mish2"]'),
     r"line 11: grid\.activation: unknown activation 'mish2'"),
    (('optimizer = "SGD"', 'optimizer = "Adamm"'), r"line 6: base\.optimizer: unknown optimizer 'Adamm'"),
    (('optimizer = "SGD"', 'optimizer = "Adam"'), r"line (6|7): base\.(optimizer|momentum): Adam takes no momentum"),
    (("layer_sizes = [[784, 32, 10], [784, 16, 16, 10]]", "layer_sizes = [[784, 32, 9]]"),
     r"line 12: grid\.layer_sizes: MNIST needs 784 inputs and 10 outputs"),
    (("layer_sizes = [[784, 32, 10], [784, 16, 16, 10]]", "layer_sizes = [784, 32, 10]"),
     r"line 12: grid\.layer_sizes: expected a list of layer sizes"),
    (('compare = "activation"', 'compare = "init"'), r"line 2: compare: expected one of the grid keys"),
    (('compare = "activation"\n', ""), r"compare: missing: say which grid key"),
    (("seeds = 3", "seeds = 0"), r"line 3: seeds: expected at least 1 seed"),
    (("seeds = 3", "seeds = 2.5"), r"line 3: seeds: expected a number of seeds or a non-empty list"),
    (("lr = [0.01, 0.1]", "lr = []"), r"line 15: tune\.lr: expected a non-empty list of candidates"),
    (("lr = [0.01, 0.1]", "lr = [-1.0]"), r"line 15: tune\.lr: lr must be a finite number > 0, got -1.0"),
    (("epochs = 2", "epochs = 2\nseed = 4"), r"line 9: base\.seed: seeds are set by the spec's top-level `seeds`"),
    (('name = "t"', 'name = "a/b"'), r"line 1: name: expected a name made of letters"),
    (("[tune]", "[tune\n"), r"t\.toml: not valid TOML: .*line 14"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m.split(":")[1].strip() + str(i) for i, (_, m) in
                                                      enumerate(BAD)])
def test_every_bad_spec_is_one_line_naming_the_key_and_line(change, message):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(SpecError, match=message) as err:
        parse_spec(text, "t.toml")
    assert "\n" not in str(err.value)
    assert isinstance(err.value, spec_module.UserError)


def test_an_empty_grid_is_an_error():
    text = GOOD.split("[grid]")[0] + "[grid]\n"
    with pytest.raises(SpecError, match=r"line 10: grid: the grid is empty"):
        parse_spec(text, "t.toml")


def test_a_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read the study spec"):
        load_spec(tmp_path / "nope.toml")


@pytest.mark.parametrize("assignment, message", [
    ("epochs", r"--set epochs: expected key=value"),
    ("colour=3", r"--set colour: unknown key"),
    ("activation=relu", r"--set activation: activation is a grid axis here; .*--set grid\.activation"),
    ("base.epochs=ten", r"\(--set base\.epochs\): base\.epochs: expected an integer, got 'ten'"),
    ("grid.activation=[\"relu\", \"nope\"]", r"\(--set grid\.activation\): grid\.activation: unknown activation"),
    ("quick.seeds=2", r"--set quick\.seeds: unknown key"),
])
def test_bad_overrides_are_one_line_errors_that_say_so(assignment, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(GOOD, "t.toml", [assignment])


def test_overrides_and_quick_change_the_spec():
    spec = parse_spec(GOOD, "t.toml", ["seeds=[10, 11]", "epochs=1", "tune.lr=[0.3]", 'grid.activation=["gelu"]'])
    assert spec.seeds == (10, 11) and spec.base["epochs"] == 1 and spec.tune == {"lr": (0.3,)}
    assert [a.name for a in make_arms(spec)] == ["gelu", "gelu"]
    quick = GOOD + '\n[quick]\nseeds = 1\n"base.epochs" = 1\nbase.train_subset = 500\n'
    spec = parse_spec(quick, "q.toml", quick=True)
    assert spec.seeds == (2,) and spec.base["epochs"] == 1 and spec.base["train_subset"] == 500
    with pytest.raises(SpecError, match=r"q\.toml line 20 \(\[quick\] base\.epochs\): base\.epochs: expected an int"):
        parse_spec(quick.replace('"base.epochs" = 1', '"base.epochs" = "x"'), "q.toml", quick=True)
    with pytest.raises(SpecError, match=r"--quick needs a \[quick\] table"):
        parse_spec(GOOD, "t.toml", quick=True)


BUNDLES = """\
name = "opt"
seeds = 5
[tune]
seeds = 1
lr = [0.1]
[[grid.optimizer]]
label = "SGD"
optimizer = "SGD"
[[grid.optimizer]]
label = "Nesterov"
optimizer = "SGD"
momentum = 0.9
nesterov = true
tune.lr = [0.01, 0.03]
"""


def test_bundles_name_arms_made_of_several_fields_with_their_own_tuning():
    spec = parse_spec(BUNDLES, "b.toml")
    assert spec.compare == "optimizer" and spec.seeds == (1, 2, 3, 4, 5)
    sgd, nesterov = make_arms(spec)
    assert (sgd.name, nesterov.name) == ("SGD", "Nesterov") and sgd.group == "opt"
    assert sgd.candidates == ({"lr": 0.1},) and nesterov.candidates == ({"lr": 0.01}, {"lr": 0.03})
    config = nesterov.config({"lr": 0.01}, 1)
    assert config.nesterov and config.momentum == 0.9 and config.optimizer == "SGD"
    assert [a.name for a in make_arms(parse_spec(BUNDLES, "b.toml", ['grid.optimizer=["Nesterov"]']))] == ["Nesterov"]
    overridden = make_arms(parse_spec(BUNDLES, "b.toml", ["tune.lr=[0.5]"]))  # for every arm, bundles included
    assert [a.candidates for a in overridden] == [({"lr": 0.5},)] * 2
    with pytest.raises(SpecError, match=r"no optimizer labelled 'Adam'"):
        parse_spec(BUNDLES, "b.toml", ['grid.optimizer=["Adam"]'])
    with pytest.raises(SpecError, match=r"b\.toml line 12: grid\.optimizer\[1\]\.momentum: expected a number"):
        parse_spec(BUNDLES.replace("momentum = 0.9", 'momentum = "high"'), "b.toml")
    with pytest.raises(SpecError, match=r"line 9: grid\.optimizer\[1\]: a table in a grid list needs a label"):
        parse_spec(BUNDLES.replace('label = "Nesterov"\n', ""), "b.toml")


def test_the_plugins_key_loads_plugins_before_the_arms_are_checked(clean_registries):
    mish = str(Path(__file__).resolve().parents[2] / "examples" / "mish.py")
    text = GOOD.replace('name = "t"', f'name = "t"\nplugins = ["{mish}"]').replace('"tanh"]', '"mish"]')
    spec = parse_spec(text, "p.toml")  # the real loader: examples/mish.py registers "mish"
    assert spec.plugins == (mish,) and "mish" in ACTIVATIONS
    assert [a.name for a in make_arms(spec)][:2] == ["relu", "mish"]
    with pytest.raises(SpecError, match=r"line 2: plugins: expected a list of plug-in specs"):
        parse_spec(text.replace(f'plugins = ["{mish}"]', 'plugins = "x.py"'), "p.toml")
    with pytest.raises(Exception, match="no/such/plugin.py"):
        parse_spec(text.replace(mish, "no/such/plugin.py"), "p.toml")


@pytest.mark.parametrize("name", BUILTIN)
def test_the_builtin_specs_are_valid_and_strong_enough(name):
    full, quick = load_spec(builtin_spec(name)), load_spec(builtin_spec(name), quick=True)
    assert full.name == name and len(full.seeds) >= 5 and not set(full.seeds) & set(full.tune_seeds)
    runs = lambda s: sum(len(tune_configs(a, s.tune_seeds)) + len(s.seeds) for a in make_arms(s))  # noqa: E731
    assert runs(quick) < runs(full)
    if full.tune_seeds:
        assert len(full.tune_seeds) >= 2 and full.base["epochs"] >= 10


def test_a_plugin_file_is_found_beside_the_spec_whatever_the_current_folder(tmp_path, monkeypatch,
                                                                             clean_registries):
    import shutil

    shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "mish.py", tmp_path / "my_mish.py")
    (tmp_path / "s.toml").write_text(GOOD.replace('name = "t"', 'name = "t"\nplugins = ["my_mish.py"]')
                                     .replace('"tanh"]', '"mish"]'))
    monkeypatch.chdir(Path(__file__).resolve().parent)  # not the spec's folder
    spec = load_spec(tmp_path / "s.toml")
    assert spec.plugins == (str(tmp_path / "my_mish.py"),)  # absolute: every worker finds the same file
    assert "mish" in [a.name for a in make_arms(spec)]
