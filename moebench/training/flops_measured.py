"""An independent FLOP count: torch's FlopCounterMode on a real forward, to check flops.py against.

Attention runs through the math SDPA backend while counting: its bmm's are visible to FlopCounterMode, while
the fused CPU kernel has no FLOP formula registered and would be counted as zero. For the same reason experts
run through the per-expert matmul path (torch_loop) while counting: FlopCounterMode has no formula for
torch._grouped_mm or our Triton custom ops. Routing is real, so a capacity-limited variant shows the FLOPs of
the rows it actually computed (dropped tokens cost nothing).
"""
from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def measured_forward_flops_per_token(model: torch.nn.Module, idx: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    swapped = _countable_experts(model)
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(idx)
    finally:
        model.train(was_training)
        for layer, fn in swapped:
            layer.experts_fn = fn
    return counter.get_total_flops() / idx.numel()


def _countable_experts(model) -> list:
    """Point every MoE layer that uses a one-process backend at torch_loop; return what to restore."""
    from moebench.models.backends import BACKENDS, torch_loop_experts
    from moebench.models.moe import MoELayer

    local = set(BACKENDS.values())  # an expert-parallel layer's exchange function is left alone
    swapped = []
    for m in model.modules():
        if isinstance(m, MoELayer) and m.experts_fn in local:
            swapped.append((m, m.experts_fn))
            m.experts_fn = torch_loop_experts
    return swapped
