"""The command line: every command explains itself, `train` prints and records, `all` runs every step."""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.commands import run_all
from experiments.cli import COMMANDS, build_parser, main

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py


@pytest.mark.parametrize("command", ["train", "study", "activations", "optimizers", "backends", "report", "all"])
def test_every_command_has_a_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"python -m experiments {command}" in out and len(out) > 300
    assert command in COMMANDS


def test_train_prints_epochs_and_records_the_run(tmp_path, capsys):
    code = main(["train", "--train-subset", "1000", "--epochs", "2", "--layer-sizes", "784", "32", "10",
                 "--optimizer", "SGD", "--lr", "0.1", "--momentum", "0.9", "--nesterov", "--schedule",
                 "CosineAnnealingLR", "--activation", "tanh", "--init", "xavier", "--seed", "4", "--device", "cpu",
                 "--out", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "val_acc" in out and "final test accuracy" in out
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 1 and runs.loc[0, "schedule"] == "CosineAnnealingLR" and runs.loc[0, "seed"] == 4
    assert runs.loc[0, "test_acc"] > 0.7
    assert len(pd.read_csv(tmp_path / "epochs.csv")) == 2


def test_train_rejects_an_invalid_config(capsys):
    assert main(["train", "--optimizer", "Adam", "--momentum", "0.9", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: Adam takes no momentum (only SGD and RMSprop do)\n" and captured.out == ""


def test_optimizers_command_quick_grid_with_overrides(tmp_path):
    with np.errstate(all="ignore"):
        code = main(["optimizers", "--quick", "--optimizers", "SGD", "Adam", "--train-subset", "500", "--epochs",
                     "1", "--seeds", "2", "--lrs", "0.001", "0.01", "--out", str(tmp_path), "--device", "cpu",
                     "--no-progress"])
    assert code == 0
    plan = pd.read_csv(tmp_path / "plan.csv")
    # quick: 1 tuning seed; --lrs gives both optimizers the same 2 candidates; final seeds 1 and 2 are fresh
    assert (plan["phase"] == "tune").sum() == 2 * 2 and (plan["phase"] == "seeds").sum() == 2 * 2
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == 2 * 2 + 2 * 2 and set(runs["epochs"]) == {1} and set(runs["seed"]) == {0, 1, 2}
    assert (tmp_path / "REPORT.md").exists() and (tmp_path / "tuning.png").exists()


def test_all_runs_every_step_with_the_shared_options():
    args = argparse.Namespace(results="out", device="cpu", threads=1, data_dir="d", quick=True, force=False,
                              no_progress=True)
    steps = run_all.steps(args)
    assert [s[0] for s in steps] == ["gradcheck", "activations", "optimizers", "backends", "study", "study", "study",
                                     "report"]
    # every built-in spec runs, those without a command through `study`, alphabetically
    assert [Path(s[1]).name for s in steps[4:7]] == ["cnn.toml", "depth.toml", "recurrent.toml"]
    parser = build_parser()
    for argv in steps:
        parsed = parser.parse_args(argv)  # every step is a valid command line
        assert callable(parsed.run)
    assert all("--quick" in s for s in steps[1:4])
    assert steps[1][steps[1].index("--out") + 1] == "out/activations"
    parallel = run_all.steps(argparse.Namespace(**vars(args), executor="local", workers=2, address=None,
                                                no_stack=True))
    assert all(s[-5:] == ["--executor", "local", "--workers", "2", "--no-stack"] for s in parallel[1:4])
    assert parser.parse_args(parallel[1]).workers == 2


def test_quick_runs_default_to_their_own_folder_apart_from_the_reference_run():
    parser = build_parser()
    quick = argparse.Namespace(results=None, device="cpu", threads=1, data_dir="d", quick=True, force=False,
                               no_progress=True)
    assert run_all.steps(quick)[1][run_all.steps(quick)[1].index("--out") + 1] == "results/quick/activations"
    assert run_all.steps(quick)[-1] == ["report", "--results", "results/quick"]
    full = argparse.Namespace(**{**vars(quick), "quick": False})
    assert run_all.steps(full)[2][run_all.steps(full)[2].index("--out") + 1] == "results/optimizers"
    from experiments.commands.studies import default_folder

    args = parser.parse_args(["activations", "--quick"])
    assert args.out is None and default_folder(args.command, args.quick) == "results/quick/activations"
    args = parser.parse_args(["optimizers"])
    assert default_folder(args.command, args.quick) == "results/optimizers"


def test_each_kind_of_error_becomes_one_line_and_its_exit_code(capsys):
    from experiments.cli import report_error
    from experiments.data import DataError
    from experiments.errors import UserError

    cases = [(DataError("MNIST file x.gz is missing"), 2, "error: MNIST file x.gz is missing"),
             (ValueError("lr must be a finite number > 0,\n got inf"), 2, "error: lr must be a finite number > 0, got inf"),
             (PermissionError(13, "Permission denied", "results/runs.csv"), 1, "error: results/runs.csv: Permission denied"),
             (KeyError("key"), 1, "error: internal error (KeyError: 'key'); this is a bug of the suite: rerun with "
                                  "--debug and report the traceback")]
    assert issubclass(DataError, UserError)
    for err, code, line in cases:
        assert report_error(err) == code
        captured = capsys.readouterr()
        assert captured.err == line + "\n" and captured.out == ""


def test_all_goes_on_after_a_failing_step_and_returns_its_code(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(run_all, "steps", lambda args: [["report", "--results", str(tmp_path / "nothing")],
                                                         ["report", "--results", str(tmp_path / "nothing")]])
    assert main(["all", "--results", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("error: no study folder") == 2  # both steps ran, each said what was wrong
    assert "=== report: exit 2" in captured.out


def test_the_readmes_first_two_minutes_are_two_commands_and_ci_runs_the_second_verbatim():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme.split("## The first two minutes", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    assert commands == ['pip install -e . && python -m experiments all --quick',
                        'pip install -e ".[test]" && python -m pytest -q']
    assert readme.index("## The first two minutes") < readme.index("## Layout")  # before the reference material
    assert commands[1] in (root / ".ci" / "run").read_text().splitlines()
