"""Fixtures shared by the test modules."""
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
