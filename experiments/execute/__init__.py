"""Training what a study's store lacks: the runs go to an executor, their results come back to the parent.

``train_pending(configs, data, store, options)`` is the one entry point every study uses:

1. ``pending_configs``: the configs the store has not finished (ok or diverged), each key once;
2. ``plan_tasks``: each pending config is a task of its own, except that runs differing only in seed and
   learning rate are trained as one stacked model where the fixed rule ``stacked.should_stack`` says it pays
   (every torch run on CUDA; small ones on the CPU; never with ``--no-stack``);
3. an executor trains the tasks and hands back each task's results as soon as it finishes:
   - ``sequential``: one after another in this process (``--workers 1``);
   - ``local_pool``: a ``concurrent.futures.ProcessPoolExecutor`` of ``--workers`` processes (default: every
     core), each with one torch and one BLAS thread and the data sent once, when it starts;
   - ``ray_tasks``: one Ray task per run or stack (``num_cpus=1``; a fraction of a GPU on CUDA), on a local
     Ray instance or the cluster at ``--address``, MNIST shipped once with ``ray.put``;
4. the parent, and only the parent, records each result in the store (one transaction per run) as it
   comes back, so a killed study loses at most the runs in flight and resumes without redoing the others.

None of this changes a run's numbers: a run is the same config, seed and batch order wherever it trains,
one thread each, so sequential, ``--workers N`` and Ray give identical results, and a study started on
one executor resumes on another. A task that raises becomes a ``failed`` run with the error as its
``message`` (trained again when the study is rerun), and the study goes on. A worker process that dies
(killed, out of memory) fails the tasks it may have been running, and each is tried once more.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

from experiments.data import N_TRAIN
from experiments.errors import Interrupted, UserError

# experiments.runs (torch) is imported where a run is planned or trained, not here: a study command starts
# its pool's fork server (``start_pool_server``) before this process spends seconds importing torch

EXECUTORS = ("local", "ray")
GPU_SHARE = 0.25  # the fraction of a GPU a Ray task asks for on CUDA: four small models share one GPU
ATTEMPTS = 2  # a task whose worker process died is tried once more
RAY_INSTALL = 'Ray is not installed; install it with: pip install -e ".[ray]"  (or: pip install "ray[default]")'
RAY_AUTH = ("the Ray cluster refused this client's token (InvalidAuthToken): a cluster started with "
            "RAY_AUTH_MODE=token needs the same token here — set RAY_AUTH_MODE=token and copy the cluster's "
            "~/.ray/auth_token to this machine (or set RAY_AUTH_TOKEN)")


@dataclass(frozen=True)
class ExecOptions:
    """How a study's runs are executed; none of these changes a run's numbers."""

    device: str = "cpu"  # resolved: "cpu" or "cuda"
    executor: str = "local"  # "local" (a process pool of ``workers``; in-process with 1) or "ray"
    workers: int = 1  # the command line's default is every core (``default_workers``)
    address: str | None = None  # Ray cluster address; None = a local Ray instance
    stack: bool = True  # stack runs that differ only in seed and lr where the fixed rule says it pays
    force: bool = False  # retrain runs that are already in the store (each once per process)
    progress: bool = True
    plugins: tuple = field(default_factory=tuple)  # plug-in specs every worker loads before training


def default_workers() -> int:
    return os.cpu_count() or 1


def add_executor_options(p) -> None:
    """--workers, --executor, --address and --no-stack, shared by every command that runs a study."""
    from experiments.cli import positive_int

    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help=f"runs trained at once, each in its own process with one thread (default: every core, "
                        f"{default_workers()} here; 1 = one after another in this process)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: this machine's process pool; ray: Ray tasks on a local Ray instance or, with "
                        "--address, an existing cluster (pip install -e '.[ray]') (default: %(default)s)")
    p.add_argument("--address", metavar="ADDR",
                   help="with --executor ray: the cluster's address, e.g. 127.0.0.1:6390 (from `ray start --head`)")
    p.add_argument("--no-stack", action="store_true",
                   help="never train several runs as one stacked model (by default runs that differ only in seed "
                        "and learning rate are stacked on CUDA, and on the CPU for small networks)")


def check_executor(args) -> None:
    """The executor options checked before anything is written: --address only with Ray, Ray installed, and
    something listening at the address."""
    if args.address and args.executor != "ray":
        raise UserError("--address is for --executor ray (a Ray cluster's address)")
    if args.executor == "ray":
        import_ray()
        if args.address:
            check_reachable(args.address)


def options_from_args(args, device: str, plugins=()) -> ExecOptions:
    """The ``ExecOptions`` a command's parsed arguments ask for."""
    if args.address and args.executor != "ray":
        raise UserError("--address is for --executor ray (a Ray cluster's address)")
    return ExecOptions(device=device, executor=args.executor, workers=args.workers or default_workers(),
                       address=args.address, stack=not args.no_stack, force=getattr(args, "force", False),
                       progress=not getattr(args, "no_progress", False), plugins=tuple(plugins))


def pending_configs(configs, store, force: bool = False) -> list[RunConfig]:
    """The configs ``store`` lacks (all of them once with ``force``), each key once, in order."""
    pending = {}
    for config in configs:
        key = config.key()
        if key not in pending and (not store.has(key) or (force and key not in store.added)):
            pending[key] = config
    return list(pending.values())


# --------------------------------------------------------------------------- tasks
class Task(NamedTuple):
    """What one worker trains at once: one run, or runs stacked into one model (``stacked``)."""

    configs: tuple
    stacked: bool


def plan_tasks(pending: list[RunConfig], options: ExecOptions) -> list[Task]:
    """The tasks, in order of their first run. A run is stacked if and only if ``stacked.should_stack`` says
    so (and ``options.stack``): then it trains in a stack with the pending runs of its group (those that
    differ from it only in seed and lr) — alone in a stack of one if it is the only one, e.g. when resuming.
    A group is cut into stacks of at most ``MAX_STACK``, and into as many as there are workers as long as
    each keeps two runs or more. Which runs share a stack does not change any run's numbers."""
    from experiments.runs import stacked

    slots, groups = [], {}
    for config in pending:
        if options.stack and stacked.should_stack(config, options.device):
            key = stacked.stack_group_key(config)
            if key not in groups:
                groups[key] = []
                slots.append((groups[key], True))
            groups[key].append(config)
        else:
            slots.append(([config], False))
    tasks = []
    for slot, stack in slots:
        n = len(slot)
        parts = max(math.ceil(n / stacked.MAX_STACK), min(options.workers, n // 2), 1)
        bounds = [round(i * n / parts) for i in range(parts + 1)]
        tasks += [Task(tuple(slot[a:b]), stack) for a, b in zip(bounds[:-1], bounds[1:])]
    return tasks


def run_task(task: Task, data, device: str) -> list[RunResult]:
    """Train one task; an exception becomes a ``failed`` result for each of its runs."""
    from experiments.runs import stacked, training

    try:
        if task.stacked:
            results = stacked.train_stacked(list(task.configs), data, device)
        else:
            results = [training.train(task.configs[0], data, device)]
    except Exception as e:  # noqa: BLE001 - recorded as the run's failure, the study goes on
        return failed(task, e, device)
    for result in results:
        result.run.update(message=None, stacked=task.stacked, host=socket.gethostname())
    return results


def failed(task: Task, error, device: str) -> list[RunResult]:
    """``failed`` results of the task's runs: a runs row each (no epoch or layer rows) with the error's message."""
    from experiments.runs import training

    message = error if isinstance(error, str) else f"{type(error).__name__}: {' '.join(str(error).split())}"
    nan = math.nan
    return [training.RunResult(run={
        "key": c.key(), **training.run_columns(c), "status": "failed", "epochs_done": 0, "final_train_loss": nan,
        "final_val_loss": nan, "final_val_acc": nan, "test_loss": nan, "test_acc": nan, "device": device,
        "train_time_s": nan, "wall_time_s": nan, "message": message[:1000], "stacked": task.stacked,
        "host": socket.gethostname()}) for c in task.configs]


# --------------------------------------------------------------------------- in a worker process
_WORKER = {}  # per worker process: its data, whether threads and plug-ins are set up


def setup_worker(plugins=()) -> None:
    """One torch and one BLAS thread (once per worker process, pool or Ray), and ``plugins`` loaded."""
    if not _WORKER.get("threads"):
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(1)
        with contextlib.suppress(RuntimeError):  # only possible before any parallel work
            torch.set_num_interop_threads(1)
        _WORKER["threads"] = threadpool_limits(limits=1)  # NumPy's BLAS (the limit lasts while referenced)
        # tqdm's default lock is a multiprocessing semaphore: a worker ended by Ctrl-C would leak it, and the
        # resource tracker would warn about it at exit. A worker's bars need only a thread lock.
        from tqdm import tqdm

        tqdm.set_lock(threading.RLock())
    new = [spec for spec in plugins if spec not in _WORKER.setdefault("plugins", set())]
    if new:
        from experiments.plugins import load_plugins  # the plug-in loader (experiments/plugins.py)

        load_plugins(new)
        _WORKER["plugins"].update(new)


def init_pool_worker(data, plugins) -> None:
    """A pool worker's initializer: Ctrl-C is the parent's to handle; the data arrives once, here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_worker(plugins)
    _WORKER["data"] = data


def pool_task(task: Task, device: str) -> list[RunResult]:
    return run_task(task, _WORKER["data"], device)


def ray_task(task: Task, data_box: list, device: str, plugins: tuple) -> list[RunResult]:
    """A Ray task: ``data_box`` holds the ``ray.put`` reference to MNIST, fetched once per worker process
    (and copied there, since Ray's zero-copy arrays are read-only)."""
    import ray

    setup_worker(plugins)
    ref = data_box[0]
    if _WORKER.get("data_ref") != ref.hex():
        _WORKER["data"], _WORKER["data_ref"] = copy.deepcopy(ray.get(ref)), ref.hex()
    return run_task(task, _WORKER["data"], device)


# --------------------------------------------------------------------------- executors: yield (task, results)
def sequential(tasks, data, options: ExecOptions):
    """In this process, with one BLAS thread as in every worker (torch keeps the threads ``--threads`` set,
    1 by default: more could change the last digits of a run)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        for task in tasks:
            yield task, run_task(task, data, options.device)


def local_pool(tasks, data, options: ExecOptions):
    """``options.workers`` processes (``pool_context``), at most one task in flight per worker. When a worker dies the pool is broken: the tasks in flight are tried once
    more in a new pool (one of them was the victim, the others are collateral), then recorded as failed."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = deque((task, 1) for task in tasks)
    workers = min(options.workers, len(tasks))
    while queue:
        pool = ProcessPoolExecutor(workers, mp_context=pool_context(), initializer=init_pool_worker,
                                   initargs=(data, options.plugins))
        running, lost, clean = {}, [], False
        try:
            while (queue or running) and not lost:
                while queue and len(running) < workers:
                    task, attempt = queue.popleft()
                    running[pool.submit(pool_task, task, options.device)] = (task, attempt)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task, attempt = running.pop(future)
                    try:
                        results = future.result()
                    except BrokenProcessPool:
                        lost.append((task, attempt))
                        continue
                    except Exception as e:  # noqa: BLE001 - e.g. a result that could not be sent back
                        results = failed(task, e, options.device)
                    yield task, results
            lost += running.values()  # the pool is broken: every task in flight is lost with it
            clean = not lost
        finally:
            if clean:
                pool.shutdown(wait=True)
            else:  # interrupted, or broken
                stop_pool(pool)
        for task, attempt in reversed(lost):
            if attempt >= ATTEMPTS:
                yield task, failed(task, f"the worker process died {ATTEMPTS} times while training this run "
                                         f"(killed, or out of memory?)", options.device)
            else:
                queue.appendleft((task, attempt + 1))


def pool_context():
    """Workers forked from a fork server that has imported this module (torch included) once: each worker
    then starts in a fraction of a second, and from a fresh process (no threads of ours: safe with torch),
    where plain ``fork`` would copy this process's thread pools. Falls back to ``spawn`` where there is no
    fork server (Windows)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # torch.optim imports torch._dynamo (~1 s) when the first optimizer is made: imported once here, not in
    # every worker of every pool a study starts
    context.set_forkserver_preload([__name__, "torch._dynamo"])
    return context


def start_pool_server(executor: str, workers: int) -> None:
    """Start the process pool's fork server now, if the study will use one: it spends ~2 s importing torch in
    the background while the caller goes on (loading MNIST), instead of when the first run is sent out."""
    if executor == "local" and workers > 1:
        context = pool_context()
        if context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()


def stop_pool(pool) -> None:
    """Shut the pool down now: queued tasks cancelled, running workers ended (after Ctrl-C they would
    otherwise finish their runs before the interpreter could exit)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python ≥ 3.14
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    if terminate is not None:
        terminate()
        return
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(RAY_INSTALL) from None
    return ray


def project_root() -> str:
    """The folder holding this copy of ``experiments``: Ray workers import the same code from it."""
    return str(Path(__file__).resolve().parents[2])


def ray_init_kwargs(options: ExecOptions) -> dict:
    """``ray.init``'s arguments: workers get this code on their path; a local instance gets ``workers`` CPUs."""
    path = os.pathsep.join(p for p in (project_root(), os.environ.get("PYTHONPATH")) if p)
    kwargs = {"runtime_env": {"env_vars": {"PYTHONPATH": path}}, "logging_level": "WARNING",
              "log_to_driver": False}
    if options.address:
        return {**kwargs, "address": options.address}
    return {**kwargs, "num_cpus": options.workers, "include_dashboard": False}


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """A clear error within seconds when nothing listens at ``address`` (``ray.init`` would wait much longer)."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r} is not host:port (e.g. 127.0.0.1:6390, as `ray start --head "
                        f"--port 6390` prints)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"no Ray cluster answers at {address} ({e.strerror or e}); start one with `ray start "
                        f"--head --port {port}` or check the address") from None


def connect_ray(ray, options: ExecOptions) -> bool:
    """Connect (or start a local instance); True if this call did, so that it is shut down afterwards."""
    if ray.is_initialized():
        return False
    if options.address:
        check_reachable(options.address)
    try:
        ray.init(**ray_init_kwargs(options))
    except Exception as e:  # noqa: BLE001 - Ray raises many kinds; all end the same way for the user
        if any("InvalidAuthToken" in str(x) or "Authentication" in type(x).__name__ for x in chain(e)):
            raise UserError(RAY_AUTH) from None
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray instance"
        raise UserError(f"could not start or reach {where}: {' '.join(str(e).split())[:300]}") from None
    return True


@contextlib.contextmanager
def ray_session(args):
    """With ``--executor ray``: connected to the cluster (or a local instance started) for the block, shut down
    after it if this opened it; otherwise nothing. A study connects before it writes anything, so a cluster that
    refuses this client is one line with nothing left behind."""
    if args.executor != "ray":
        yield
        return
    ray = import_ray()
    options = ExecOptions(executor="ray", workers=args.workers or default_workers(), address=args.address)
    started = connect_ray(ray, options)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def chain(e: BaseException) -> list[BaseException]:
    """``e`` and the exceptions it was raised from (Ray wraps the cause of a failed connection)."""
    seen = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def ray_tasks(tasks, data, options: ExecOptions):
    """One Ray task per run or stack, all submitted at once (Ray schedules them on the free CPUs / GPUs).
    A worker that dies is retried once by Ray itself (``max_retries=1``); then the run is recorded failed."""
    ray = import_ray()
    started = connect_ray(ray, options)
    refs = {}
    try:
        resources = {"num_cpus": 1, "num_gpus": GPU_SHARE if options.device == "cuda" else 0}
        remote = ray.remote(ray_task).options(max_retries=ATTEMPTS - 1, retry_exceptions=False, **resources)
        box = [ray.put(data)]
        refs = {remote.remote(task, box, options.device, tuple(options.plugins)): task for task in tasks}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                task = refs.pop(ref)
                try:
                    results = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    results = failed(task, e.cause if e.cause is not None else e, options.device)
                except ray.exceptions.RayError as e:  # the worker died (twice), or the node
                    results = failed(task, f"{type(e).__name__}: the Ray worker died while training this run "
                                           f"(tried {ATTEMPTS} times)", options.device)
                yield task, results
    finally:
        for ref in refs:  # interrupted: cancel what is still queued or running
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------- progress
class Progress:
    """One bar over the runs with an ETA (tqdm) on a terminal; elsewhere (a log file, CI) a plain line now
    and then, without tqdm's carriage returns."""

    EVERY_S = 30

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        self.total, self.desc, self.done, self.start, self.shown = total, desc, 0, time.monotonic(), 0.0
        self.bar = tqdm(total=total, desc=desc, unit="run") if enabled and sys.stderr.isatty() else None
        self.lines = enabled and self.bar is None

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.lines and (now - self.shown >= self.EVERY_S or self.done == self.total):
            self.shown, elapsed = now, now - self.start
            eta = elapsed / self.done * (self.total - self.done)
            print(f"{self.desc}: {self.done}/{self.total} runs, {elapsed / 60:.1f} min elapsed, "
                  f"ETA {eta / 60:.1f} min", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- the entry point
def executor_for(tasks, data, options: ExecOptions):
    if options.executor == "ray":
        return ray_tasks(tasks, data, options)
    if options.executor != "local":
        raise UserError(f"unknown executor {options.executor!r}; valid executors: {', '.join(EXECUTORS)}")
    if options.workers > 1 and len(tasks) > 1:
        return local_pool(tasks, data, options)
    return sequential(tasks, data, options)


def train_pending(configs, data, store, options: ExecOptions = ExecOptions()) -> int:
    """Train the configs that ``store`` lacks and add each result as it comes back; return how many trained.

    The CSV exports are written at the end, also when interrupted (Ctrl-C), with every finished run kept.
    """
    pending = pending_configs(configs, store, options.force)
    n_train = len(data.train)
    for config in pending:
        if (config.train_subset or N_TRAIN) != n_train:
            raise ValueError(f"config wants train_subset={config.train_subset} but the data has {n_train} "
                             f"training images")
    if not pending:
        return 0
    if options.plugins:  # a broken plug-in is reported here, once, not by every worker
        from experiments.plugins import load_plugins

        load_plugins(list(options.plugins))
    tasks = plan_tasks(pending, options)
    progress = Progress(len(pending), f"runs → {store.folder}", options.progress)
    recorded = 0
    try:
        with contextlib.closing(executor_for(tasks, data, options)) as results_of_tasks:
            for _, results in results_of_tasks:
                for result in results:
                    store.add(result)
                recorded += len(results)
                progress.update(len(results))
    except KeyboardInterrupt:  # the command line says this, and how to resume, on one line
        raise Interrupted(f"{recorded} of {len(pending)} pending runs finished and are kept in {store.folder}") \
            from None
    finally:
        progress.close()
        store.export()
    return len(pending)
