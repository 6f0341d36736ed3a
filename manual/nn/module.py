"""``Module`` and ``Sequential``: torch.nn's containers, in NumPy, with a hand-written backward pass.

A module holds its parameters and buffers by name and its children by name, exactly as ``torch.nn.Module``
does, so ``state_dict()`` builds the same keys torch builds: the child's name, a dot, the parameter's name
(``0.weight`` in a ``Sequential``; ``layers.0.weight`` for a child list named ``layers``). Order: a module's
own parameters, then its own buffers, then each child in turn, as ``torch.nn.Module.state_dict``.

Each layer is a forward/backward pair (the equations are in ``manual.layers``, ``manual.conv``, …):

    out = module.forward(x)           # keeps what backward needs (its cache) on the module
    dx  = module.backward(dout)       # ∂E/∂x from dout = ∂E/∂out; ∂E/∂θ into module.grads[name]

so one forward must precede each backward. ``Sequential.backward`` is the chain rule written once: the
children in reverse order, each turning ∂E/∂(its output) into ∂E/∂(its input).
"""
from __future__ import annotations

import numpy as np


class Module:
    """Base class: parameters, buffers and children by name; ``state_dict`` / ``load_state_dict``; train/eval.

    A subclass registers its arrays in ``__init__`` with ``register_parameter`` / ``register_buffer`` (they are
    then attributes: ``self.weight``), its children by assigning modules to attributes (``self.layers = ...``),
    and implements ``forward(x)`` and ``backward(dout)``. ``torch_spec()`` names its torch counterpart.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        self.training = True
        self.grads: dict = {}  # own parameters' gradients after backward, by local name ("weight", …)

    # ------------------------------------------------------------------ registration
    def register_parameter(self, name: str, value: np.ndarray) -> None:
        self._parameters[name] = value

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value

    def add_module(self, name: str, module: "Module") -> None:
        self._modules[str(name)] = module

    def __getattr__(self, name: str):
        for table in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(table, {})
            if name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_parameters", {}):
            self._parameters[name] = value
        elif name in self.__dict__.get("_buffers", {}):
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ traversal
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix: str = ""):
        """This module and every descendant, pre-order, with its dotted name ("" for this one)."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def _named(self, table: str, prefix: str = ""):
        for module_name, module in self.named_modules(prefix):
            for name, value in getattr(module, table).items():
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, prefix: str = ""):
        """(key, array) for every parameter, keyed as in ``state_dict()``; the arrays themselves (optimizers update
        them in place)."""
        return self._named("_parameters", prefix)

    def named_buffers(self, prefix: str = ""):
        return self._named("_buffers", prefix)

    def named_grads(self) -> dict:
        """{state-dict key: ∂E/∂θ} after ``backward``, in ``named_parameters()``'s order."""
        grads = {}
        for module_name, module in self.named_modules():
            for name in module._parameters:
                key = f"{module_name}.{name}" if module_name else name
                if name not in module.grads:
                    raise RuntimeError(f"no gradient for {key}: call forward, then backward, first")
                grads[key] = module.grads[name]
        return grads

    @property
    def params(self) -> dict:
        """{key: array} of every parameter: what ``manual.optim``'s optimizers take and update in place."""
        return dict(self.named_parameters())

    @property
    def buffers(self) -> dict:
        """{key: array} of every buffer (batch norm's running estimates): state that no optimizer touches."""
        return dict(self.named_buffers())

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """A copy of every parameter and buffer under torch's keys and in torch's order."""
        state = {}
        for module_name, module in self.named_modules():
            for name, value in [*module._parameters.items(), *module._buffers.items()]:
                state[f"{module_name}.{name}" if module_name else name] = value.copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Copy parameters and buffers in, cast to each array's dtype (a batch count stays an integer).

        Everything is checked before anything is assigned (``check_state_dict``): the keys and shapes must match
        exactly, values must be finite real numbers, running variances non-negative, batch counts integers ≥ 0.
        """
        from manual.network import as_array, check_state_dict

        targets = {**self.params, **self.buffers}
        check_state_dict(state, {k: v.shape for k, v in self.state_dict().items()})
        for key, target in targets.items():
            target[...] = as_array(state[key])

    def to(self, dtype) -> "Module":
        """Every floating-point parameter and buffer cast to ``dtype``, in place (integer counts stay integers)."""
        from manual.network import as_dtype

        dtype = as_dtype(dtype)
        for module in dict(self.named_modules()).values():
            for table in (module._parameters, module._buffers):
                for name, value in table.items():
                    if np.issubdtype(value.dtype, np.floating):
                        table[name] = value.astype(dtype)
        return self

    @property
    def dtype(self):
        """The floating-point type of the parameters (float64 for a module without any)."""
        for value in self.params.values():
            return value.dtype.type
        return np.float64

    # ------------------------------------------------------------------ mode
    def train(self, mode: bool = True) -> "Module":
        """Training mode (the default), as ``nn.Module.train``: batch norm uses and tracks batch statistics."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # ------------------------------------------------------------------ the layer's own
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, input_grad: bool = True):
        """∂E/∂x from dout = ∂E/∂out (None when ``input_grad`` is False); fills ``self.grads``."""
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def reset_parameters(self, rng: np.random.Generator, init: str) -> None:
        """Draw this module's parameters from ``rng`` with the initialiser ``init`` (``manual.init``); none here."""

    def output_shape(self, input_shape: tuple) -> tuple:
        """The shape of one example's output for one example's input shape (no batch axis); the same here."""
        return tuple(input_shape)

    def torch_spec(self) -> tuple[str, dict]:
        """(the ``torch.nn`` class that mirrors this module, its constructor's arguments)."""
        raise NotImplementedError(f"{type(self).__name__} names no torch counterpart")

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): {'  '.join(repr(child).splitlines(True))}" for name, child in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


class ModuleList(Module):
    """Children named "0", "1", … held for their parameters (``torch.nn.ModuleList``); the owner decides the order."""

    def __init__(self, modules=()):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise ValueError(f"{type(self).__name__} takes manual.nn modules, got {type(module).__name__} at "
                                 f"position {i}")
            self.add_module(str(i), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def torch_spec(self):
        return "ModuleList", {}


class Sequential(ModuleList):
    """Children named "0", "1", … applied in order, as ``torch.nn.Sequential``; backward runs them in reverse.

    ``Sequential(Linear(4, 3), ReLU(), Linear(3, 2))`` has the state-dict keys ``0.weight``, ``0.bias``,
    ``2.weight``, ``2.bias``, as ``torch.nn.Sequential`` of the same layers has.
    """

    def __init__(self, *modules: Module):
        super().__init__(modules)

    def forward(self, x):
        for module in self._modules.values():
            x = module.forward(x)
        return x

    def trace(self, x) -> list[tuple]:
        """The forward pass keeping each child's input and output: [(name, module, input, output), …]."""
        steps = []
        for name, module in self._modules.items():
            out = module.forward(x)
            steps.append((name, module, x, out))
            x = out
        return steps

    def backward(self, dout, input_grad: bool = True):
        """The chain rule: each child, last first, turns ∂E/∂(its output) into ∂E/∂(its input). The first child
        computes ∂E/∂x only if ``input_grad`` (a network's input, the data, needs none)."""
        modules = list(self._modules.values())
        for i in range(len(modules) - 1, -1, -1):
            dout = modules[i].backward(dout, input_grad=input_grad or i > 0)
        return dout

    def output_shape(self, input_shape: tuple) -> tuple:
        for module in self._modules.values():
            input_shape = module.output_shape(input_shape)
        return input_shape

    def torch_spec(self):
        return "Sequential", {}
