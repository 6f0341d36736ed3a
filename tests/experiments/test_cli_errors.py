"""Every user mistake on the real command line: one line on stderr, a non-zero exit, no traceback, nothing written.

Each row of ``CASES`` runs ``python -m experiments ...`` in a subprocess (PYTHONPATH = this project, cwd = a
scratch folder) and states the exit code and a fragment of the message. The rows run concurrently, once, in a
module fixture; each row is then its own test. ``{file}`` is an existing file, ``{empty}`` an empty folder,
``{damaged}`` a data folder whose train-images archive has a flipped byte, ``{nodata}`` a folder without MNIST,
and ``{new}`` a fresh path that must still not exist after an error (a bad value is refused before anything is
written). Only a couple of rows train, on 500 images for one or two epochs.
"""
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments.data import DEFAULT_ROOT

pytestmark = pytest.mark.torch  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--train-subset", "500", "--epochs", "1", "--layer-sizes", "784", "16", "10", "--no-progress"]

CASES = {  # name: (arguments, exit code, fragment of stderr, or of stdout when the exit code is 0)
    # usage errors, found by argparse
    "no command": ([], 2, "the following arguments are required: <command> (see `python -m experiments --help`)"),
    "unknown command": (["trian"], 2, "invalid choice: 'trian'"),
    "unknown option": (["train", "--bogus"], 2,
                       "error: unrecognized arguments: --bogus (see `python -m experiments train --help`)"),
    "lr not a number": (["train", "--lr", "fast"], 2, "argument --lr: invalid float value: 'fast'"),
    "zero epochs": (["train", "--epochs", "0"], 2, "argument --epochs: must be a positive integer, got 0"),
    "epochs not a number": (["train", "--epochs", "abc"], 2,
                            "error: argument --epochs: must be a positive integer, got 'abc' (see"),
    "option without its value": (["train", "--lr"], 2, "error: argument --lr: expected one argument"),
    "unknown activation": (["train", "--activation", "rleu"], 2, "argument --activation: invalid choice: 'rleu'"),
    "zero workers": (["activations", "--workers", "0", "--out", "{new}"], 2,
                     "argument --workers: must be a positive integer, got 0"),
    "spec is a folder": (["study", "{empty}", "--out", "{new}"], 2, "error: cannot read the study spec"),
    "set an unknown key": (["study", "{spec}", "--set", "base.bogus=1", "--out", "{new}"], 2, "base.bogus"),
    "ray address not host:port": (["study", "{spec}", "--executor", "ray", "--address", "nonsense", "--out", "{new}"],
                                  2, "error: --address 'nonsense' is not host:port"),
    "ray address where nothing listens": (["study", "{spec}", "--executor", "ray", "--address", "127.0.0.1:1",
                                           "--out", "{new}"], 2, "error: no Ray cluster answers at 127.0.0.1:1"),
    "address without ray": (["study", "{spec}", "--address", "127.0.0.1:1", "--out", "{new}"], 2,
                            "error: --address is for --executor ray"),
    "study without its data": (["study", "{spec}", "--data-dir", "{nodata}", "--out", "{new}"], 2,
                               "train-images-idx3-ubyte.gz is missing"),
    "all without its data": (["all", "--quick", "--data-dir", "{nodata}", "--results", "{new}"], 2,
                             "train-images-idx3-ubyte.gz is missing"),
    "empty out": (["train", "--out", ""] + TINY, 2, "error: --out is empty; give a folder"),
    "empty study out": (["study", "{spec}", "--out", ""], 2, "error: --out is empty; give a folder"),
    "batch larger than the data": (["train", "--batch-size", "600"] + TINY, 2,
                                   "error: batch_size must be at most the 500 training images, got 600"),
    "study lr 0": (["activations", "--lrs", "0.1", "0", "--out", "{new}"], 2,
                   "argument --lrs: must be a finite number > 0, got 0"),
    "study lr nan": (["activations", "--lrs", "nan", "--out", "{new}"], 2, "got nan"),
    "study lr inf": (["activations", "--lrs", "inf", "--out", "{new}"], 2, "got inf"),
    "spec lr 0 through --set": (["activations", "--quick", "--set", "tune.lr=[0]", "--out", "{new}"], 2,
                                "tune.lr: lr must be a finite number > 0, got 0.0"),
    "missing spec file": (["study", "{tmp}/no-such-spec.toml", "--out", "{new}"], 2,
                          "error: cannot read the study spec"),
    "study epochs -1": (["optimizers", "--epochs", "-1", "--out", "{new}"], 2, "must be a positive integer, got -1"),
    "gradcheck seed -1": (["gradcheck", "--seed", "-1", "--out", "{new}"], 2, "--seed: must be an integer ≥ 0"),
    # values the suite refuses where they enter (RunConfig), before anything runs
    "lr inf": (["train", "--lr", "inf", "--out", "{new}"], 2, "error: lr must be a finite number > 0, got inf"),
    "lr nan": (["train", "--lr", "nan"], 2, "error: lr must be a finite number > 0, got nan"),
    "lr 0": (["train", "--lr", "0"], 2, "error: lr must be a finite number > 0, got 0.0"),
    "negative momentum": (["train", "--optimizer", "SGD", "--momentum", "-0.9", "--out", "{new}"], 2,
                          "error: momentum must be a finite number ≥ 0, got -0.9"),
    "nan momentum": (["train", "--optimizer", "SGD", "--momentum", "nan"], 2, "momentum must be a finite number"),
    "negative weight decay": (["train", "--weight-decay", "-0.0001"], 2,
                              "error: weight_decay must be a finite number ≥ 0"),
    "nan weight decay": (["train", "--weight-decay", "nan"], 2, "error: weight_decay must be a finite number ≥ 0"),
    "nesterov without momentum": (["train", "--optimizer", "SGD", "--nesterov"], 2,
                                  "error: nesterov needs a momentum > 0"),
    "nesterov with Adam": (["train", "--nesterov"], 2, "error: nesterov applies to SGD only"),
    "momentum with Adam": (["train", "--momentum", "0.9"], 2, "error: Adam takes no momentum"),
    "seed -1": (["train", "--seed", "-1"], 2, "error: seed must be ≥ 0, got -1"),
    "train subset beyond 50,000": (["train", "--train-subset", "50001", "--out", "{new}"], 2,
                                   "error: train_subset must be between 1 and 50,000"),
    "study train subset beyond 50,000": (["backends", "--train-subset", "60000", "--out", "{new}"], 2,
                                         "argument --train-subset: must be between 1 and 50,000"),
    "nan gamma": (["train", "--schedule", "StepLR", "--gamma", "nan"], 2, "error: gamma must be a finite number"),
    "wrong layer sizes": (["train", "--layer-sizes", "100", "10"], 2, "error: MNIST needs 784 inputs and 10 outputs"),
    # output locations, checked before anything trains
    "train out in /proc": (["train", "--out", "/proc/x"] + TINY, 2, "error: --out /proc/x cannot be written"),
    "train out is a file": (["train", "--out", "{file}"] + TINY, 2, "is an existing file, not a folder"),
    "train out under a file": (["train", "--out", "{file}/run"] + TINY, 2, "cannot be written (Not a directory)"),
    "study out in /proc": (["activations", "--quick", "--out", "/proc/x"], 2, "error: --out /proc/x cannot be"),
    "study out is a file": (["optimizers", "--out", "{file}"], 2, "is an existing file, not a folder"),
    "backends out is a file": (["backends", "--out", "{file}"], 2, "is an existing file, not a folder"),
    "gradcheck out in /proc": (["gradcheck", "--out", "/proc/x"], 2, "error: --out /proc/x cannot be written"),
    "bench out is a file": (["bench", "--quick", "--out", "{file}"], 2, "is an existing file, not a folder"),
    "all results in /proc": (["all", "--quick", "--results", "/proc/x"], 2, "error: --results /proc/x cannot be"),
    "report without studies": (["report", "--results", "{empty}"], 2, "error: no study folder (one with plan.csv)"),
    "report on a damaged csv": (["report", "--results", "{damaged_study}"], 2,
                                "layers.csv, line 2: column grad_norm holds 'half', not a number"),
    "report on a damaged spec.json": (["report", "--results", "{bad_spec_json}"], 2,
                                      "spec.json is damaged: not JSON (Expecting property name"),
    "a spec that is not text": (["study", "{binary_spec}", "--out", "{new}"], 2,
                                "it is not UTF-8 text (byte 0); a spec is a TOML text file"),
    # data
    "no MNIST in data dir": (["train", "--data-dir", "{nodata}"] + TINY, 2,
                             "train-images-idx3-ubyte.gz is missing (and train-images-idx3-ubyte is missing too)"),
    "damaged archive": (["train", "--data-dir", "{damaged}", "--out", "{new}"] + TINY, 2,
                        "train-images-idx3-ubyte.gz is damaged and cannot be decompressed"),
    # a run whose loss explodes is kept as diverged (not an error)
    "lr 1e6 diverges": (["train", "--lr", "1e6", "--device", "cpu", "--out", "{tmp}/diverged"] + TINY, 0,
                        "status diverged"),
}
if not torch.cuda.is_available():
    CASES["cuda without a GPU"] = (["train", "--device", "cuda", "--out", "{new}"], 2, "no CUDA GPU is available")


def command(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return [sys.executable, "-m", "experiments", *args], env


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "a-file.txt").write_text("not a folder")
    (tmp / "empty").mkdir()
    damaged = tmp / "damaged" / "MNIST" / "raw"
    damaged.mkdir(parents=True)
    archive = bytearray((DEFAULT_ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").read_bytes())
    archive[40] ^= 0xFF
    (damaged / "train-images-idx3-ubyte.gz").write_bytes(bytes(archive))
    spec = tmp / "tiny.toml"
    spec.write_text('name = "tiny"\ncompare = "activation"\nseeds = 2\n[base]\ntrain_subset = 500\nepochs = 1\n'
                    '[grid]\nactivation = ["relu", "tanh"]\n')
    study = tmp / "studies" / "damaged"  # a committed-style study folder (CSV files only) with a word for a number
    study.mkdir(parents=True)
    (study / "plan.csv").write_text("study,group,arm,phase,key\ns,g,relu,seeds,aaaa\n")
    (study / "runs.csv").write_text("key,status,epochs_done,test_acc\naaaa,ok,1,0.9\n")
    (study / "epochs.csv").write_text("key,epoch,val_acc\naaaa,1,0.9\n")
    (study / "layers.csv").write_text("key,epoch,layer,grad_norm\naaaa,0,0,half\naaaa,1,0,0.5\n")
    other = tmp / "spec-json" / "s"  # a study folder whose spec.json is damaged
    other.mkdir(parents=True)
    for name in ("plan", "runs", "epochs", "layers"):
        (other / f"{name}.csv").write_text((study / f"{name}.csv").read_text().replace("half", "0.25"))
    (other / "spec.json").write_text("{ cut short")
    (tmp / "binary.toml").write_bytes(b"\xff\xfe\x00name")
    return {"tmp": str(tmp), "file": str(tmp / "a-file.txt"), "empty": str(tmp / "empty"),
            "bad_spec_json": str(tmp / "spec-json"), "binary_spec": str(tmp / "binary.toml"),
            "damaged": str(tmp / "damaged"), "nodata": str(tmp / "empty"), "spec": str(spec),
            "damaged_study": str(tmp / "studies")}


@pytest.fixture(scope="module")
def outcomes(places):
    """Every row run once, three at a time: name → (arguments, CompletedProcess)."""
    def run(name):
        args = [a.format(new=f"{places['tmp']}/new-{name.replace(' ', '-')}", **places) for a in CASES[name][0]]
        argv, env = command(args)
        return name, (args, subprocess.run(argv, cwd=places["tmp"], env=env, capture_output=True, text=True,
                                           timeout=300))

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(run, CASES))


@pytest.mark.parametrize("name", list(CASES))
def test_each_mistake_is_one_line_on_stderr(name, outcomes, places):
    args, done = outcomes[name]
    _, code, fragment = CASES[name]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == code, (done.stdout, done.stderr)
    if code == 0:
        assert fragment in done.stdout
        return
    assert fragment in done.stderr, done.stderr
    assert "error" not in done.stdout.lower()  # errors go to stderr only
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("error: "), message  # one line, nothing else
    for path in [a for a in args if "/new-" in a]:
        assert not os.path.exists(path), f"{path} was written although the command was refused"
    assert not (Path(places["tmp"]) / "results").exists()  # no default output folder was touched either


def test_a_diverged_run_is_recorded_as_diverged(outcomes, places):
    runs = pd.read_csv(Path(places["tmp"]) / "diverged" / "runs.csv")
    assert runs["status"].tolist() == ["diverged"] and runs["final_train_loss"][0] > 1e6


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_before_or_after_the_command(where, tmp_path):
    args = ["train", "--lr", "0"]
    argv, env = command(["--debug", *args] if where == "before" else [*args, "--debug"])
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr and "ValueError" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: lr must be a finite number > 0, got 0.0"


def test_ctrl_c_during_a_run_says_how_to_resume(tmp_path):
    """SIGINT while a real run trains: exit 130, one line saying how to resume, no traceback."""
    argv, env = command(["train", "--train-subset", "50000", "--epochs", "50", "--device", "cpu", "--no-progress",
                         "--out", str(tmp_path / "run")])
    # SIGINT back to its default in the child: a shell without job control starts background jobs (such as
    # a test run with &) with SIGINT ignored, and Python turns SIGINT into KeyboardInterrupt only if it is not
    child = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert child.stdout.readline().startswith("run ")  # printed once the data is loaded, as training starts
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130
    assert err.strip() == "interrupted: finished runs are saved; rerun the same command to resume (it skips them)"
    assert "Traceback" not in out + err
