"""The FFN activations, one record each, read by the models (dense FFN and every expert backend), the FLOP count
(how many d x f matrices an FFN has) and the Triton kernels (which take the name; kernels.activation.ACT_CODES
must know every name registered here, a test checks it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from moebench.registry import Registry

from .names import ACTIVATION_SHAPES


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]  # elementwise; for a gated FFN, applied to the gate projection
    gated: bool = False  # GLU family: hidden = fn(x @ W_gate) * (x @ W_up)

    @property
    def n_matrices(self) -> int:
        return ACTIVATION_SHAPES[self.name].n_matrices

    def hidden(self, up: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        return self.fn(gate) * up if self.gated else self.fn(up)


# the names and shapes are models/names.py's (torch-free, for the planner); here each gets its function
FUNCTIONS = {"gelu": F.gelu, "relu": F.relu, "swiglu": F.silu}
ACTIVATIONS: Registry[Activation] = Registry("activation")
for _name, _shape in ACTIVATION_SHAPES.items():
    ACTIVATIONS.add(_name, Activation(_name, FUNCTIONS[_name], gated=_shape.gated))
