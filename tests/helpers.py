"""Helpers the test modules import (``from tests.helpers import message``); the fixtures are in ``conftest.py``."""
import warnings

import pytest


def message(call, *args, **kwargs) -> str:
    """The whole message of the ValueError ``call(*args, **kwargs)`` raises (compared in full, not searched), with
    every warning an error: a refusal comes before any computation that could warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as error:
            call(*args, **kwargs)
    return str(error.value)
