"""Fixtures shared by the test modules."""
import pytest
import torch


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
