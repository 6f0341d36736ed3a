"""A NumPy-only MLP whose every gradient is derived by hand. Never imports torch."""
from . import activations, init, losses, optim
from .activations import ACTIVATIONS
from .init import INITS
from .losses import LOSSES
from .network import MLP

__all__ = ["MLP", "ACTIVATIONS", "LOSSES", "INITS", "activations", "init", "losses", "optim"]
