"""Dense feed-forward block (also the shared experts of an MoE layer)."""
from __future__ import annotations

import math

import torch.nn as nn

from .activations import ACTIVATIONS


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, activation: str, n_layers: int = 1):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.gate = nn.Linear(d_model, d_ff, bias=False) if self.act.gated else None
        self.down = nn.Linear(d_ff, d_model, bias=False)
        for lin in (self.up, self.gate):
            if lin is not None:
                nn.init.normal_(lin.weight, std=0.02)
        # GPT-2 scaled init of residual projections keeps the residual stream's variance flat with depth.
        nn.init.normal_(self.down.weight, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, x):
        return self.down(self.act.hidden(self.up(x), self.gate(x) if self.gate is not None else None))
