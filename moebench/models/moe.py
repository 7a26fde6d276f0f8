"""The MoE feed-forward layer: router -> (capacity) -> experts -> weighted combine, plus shared experts."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .activations import ACTIVATIONS
from .backends import get_backend
from .config import MoEConfig
from .experts import Assignment
from .mlp import MLP
from .routers import ROUTERS, Routing
from .counters import layer_counters


def capacity_of(n_tokens: int, cfg: MoEConfig) -> int:
    return max(1, math.ceil(cfg.capacity_factor * n_tokens * cfg.top_k / cfg.num_experts))


def token_choice_assignment(r: Routing, E: int, capacity: int | None) -> tuple[Assignment, int]:
    """Flatten [T, k] choices; with a capacity, keep the first `capacity` pairs per expert.

    Priority is slot-major (every token's first choice before any second choice), as in GShard, so a second
    choice never pushes out another token's first choice. Returns the assignment and how many pairs dropped.
    """
    T, k = r.topk_idx.shape
    exp = r.topk_idx.t().reshape(-1)  # slot-major order
    tok = torch.arange(T, device=exp.device).repeat(k)
    w = r.topk_weight.t().reshape(-1)
    if capacity is None:
        return Assignment(tok, exp, w), 0
    onehot = torch.nn.functional.one_hot(exp, E)
    pos = (onehot.cumsum(0) * onehot).sum(1) - 1  # position of each pair in its expert's queue
    keep = pos < capacity
    n_drop = int((~keep).sum())
    return Assignment(tok[keep], exp[keep], w[keep]), n_drop


class MoELayer(nn.Module):
    def __init__(self, d_model: int, cfg: MoEConfig, activation: str, backend: str = "torch", n_layers: int = 1):
        super().__init__()
        self.cfg, self.activation = cfg, activation
        self.experts_fn = get_backend(backend)
        E, f = cfg.num_experts, cfg.expert_d_ff
        self.router = ROUTERS[cfg.router](d_model, cfg)
        std, out_std = 0.02, 0.02 / math.sqrt(2 * n_layers)
        self.w_up = nn.Parameter(torch.randn(E, d_model, f) * std)
        self.w_gate = nn.Parameter(torch.randn(E, d_model, f) * std) if ACTIVATIONS[activation].gated else None
        self.w_down = nn.Parameter(torch.randn(E, f, d_model) * out_std)
        self.shared = MLP(d_model, cfg.shared_experts * f, activation, n_layers) if cfg.shared_experts else None

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor):
        B, S, d = x.shape
        flat = x.reshape(B * S, d)
        r = self.router(flat, token_ids.reshape(-1), self.cfg.expert_choice_group)
        E = self.cfg.num_experts
        if r.assignment is not None:
            assign, n_drop, routed = r.assignment, 0, r.assignment.expert_idx
        else:
            cap = None if self.cfg.capacity_factor is None else capacity_of(B * S, self.cfg)
            assign, n_drop = token_choice_assignment(r, E, cap)
            routed = r.topk_idx
        y = self.experts_fn(flat, assign, self.w_up, self.w_gate, self.w_down, self.activation)
        if self.shared is not None:
            y = y + self.shared(flat)
        aux = flat.new_zeros((), dtype=torch.float32)
        if r.probs is not None and not self.router.balanced_by_construction and self.cfg.lb_coef:
            f_i = torch.bincount(routed.reshape(-1), minlength=E).float() / routed.numel()
            aux = aux + self.cfg.lb_coef * E * (f_i * r.probs.mean(0)).sum()
        if r.logits is not None and self.cfg.z_coef:
            aux = aux + self.cfg.z_coef * (torch.logsumexp(r.logits, -1) ** 2).mean()
        stats = layer_counters(E, routed, n_drop, r.probs, r.logits)
        return y.view(B, S, d), aux, stats

    # --- expert parallel (moebench.distributed.expert_parallel): not used in one process -----------------
    def shard_experts(self, ep_rank: int, ep_size: int, experts_fn) -> None:
        """Keep experts [ep_rank*E/ep_size, (ep_rank+1)*E/ep_size) and compute through `experts_fn`, which
        moves tokens to the ranks holding their experts. forward() is unchanged: it passes the local shard."""
        E = self.cfg.num_experts
        lo, hi = ep_rank * E // ep_size, (ep_rank + 1) * E // ep_size
        for name in ("w_up", "w_gate", "w_down"):
            p = getattr(self, name)
            if p is not None:
                setattr(self, name, nn.Parameter(p.detach()[lo:hi].clone()))
        self.experts_fn = experts_fn
