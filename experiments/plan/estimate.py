"""``--dry-run``: the plan of a study (arms, runs) and its time, estimated from a quick measurement.

Each distinct architecture (layer sizes, activation, backend, dtype, batch size, optimizer) is timed for
4 × 50 training steps on random images of MNIST's shape (the fastest round counts: the least disturbed by
other processes), plus one evaluation of the validation split
and one probe of the per-layer diagnostics; a run's time is then

    epochs × (steps per epoch × seconds per step + evaluation + probe) + test evaluation + initial probe
    + setup (building the network, moving the training images into it),

and the study's time is the sum over the runs still missing from the store, divided by the workers. The
fastest round is what a core free of other work gives; where other processes share the cores the runs take
longer than estimated (1.4-1.6× on two cores shared with five other CPU-bound processes).
"""
from __future__ import annotations

import math
import time

import numpy as np

from experiments.data import N_TRAIN, N_VAL, Split
from experiments.plan import choose, final_configs, make_arms, tune_configs
from experiments.runs import training

STEPS, REPEATS = 50, 4  # training steps timed per architecture: the fastest of REPEATS rounds of STEPS
WARMUP = 10


def architecture(config) -> tuple:
    """What a step's time depends on: the network (its layers, or the short form's sizes and batch norm), backend,
    dtype, batch size and optimizer."""
    network = config.layers if config.layers is not None else (config.layer_sizes, config.batch_norm)
    return (network, config.activation, config.backend, config.dtype, config.batch_size,
            config.optimizer, config.momentum > 0)


def random_split(n: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64))


def fastest(fn, repeats: int = REPEATS) -> float:
    """The shortest of ``repeats`` timings of ``fn()``: the estimate least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(config) -> dict:
    """Seconds per training step, per validation evaluation and per probe of ``config``'s architecture."""
    train_split = random_split(config.train_subset or N_TRAIN, 2)
    t0 = time.perf_counter()
    backend = training.make_backend(config, "cpu")
    backend.prepare(train_split)
    setup = time.perf_counter() - t0  # building the network and moving the training images into it
    X, y = backend.prepare(random_split((STEPS + WARMUP) * config.batch_size))
    val_X, val_y = backend.prepare(random_split(N_VAL, 1))
    with np.errstate(all="ignore"):
        backend.train_epoch(X, y, np.arange(WARMUP * config.batch_size), config.batch_size)
        order = np.arange(STEPS * config.batch_size)
        step = fastest(lambda: backend.train_epoch(X, y, order, config.batch_size)) / STEPS
        evaluate = fastest(lambda: backend.evaluate(val_X, val_y), 2)
        probe = fastest(lambda: backend.probe(val_X[:training.PROBE_SIZE], val_y[:training.PROBE_SIZE]), 2)
    return {"step": step, "evaluate": evaluate, "probe": probe, "setup": setup}


def run_seconds(config, cost: dict) -> float:
    steps = math.ceil((config.train_subset or N_TRAIN) / config.batch_size)
    return config.epochs * (steps * cost["step"] + cost["evaluate"] + cost["probe"]) + cost["evaluate"] + \
        cost["probe"] + cost["setup"]


def estimate(spec, runs, workers: int = 1) -> dict:
    """Arms, runs (all, and still missing from ``runs``, the study's runs table) and the estimated seconds of
    the missing ones. Reads the study, never writes it: a dry run leaves the folder as it was.

    The final seeds' tuned values are known once an arm's tuning runs are in the store; before that they are
    costed at the arm's first candidate (tuned keys are usually learning rates, which do not change a step's
    cost).
    """
    from experiments.store import FINISHED

    finished = set(runs.loc[runs["status"].isin(FINISHED), "key"]) if len(runs) else set()
    arms = make_arms(spec)
    configs = {"tune": [], "final": []}
    for arm in arms:
        tuning = tune_configs(arm, spec.tune_seeds)
        configs["tune"] += tuning
        tuned = all(c.key() in finished for c in tuning)
        chosen = choose(runs, arm, spec.tune_seeds) if tuned else dict(arm.candidates[0]) \
            if arm.candidates else {}
        configs["final"] += final_configs(arm, chosen, spec.seeds)
    costs = {}
    for config in configs["tune"] + configs["final"]:
        if architecture(config) not in costs:
            costs[architecture(config)] = measure(config)
    out = {"arms": arms, "costs": costs, "workers": workers}
    for phase, cs in configs.items():
        unique = list({c.key(): c for c in cs}.values())
        missing = [c for c in unique if c.key() not in finished]
        out[phase] = {"runs": len(unique), "missing": len(missing),
                      "seconds": sum(run_seconds(c, costs[architecture(c)]) for c in missing)}
    out["seconds"] = (out["tune"]["seconds"] + out["final"]["seconds"]) / max(workers, 1)
    return out


def describe(spec, result: dict) -> str:
    """The dry run's printout."""
    lines = [f"study {spec.name} ({spec.source}): compare {spec.compare}, "
             f"{len(result['arms'])} arms"]
    groups: dict = {}
    for arm in result["arms"]:
        groups.setdefault(arm.group, []).append(arm)
    for group, arms in groups.items():
        lines.append(f"  {group}:")
        for arm in arms:
            tuned = ""
            if arm.candidates:
                keys = list(arm.candidates[0])
                tuned = "; tune " + ", ".join(
                    f"{k} ∈ {{{', '.join(f'{c[k]:g}' if isinstance(c[k], float) else str(c[k]) for c in arm.candidates)}}}"
                    for k in keys)
            lines.append(f"    {arm.name}{tuned}")
    lines.append(f"tuning seeds {list(spec.tune_seeds) or '–'}; final seeds {list(spec.seeds)}")
    for phase, label in (("tune", "tuning runs"), ("final", "final runs")):
        r = result[phase]
        lines.append(f"{label}: {r['runs']} ({r['missing']} not yet in the store), "
                     f"about {format_seconds(r['seconds'])} of training")
    lines.append("per architecture (fastest of 4 × 50 steps, random images): " + "; ".join(
        f"{network_text(a[0])} {a[1]} {a[2]} {a[3]} batch {a[4]} {a[5]}: {c['step'] * 1e3:.2f} ms/step"
        for a, c in result["costs"].items()))
    lines.append(f"estimated time with {result['workers']} worker(s): {format_seconds(result['seconds'])} "
                 f"(sum of the missing runs / workers, at the speed of a core free of other work)")
    return "\n".join(lines)


def network_text(network) -> str:
    """The short form as its widths (784-128-128-10, "with batch norm"), layers as they are written, joined by " | "."""
    if isinstance(network[0], str):
        return " | ".join(network)
    sizes, batch_norm = network
    return "-".join(map(str, sizes)) + (" with batch norm" if batch_norm else "")


def format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
