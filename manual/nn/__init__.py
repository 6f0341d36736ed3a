"""``manual.nn``: torch.nn's module system in NumPy, every backward pass written by hand. Never imports torch.

    model = manual.nn.Sequential(manual.nn.Linear(784, 128), manual.nn.ReLU(), manual.nn.Linear(128, 10))
    loss, grads = manual.nn.loss_and_grads(model, X, y, "cross_entropy")   # grads under state_dict()'s keys
    manual.optim.SGD(model.params, lr=0.1).step(grads)

A network can also be written as data (``manual.nn.arch``): ``manual.nn.build(["linear 128", "relu",
"linear 10"], input_shape=784, seed=0)``. ``torch_ref.mirror(model)`` is the same network in torch's own modules.
"""
from manual.nn.activation import (ELU, GELU, Activation, Identity, LeakyReLU, ReLU, Sigmoid, SiLU, Softplus, Tanh)
from manual.nn.arch import build, expand
from manual.nn.conv import AvgPool2d, BatchNorm2d, Conv2d, MaxPool2d
from manual.nn.init import manual_seed
from manual.nn.linear import Linear
from manual.nn.loss import loss_and_grads, loss_value
from manual.nn.module import Module, ModuleList, Sequential
from manual.nn.norm import BatchNorm1d
from manual.nn.recurrent import GRU, LSTM, RNN, LastStep
from manual.nn.shape import Flatten, Unflatten

__all__ = ["Module", "Sequential", "ModuleList", "Linear", "BatchNorm1d", "Conv2d", "MaxPool2d", "AvgPool2d",
           "BatchNorm2d", "Flatten", "Unflatten", "Activation",
           "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "SiLU", "GELU", "Softplus", "Identity", "RNN", "LSTM", "GRU",
           "LastStep", "build", "expand", "loss_and_grads", "loss_value", "manual_seed"]
