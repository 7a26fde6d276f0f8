"""State an MoE layer keeps across the micro-batches of one optimizer step, all of it on the device:

- loss-free balancing (Wang et al. 2024, arXiv 2408.15664; DeepSeek-V3): after every optimizer step each
  router's `expert_bias` moves by u * sign(mean load - load_i), from the rows routed to each expert over the
  whole step (every micro-batch, summed over data-parallel ranks). The bias only chooses experts
  (models/routers.py); it is a buffer, so no optimizer sees it, and it is saved with the model's state.
- global-batch balancing (Qiu et al. 2025, "Demons in the Detail"): with `lb_scope: global` the f_i of the
  balancing loss is taken over the step's micro-batches so far, all-reduced over data-parallel ranks before
  the loss (P_i stays this micro-batch's). After the last micro-batch it is f_i of the whole global batch.

`reduce` is a sum over data-parallel ranks of a device tensor (Parallel.sum_over_ranks; None in one process):
a collective, never a host read.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .experts import expert_counts

Reduce = Optional[Callable[[torch.Tensor], torch.Tensor]]


def tracks_step_load(cfg) -> bool:
    return bool(cfg.bias_update_rate) or cfg.lb_scope == "global"


def count_step_load(layer, routed: torch.Tensor, E: int) -> torch.Tensor:
    """Add this micro-batch's rows per expert to the layer's step counts (global over ranks with lb_scope
    global) and return the step's counts so far."""
    c = expert_counts(routed, E)
    if layer.cfg.lb_scope == "global" and layer.reduce_load is not None:
        c = layer.reduce_load(c)
    layer.step_load = c if layer.step_load is None else layer.step_load + c
    return layer.step_load


def balance_loss_fi(layer, routed: torch.Tensor, E: int, n_seq: int) -> torch.Tensor:
    """f_i of the load-balancing loss: [E] per micro-batch or over the step's global batch, [n_seq, E] per
    sequence (lb_scope: sequence, DeepSeek-V3's sequence-wise loss)."""
    if layer.cfg.lb_scope == "global" and layer.training:
        counts = layer.step_load
        return counts.float() / counts.sum().clamp_min(1)
    if layer.cfg.lb_scope == "sequence":
        T, k = routed.shape
        seq = torch.arange(T, device=routed.device).div(T // n_seq, rounding_mode="floor").unsqueeze(1)
        per = expert_counts(seq * E + routed, n_seq * E).view(n_seq, E)
        return per.float() / (T // n_seq * k)
    return expert_counts(routed, E).float() / routed.numel()


def end_of_step(model: torch.nn.Module, reduce: Reduce = None) -> None:
    """After the optimizer step: move every loss-free bias toward equal load and clear the step's counts. The
    counts that still need summing over ranks travel in one collective."""
    layers = [m for m in model.modules() if hasattr(m, "reduce_load") and m.step_load is not None]
    todo = [m for m in layers if m.cfg.bias_update_rate]
    if todo:
        loads = [m.step_load for m in todo]
        local = [i for i, m in enumerate(todo) if not (m.cfg.lb_scope == "global" and m.reduce_load is not None)]
        if reduce is not None and local:
            summed = reduce(torch.cat([loads[i] for i in local])).split([loads[i].numel() for i in local])
            for i, s in zip(local, summed):
                loads[i] = s
        with torch.no_grad():
            for m, load in zip(todo, loads):
                f = load.float()
                m.router.expert_bias.add_(m.cfg.bias_update_rate * torch.sign(f.mean() - f))
    for m in layers:
        m.step_load = None


def set_reduce(model: torch.nn.Module, reduce: Reduce) -> None:
    """Give every MoE layer the data-parallel sum its global-batch f_i uses."""
    for m in model.modules():
        if hasattr(m, "reduce_load"):
            m.reduce_load = reduce
