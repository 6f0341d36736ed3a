"""The PyTorch mirror of ``manual``: ``torch.nn`` modules trained with ``torch.optim``.

``mirror(model)`` turns any ``manual.nn`` network into torch's own modules with the same state dict;
``build(layers, input_shape, ...)`` does so for a network written as data; ``Criterion`` is the loss on top.
"""
from .mirror import Criterion, batch_loss, build, mirror, to_numpy_state, to_torch_state
from .model import MLP, check_same_spec
from .optim import make_optimizer, make_scheduler

__all__ = ["MLP", "Criterion", "batch_loss", "build", "mirror", "check_same_spec", "to_numpy_state",
           "to_torch_state", "make_optimizer", "make_scheduler"]
