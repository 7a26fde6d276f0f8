"""An independent FLOP count: torch's FlopCounterMode on a real forward, to check flops.py against.

Attention runs through the math SDPA backend while counting: its bmm's are visible to FlopCounterMode, while
the fused CPU kernel has no FLOP formula registered and would be counted as zero. Routing is real, so a
capacity-limited variant shows the FLOPs of the rows it actually computed (dropped tokens cost nothing).
"""
from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def measured_forward_flops_per_token(model: torch.nn.Module, idx: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(idx)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / idx.numel()
