"""Fixtures shared by the test modules (the helpers they import: ``tests/helpers.py``).

Markers (``pyproject.toml``): ``facts`` on ``tests/*/test_facts_*.py``, absolute facts stated by hand; ``torch`` on
every test that needs torch (a module that imports it or trains on the torch backend, or a single test of a facts
module), so ``-m "facts and not torch"`` runs the torch-free facts; ``processes`` on tests that start real
processes.
"""
import pytest
import torch
import torchvision.datasets  # noqa: F401 - imported once at collection (experiments.data imports it on first
# use): processes forked from a collected session, as mutation testing forks one per mutant, then share it


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: small runs gain nothing from more, and lose a lot when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def clean_registries():
    """Plug-ins registered by a test are gone after it: the registries and the plug-in loader as they were."""
    from experiments import plugins
    from manual import activations, losses

    saved = dict(activations.ACTIVATIONS), dict(losses.LOSSES), dict(plugins._LOADED)
    yield
    for registry, before in zip((activations.ACTIVATIONS, losses.LOSSES, plugins._LOADED), saved):
        registry.clear()
        registry.update(before)


def count_landed_runs(folder) -> int:
    """Runs in ``folder``'s study database so far, read without opening it as a Store (which would write)."""
    import sqlite3
    from pathlib import Path

    try:
        with sqlite3.connect(Path(folder) / "study.db", timeout=5) as con:
            return con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # no database or no run yet
        return 0


@pytest.fixture
def landed_runs():
    """``landed_runs(folder)``: how many runs a study running in another process has recorded so far."""
    return count_landed_runs


@pytest.fixture(scope="session")
def mnist():
    """``mnist(n)``: MNIST's splits with the first ``n`` training images (``None``: all 50,000), each size read once
    per session and the same object for every test that asks for it (treat it as read-only)."""
    from experiments.data import load_mnist

    loaded = {}

    def splits(train_subset: int | None = None):
        if train_subset not in loaded:
            loaded[train_subset] = load_mnist(train_subset=train_subset)
        return loaded[train_subset]

    return splits


@pytest.fixture(scope="module")
def data(request, mnist):
    """The MNIST splits a module trains on: its ``MNIST_TRAIN`` training images (all when it sets none)."""
    return mnist(getattr(request.module, "MNIST_TRAIN", None))
