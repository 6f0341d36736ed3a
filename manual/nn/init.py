"""The generator that ``manual.nn``'s layers draw their parameters from when they are constructed.

``torch.nn`` draws from torch's global generator (``torch.manual_seed``); ``manual.nn`` from this one, seeded 0
at import and reseeded by ``manual_seed``, so a script gets the same parameters on every run. Networks built
from an architecture (``manual.nn.build``) redraw every parameter from a generator of their own seed instead.
"""
from __future__ import annotations

import numpy as np

_generator = [np.random.default_rng(0)]


def manual_seed(seed: int) -> None:
    """Reseed the generator new layers draw their parameters from (as ``torch.manual_seed``)."""
    _generator[0] = np.random.default_rng(seed)


def default_generator() -> np.random.Generator:
    return _generator[0]
