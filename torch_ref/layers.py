"""torch_ref's own modules for ``manual.nn`` layers that torch.nn has no class for (``torch_ref.mirror`` builds them).

``LastStep`` keeps the last time step of a recurrent layer's output: ``nn.LSTM`` returns (output, (h_n, c_n)),
which ``nn.Sequential`` hands on whole, so ``nn.Sequential(nn.LSTM(28, 128, batch_first=True), LastStep(),
nn.Linear(128, 10))`` reads the last hidden state of the top layer, as ``manual.nn.LastStep`` does.
"""
from __future__ import annotations

import torch
from torch import nn


class LastStep(nn.Module):
    """(output (B, T, H), state) or output alone → output[:, −1] (B, H); autograd does the rest."""

    def forward(self, x) -> torch.Tensor:
        output = x[0] if isinstance(x, tuple) else x
        return output[:, -1]
