"""The PyTorch mirror of ``manual``: ``torch.nn`` modules trained with ``torch.optim``."""
from .model import MLP, check_same_spec, to_numpy_state, to_torch_state
from .optim import make_optimizer, make_scheduler

__all__ = ["MLP", "check_same_spec", "to_numpy_state", "to_torch_state", "make_optimizer", "make_scheduler"]
