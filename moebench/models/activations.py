"""The FFN activations, one record each, read by the models (dense FFN and every expert backend), the FLOP count
(how many d x f matrices an FFN has) and the Triton kernels (which take the name; kernels.activation.ACT_CODES
must know every name registered here, a test checks it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from moebench.registry import Registry


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]  # elementwise; for a gated FFN, applied to the gate projection
    gated: bool = False  # GLU family: hidden = fn(x @ W_gate) * (x @ W_up)

    @property
    def n_matrices(self) -> int:
        """d x f weight matrices of one FFN (up, down, and the gate when gated)."""
        return 3 if self.gated else 2

    def hidden(self, up: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        return self.fn(gate) * up if self.gated else self.fn(up)


ACTIVATIONS: Registry[Activation] = Registry("activation")
for _act in (Activation("gelu", F.gelu), Activation("relu", F.relu), Activation("swiglu", F.silu, gated=True)):
    ACTIVATIONS.add(_act.name, _act)
