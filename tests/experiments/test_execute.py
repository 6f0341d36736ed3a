"""``experiments.execute``: the same numbers on every executor, stacking by a fixed rule, faults survived."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments import execute
from experiments import store as results_store
from experiments.errors import UserError
from experiments.execute import ExecOptions, plan_tasks, train_pending
from experiments.runs import stacked, training
from experiments.runs.training import RunConfig

pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]
MNIST_TRAIN = 500  # training images of the data fixture (tests/conftest.py)
ROOT = Path(__file__).resolve().parents[2]
BASE = RunConfig(layer_sizes=(784, 16, 10), train_subset=500, epochs=1, batch_size=50, optimizer="SGD",
                 momentum=0.9, lr=0.05)
# four runs of one stack group (seeds × lrs), one run of the manual backend, one too big to stack
STUDY = ([dataclasses.replace(BASE, seed=s, lr=lr) for s in (0, 1) for lr in (0.05, 0.1)]
         + [dataclasses.replace(BASE, backend="manual"), dataclasses.replace(BASE, layer_sizes=(784, 128, 128, 10),
                                                                               batch_size=128)])
MACHINE_COLUMNS = ["train_time_s", "wall_time_s", "epoch_time_s", "host"]  # timing and where: may differ


def exported(folder: Path) -> dict:
    """runs.csv and epochs.csv as text, without the timing and host columns."""
    return {name: pd.read_csv(folder / f"{name}.csv", dtype={"key": str})
            .drop(columns=MACHINE_COLUMNS, errors="ignore").to_csv(index=False) for name in ("runs", "epochs")}


# --------------------------------------------------------------------------- the stacking rule
def test_the_cpu_stacking_rule_follows_the_benchmark():
    small = RunConfig(layer_sizes=(784, 30, 10), batch_size=10)
    assert stacked.should_stack(small, "cpu")  # measured 4.4×
    assert stacked.should_stack(dataclasses.replace(small, batch_size=128), "cpu")  # 1.9×
    modern = RunConfig(layer_sizes=(784, 128, 128, 10), batch_size=128)
    assert not stacked.should_stack(modern, "cpu")  # 1.0×: nothing to gain
    assert stacked.should_stack(modern, "cuda")
    assert not stacked.should_stack(dataclasses.replace(small, backend="manual"), "cpu")
    for cure in ({"batch_norm": True}, {"clip_grad_norm": 1.0}, {"clip_grad_value": 0.5}):
        assert not stacked.should_stack(dataclasses.replace(small, **cure), "cuda")


def test_tasks_stack_seed_and_lr_siblings_whatever_the_workers():
    for workers in (1, 2, 8):
        tasks = plan_tasks(STUDY, ExecOptions(workers=workers))
        assert sorted(len(t.configs) for t in tasks) == [1, 1] + ([4] if workers == 1 else [2, 2])
        assert [c for task in tasks for c in task.configs] == STUDY  # each run once, in order
        assert [t.stacked for t in tasks] == [True] * (len(tasks) - 2) + [False, False]
    assert not any(t.stacked for t in plan_tasks(STUDY, ExecOptions(stack=False)))
    # the last run of a group left to train (a resumed study) is still stacked: the rule is on the config
    assert plan_tasks(STUDY[3:4], ExecOptions()) == [execute.Task((STUDY[3],), True)]
    many = [dataclasses.replace(BASE, seed=s) for s in range(40)]
    assert [len(t.configs) for t in plan_tasks(many, ExecOptions(workers=2))] == [13, 14, 13]  # ≤ MAX_STACK each


# --------------------------------------------------------------------------- one result on every executor
@pytest.mark.processes  # real processes started, interrupted or killed: not run by mutation testing
def test_sequential_and_a_pool_of_two_give_identical_results(tmp_path, data):
    seq, pool = tmp_path / "sequential", tmp_path / "pool"
    assert train_pending(STUDY, data, results_store.Store(seq), ExecOptions(progress=False)) == 6
    assert train_pending(STUDY, data, results_store.Store(pool), ExecOptions(workers=2, progress=False)) == 6
    assert exported(seq) == exported(pool)
    runs = results_store.load(pool).runs.set_index("key")
    assert runs.loc[[c.key() for c in STUDY], "stacked"].tolist() == [True] * 4 + [False] * 2
    assert (runs["status"] == "ok").all() and runs["message"].isna().all()


@pytest.mark.processes  # real processes started, interrupted or killed: not run by mutation testing
def test_a_worker_exception_is_the_runs_recorded_failure(tmp_path, data, monkeypatch):
    from manual.activations import ACTIVATIONS

    # known to this process only: a spawned worker fails to build the network, as with a plug-in it lacks
    monkeypatch.setitem(ACTIVATIONS, "parent_only", ACTIVATIONS["relu"])
    bad = dataclasses.replace(BASE, activation="parent_only", backend="manual")
    store = results_store.Store(tmp_path)
    assert train_pending([bad, STUDY[4]], data, store, ExecOptions(workers=2, progress=False)) == 2
    runs = results_store.load(tmp_path).runs.set_index("key")
    assert runs.loc[bad.key(), "status"] == "failed"
    assert "unknown activation 'parent_only'" in runs.loc[bad.key(), "message"]
    assert runs.loc[STUDY[4].key(), "status"] == "ok"
    assert not store.has(bad.key())  # trained again on the next run of the study
    assert execute.pending_configs([bad, STUDY[4]], store) == [bad]


@pytest.mark.processes  # real processes started, interrupted or killed: not run by mutation testing
def test_a_killed_worker_process_fails_its_runs_which_are_tried_once_more(tmp_path, data, monkeypatch):
    killed = []

    def kill_a_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for child in multiprocessing.active_children():  # a dead worker breaks its pool, busy or not
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                    break
            time.sleep(0.01)

    import concurrent.futures

    created = []

    class CountingPool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            created.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", CountingPool)
    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    runs = STUDY[4:] + [dataclasses.replace(STUDY[4], seed=1)]
    assert train_pending(runs, data, results_store.Store(tmp_path), ExecOptions(workers=2, progress=False)) == 3
    killer.join()
    assert killed and len(created) == 2  # the broken pool, then a new one for the runs it took down
    recorded = results_store.load(tmp_path).runs
    assert len(recorded) == 3 and (recorded["status"] == "ok").all()


def descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (its pool's workers come from a fork server it started)."""
    try:
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return children + [d for child in children for d in descendants(child)]


@pytest.mark.processes  # real processes started, interrupted or killed: not run by mutation testing
def test_ctrl_c_stops_the_pool_keeps_finished_runs_and_says_how_to_resume(tmp_path, landed_runs):
    args = [sys.executable, "-m", "experiments", "activations", "--out", str(tmp_path), "--train-subset", "500",
            "--epochs", "1", "--seeds", "1", "--activations", "relu", "tanh", "sigmoid", "--lrs", "0.01", "0.03",
            "0.1", "--device", "cpu", "--workers", "2", "--no-stack"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # SIGINT back at its default in the child: a shell without job control starts background jobs (a CI
    # script, nohup) with SIGINT ignored, and the child would inherit that
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and landed_runs(tmp_path) < 1:
        time.sleep(0.1)
    workers = descendants(proc.pid)
    assert len(workers) >= 2
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = results_store.load(tmp_path).runs
    assert err.strip().splitlines()[-1] == (f"interrupted: {len(kept)} of 36 pending runs finished and are kept in "
                                            f"{tmp_path}; rerun the same command to resume (it skips them)")
    assert "Traceback" not in err
    assert 1 <= len(kept) < 36 and (kept["status"] == "ok").all()  # 36 tuning runs: 3 × 2 depths × 3 lrs × 2
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]], "a worker outlived the study"


# --------------------------------------------------------------------------- Ray
def test_without_ray_the_message_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserError, match=r'pip install -e "\.\[ray\]"'):
        execute.import_ray()


def test_an_unreachable_cluster_is_a_clear_error_within_seconds(data, tmp_path):
    start = time.monotonic()
    with pytest.raises(UserError, match="no Ray cluster answers at 127.0.0.1:9"):
        train_pending(STUDY[:1], data, results_store.Store(tmp_path),
                      ExecOptions(executor="ray", address="127.0.0.1:9", progress=False))
    assert time.monotonic() - start < 10
    with pytest.raises(UserError, match="not host:port"):
        execute.check_reachable("nowhere")


@pytest.mark.usefixtures("clean_registries")  # the spec loads the Mish plug-in
def test_a_cluster_that_refuses_the_client_is_said_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """A Ray cluster that answers but refuses this client (no token): one line, and no study folder left behind."""
    from experiments.cli import main

    def refuse(ray, options):
        raise UserError(execute.RAY_AUTH)

    monkeypatch.setattr(execute, "check_reachable", lambda address: None)
    monkeypatch.setattr(execute, "connect_ray", refuse)
    spec = ROOT / "examples" / "relu-gelu-mish.toml"
    out = tmp_path / "study"
    assert main(["study", str(spec), "--executor", "ray", "--address", "127.0.0.1:6390", "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {execute.RAY_AUTH}\n"
    assert not out.exists()


@pytest.fixture(scope="module")
def local_ray():
    import ray  # in the test extra: CI runs these on a local instance
    ray.init(num_cpus=2, include_dashboard=False, **{k: v for k, v in execute.ray_init_kwargs(ExecOptions()).items()
                                                      if k not in ("num_cpus", "include_dashboard")})
    yield ray
    ray.shutdown()


@pytest.mark.processes  # real processes started, interrupted or killed: not run by mutation testing
def test_ray_gives_the_sequential_results_and_resumes_a_study_started_elsewhere(tmp_path, data, local_ray):
    @local_ray.remote(num_cpus=1)
    def where():
        import experiments

        return experiments.__file__

    assert local_ray.get(where.remote()) == str(ROOT / "experiments" / "__init__.py")  # this worktree's code
    seq, on_ray = tmp_path / "sequential", tmp_path / "ray"
    train_pending(STUDY, data, results_store.Store(seq), ExecOptions(progress=False))
    # started one after another here, finished on Ray: only the missing runs go to Ray
    train_pending(STUDY[:2] + STUDY[4:5], data, results_store.Store(on_ray), ExecOptions(progress=False))
    ray_options = ExecOptions(executor="ray", workers=2, progress=False)
    assert train_pending(STUDY, data, results_store.Store(on_ray), ray_options) == 3
    assert exported(seq) == exported(on_ray)
