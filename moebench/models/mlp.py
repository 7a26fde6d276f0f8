"""Dense feed-forward block (also the shared experts of an MoE layer)."""
from __future__ import annotations

import math

import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, activation: str, n_layers: int = 1):
        super().__init__()
        self.activation = activation
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.gate = nn.Linear(d_model, d_ff, bias=False) if activation == "swiglu" else None
        self.down = nn.Linear(d_ff, d_model, bias=False)
        for lin in (self.up, self.gate):
            if lin is not None:
                nn.init.normal_(lin.weight, std=0.02)
        # GPT-2 scaled init of residual projections keeps the residual stream's variance flat with depth.
        nn.init.normal_(self.down.weight, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, x):
        if self.activation == "swiglu":
            return self.down(F.silu(self.gate(x)) * self.up(x))
        act = F.gelu if self.activation == "gelu" else F.relu
        return self.down(act(self.up(x)))
