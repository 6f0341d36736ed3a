"""The same networks as ``manual.MLP``, built from ``torch.nn`` modules and trained by autograd.

Every activation is PyTorch's own module, and the losses are PyTorch's own
functions, so agreement with ``manual`` is agreement with an independent
implementation. Only the initial parameters are drawn by ``manual.init`` (a
seeded NumPy generator), so the same seed gives both sides identical numbers.
"""
from __future__ import annotations

import torch
from torch import nn

from manual.init import init_params
from manual.layers import check_training_batch
from manual.losses import DEFAULT_OUTPUT_ACTIVATION
from manual.network import check_inputs, check_labels, check_layer_sizes, check_state_dict
from torch_ref.mirror import activation_twin, batch_loss, check_torch_loss, torch_dtype

activation_module = activation_twin  # PyTorch's own module for a built-in; a plug-in's torch_fn otherwise


class MLP(nn.Module):
    """``nn.Linear`` layers in ``self.layers`` (and ``nn.BatchNorm1d`` in ``self.norms``) with activations
    applied in ``forward``.

    Keeping the activations out of ``self.layers`` gives the state dict exactly ``manual``'s keys:
    ``layers.0.weight``, ``layers.0.bias``, …; with ``batch_norm=True`` the hidden linear layers have no bias
    and hidden layer i has ``norms.{i}.weight`` (γ), ``.bias`` (β), ``.running_mean``, ``.running_var`` and
    ``.num_batches_tracked``.

    ``forward`` and ``loss`` check their inputs as ``manual.MLP`` does (same messages, via
    ``manual.network.check_inputs``/``check_labels``); ``validate=False`` skips that for batches of
    data already checked by ``check_batch`` (the training loop's case).
    """

    def __init__(self, layer_sizes, activation="sigmoid", loss="mse", init="normal", seed=0,
                 dtype=torch.float64, output_activation=None, device=None, batch_norm: bool = False):
        super().__init__()
        check_torch_loss(loss)
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.spec = dict(layer_sizes=self.layer_sizes, activation=activation, loss=loss, init=init,
                         output_activation=output_activation or DEFAULT_OUTPUT_ACTIVATION[loss],
                         batch_norm=bool(batch_norm))
        self.loss_name = loss
        self.act = activation_module(activation)
        self.out_act = activation_module(self.spec["output_activation"])
        dtype = torch_dtype(dtype)
        n_hidden = len(self.layer_sizes) - 2  # before batch norm a linear layer has no bias, as in manual
        self.layers = nn.ModuleList(
            nn.Linear(n_in, n_out, bias=not (batch_norm and l < n_hidden), dtype=dtype, device=device)
            for l, (n_in, n_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        )
        # momentum 0.1, eps 1e-5 and the unbiased running variance: nn.BatchNorm1d's defaults, as manual.layers
        self.norms = nn.ModuleList(nn.BatchNorm1d(n, dtype=dtype, device=device)
                                   for n in self.layer_sizes[1:-1]) if batch_norm else None
        with torch.no_grad():
            params = dict(self.named_parameters())
            for k, v in init_params(self.layer_sizes, init, seed).items():
                if k in params:  # the biases drawn for layers before batch norm are dropped, as in manual
                    params[k].copy_(torch.from_numpy(v))

    def _hidden(self, l: int, X: torch.Tensor) -> torch.Tensor:
        """What hidden layer l's activation is applied to: z_l, or BN(z_l) with batch norm."""
        z = self.layers[l](X)
        if self.norms is None:
            return z
        if self.training:
            check_training_batch(len(z))  # manual's message, not torch's "Expected more than 1 value per channel"
        return self.norms[l](z)

    def pre_activations(self, X: torch.Tensor) -> list[torch.Tensor]:
        """What each layer's activation is applied to (z_l, or BN(z_l)), for the diagnostics (dead and saturated units)."""
        zs, a = [], X
        for l in range(len(self.layers) - 1):
            zs.append(self._hidden(l, a))
            a = self.act(zs[-1])
        zs.append(self.layers[-1](a))
        return zs

    def forward(self, X: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        """Output activations: sigmoid outputs for mse, logits for cross-entropy."""
        if validate:
            X = self.check_inputs(X)
        for l in range(len(self.layers) - 1):
            X = self.act(self._hidden(l, X))
        return self.out_act(self.layers[-1](X))

    def loss(self, X: torch.Tensor, y: torch.Tensor, *, validate: bool = True) -> torch.Tensor:
        """The batch-mean loss, as ``manual``: ½Σ_k (a_k − onehot_k)² per sample, or cross-entropy."""
        if validate:
            X, y = self.check_batch(X, y)
        return batch_loss(self.forward(X, validate=False), y, self.loss_name)

    # ------------------------------------------------------------ validation
    def check_inputs(self, X) -> torch.Tensor:
        """``X`` (a tensor or array-like) checked as ``manual.MLP`` checks it, with the same messages, and cast to
        the parameters' dtype and device."""
        if isinstance(X, torch.Tensor):
            check_inputs(X.detach().cpu().numpy(), self.layer_sizes[0], None)
        else:
            X = torch.from_numpy(check_inputs(X, self.layer_sizes[0], None))
        first = self.layers[0].weight
        return X.to(first.device, first.dtype)

    def check_batch(self, X, y) -> tuple[torch.Tensor, torch.Tensor]:
        """``X`` as ``check_inputs`` gives it and ``y`` checked as ``manual.MLP`` checks labels, as int64."""
        X = self.check_inputs(X)
        if isinstance(y, torch.Tensor):
            check_labels(y.cpu().numpy(), len(X), self.layer_sizes[-1])
        else:
            y = torch.from_numpy(check_labels(y, len(X), self.layer_sizes[-1]))
        return X, y.to(X.device, torch.long)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, everything checked first as ``manual``'s (key, shapes and values named)."""
        check_state_dict(state_dict, {k: tuple(v.shape) for k, v in self.state_dict().items()})
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def check_same_spec(manual_net, torch_net: MLP) -> None:
    """Refuse to compare or exchange parameters between networks built from different specs."""
    mine = dict(layer_sizes=manual_net.layer_sizes, activation=manual_net.activation.name,
                loss=manual_net.loss_name, output_activation=manual_net.output_activation.name,
                batch_norm=manual_net.batch_norm)
    theirs = {k: torch_net.spec[k] for k in mine}
    if mine != theirs:
        diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
        raise ValueError(f"manual and torch networks differ in spec (manual, torch): {diff}")
