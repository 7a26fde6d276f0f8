"""The MoE feed-forward layer: router -> (capacity) -> experts -> weighted combine, plus shared experts.

Precision: under autocast the experts run in the autocast dtype exactly where the dense FFN's nn.Linear does,
whatever the backend: the layer casts the expert input and weights once and runs the backend with autocast off
(torch._grouped_mm is not autocast-eligible, LayerNorm hands fp32 to the layer, the Triton path computes in
x's dtype), so dense and MoE compare like with like. The router keeps its own policy (router_fp32).

Expert statistics (models/counters.py) are computed only when asked for (`collecting_stats(model)`), as
device tensors: training steps and timed inference never pay for them.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from .activations import ACTIVATIONS
from .backends import BACKENDS, get_backend
from .compiled_experts import compiled_experts, select
from .spec import MoEConfig
from .experts import Assignment
from .mlp import MLP
from .routers import ROUTERS, Routing
from .counters import layer_counters
from .balancing import balance_loss_fi, count_step_load, tracks_step_load


def capacity_of(n_tokens: int, cfg: MoEConfig) -> int:
    return max(1, math.ceil(cfg.capacity_factor * n_tokens * cfg.top_k / cfg.num_experts))


def token_choice_assignment(r: Routing, E: int, capacity: int | None) -> tuple[Assignment, torch.Tensor | int]:
    """Flatten [T, k] choices; with a capacity, keep the first `capacity` pairs per expert.

    Priority is slot-major (every token's first choice before any second choice), as in GShard, so a second
    choice never pushes out another token's first choice. Returns the assignment and how many pairs dropped
    (a device tensor: nothing here reads a value on the host). Selecting the kept pairs is one `nonzero`, whose
    size only the device knows (on CUDA one sync per capacity-limited layer): dropped pairs are then not
    computed at all, the saving the capacity-factor throughput and FLOP-accounting claims measure.
    """
    assign, keep, n_drop = token_choice_pairs(r, E, capacity)
    return select(assign, keep), n_drop


def token_choice_pairs(r: Routing, E: int, capacity: int | None) -> tuple[Assignment, torch.Tensor | None,
                                                                           torch.Tensor | int]:
    """Every [T, k] choice as a pair in slot-major order, the mask of the pairs a capacity keeps (None when
    dropless) and how many it drops: token_choice_assignment before its `nonzero`, so the compiled layer can
    hand the selection to the expert op with no data-dependent shape in the graph (models/compiled_experts.py)."""
    T, k = r.topk_idx.shape
    exp = r.topk_idx.t().reshape(-1)  # slot-major order
    tok = torch.arange(T, device=exp.device).repeat(k)
    w = r.topk_weight.t().reshape(-1)
    if capacity is None:
        return Assignment(tok, exp, w), None, 0
    # a comparison, not F.one_hot, whose CPU range check reads the indices back on the host
    onehot = (exp.unsqueeze(1) == torch.arange(E, device=exp.device)).long()
    pos = (onehot.cumsum(0) * onehot).sum(1) - 1  # position of each pair in its expert's queue
    keep = pos < capacity
    return Assignment(tok, exp, w), keep, (~keep).sum()


def real_slots(assign: Assignment, E: int) -> Assignment:
    """The slots routed to real experts: a zero-compute expert's slot (index >= E) adds 0 and is not computed.
    Like a capacity limit, selecting them is one `nonzero` (on CUDA one sync per layer): the compute saved is
    what zero-compute experts are for (MoE++)."""
    return select(assign, assign.expert_idx < E)


class MoELayer(nn.Module):
    def __init__(self, d_model: int, cfg: MoEConfig, activation: str, backend: str = "torch", n_layers: int = 1):
        super().__init__()
        self.cfg, self.activation = cfg, activation
        self.backend, self.experts_fn = backend, get_backend(backend)
        E, f = cfg.num_experts, cfg.expert_d_ff
        self.router = ROUTERS[cfg.router](d_model, cfg)
        std, out_std = 0.02, 0.02 / math.sqrt(2 * n_layers)
        self.w_up = nn.Parameter(torch.randn(E, d_model, f) * std)
        self.w_gate = nn.Parameter(torch.randn(E, d_model, f) * std) if ACTIVATIONS[activation].gated else None
        self.w_down = nn.Parameter(torch.randn(E, f, d_model) * out_std)
        self.shared = MLP(d_model, cfg.shared_experts * f, activation, n_layers) if cfg.shared_experts else None
        self.collect_stats = False  # set by collecting_stats(); a plain attribute so torch.compile can guard it
        # rows per expert over the current optimizer step (models/balancing.py). Plain attributes, not buffers:
        # DDP broadcasts buffers from rank 0 at every forward, which would overwrite each rank's own counts.
        self.step_load: torch.Tensor | None = None
        self.reduce_load = None  # the sum over data-parallel ranks (balancing.set_reduce); None in one process

    def experts(self, flat: torch.Tensor, assign: Assignment, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The expert computation over the pairs `keep` selects (all when None), in the dtype the dense FFN would
        use here (see the module docstring). Under torch.compile a backend the compiler cannot trace runs as one
        opaque op (models/compiled_experts.py); eager calls it directly."""
        dev = flat.device.type
        w_up, w_gate, w_down = self.w_up, self.w_gate, self.w_down
        autocast = torch.is_autocast_enabled(dev)
        if autocast:
            dt = torch.get_autocast_dtype(dev)
            cast = lambda w: None if w is None else w.to(dt)  # noqa: E731 - grads flow back in the weights' dtype
            flat, w_up, w_gate, w_down = flat.to(dt), cast(w_up), cast(w_gate), cast(w_down)
        with torch.autocast(dev, enabled=False) if autocast else contextlib.nullcontext():
            if torch.compiler.is_compiling() and self.backend in BACKENDS:
                return compiled_experts(flat, assign, keep, w_up, w_gate, w_down, self.activation, self.backend,
                                        self.experts_fn)
            return self.experts_fn(flat, select(assign, keep), w_up, w_gate, w_down, self.activation)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor):
        B, S, d = x.shape
        flat = x.reshape(B * S, d)
        r = self.router(flat, token_ids.reshape(-1), self.cfg.expert_choice_group)
        E = self.cfg.routed_experts  # routing, balancing and statistics see the zero-compute experts too
        if r.assignment is not None:
            assign, keep, n_drop, routed = r.assignment, None, 0, r.assignment.expert_idx
        else:
            cap = None if self.cfg.capacity_factor is None else capacity_of(B * S, self.cfg)
            assign, keep, n_drop = token_choice_pairs(r, E, cap)
            routed = r.topk_idx
            if self.cfg.null_experts:  # zero-compute slots are not computed (real_slots): one selection for both
                real = assign.expert_idx < self.cfg.num_experts
                keep = real if keep is None else keep & real
        y = self.experts(flat, assign, keep)
        if self.shared is not None:
            y = y + self.shared(flat)
        if self.training and tracks_step_load(self.cfg):
            with torch.no_grad():
                count_step_load(self, routed, E)
        aux = flat.new_zeros((), dtype=torch.float32)
        if r.probs is not None and not self.router.balanced_by_construction and self.cfg.lb_coef:
            f_i = balance_loss_fi(self, routed, E, B)
            p_i = r.probs.view(B, S, E).mean(1) if f_i.dim() == 2 else r.probs.mean(0)
            aux = aux + self.cfg.lb_coef * E * (f_i * p_i).sum(-1).mean()
        if r.logits is not None and self.cfg.z_coef:
            aux = aux + self.cfg.z_coef * (torch.logsumexp(r.logits, -1) ** 2).mean()
        stats = layer_counters(E, routed, n_drop, r.probs, r.logits) if self.collect_stats else None
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
        self.backend, self.experts_fn = "expert_parallel", experts_fn  # not a registered backend: never the op


@contextlib.contextmanager
def collecting_stats(model: nn.Module, on: bool = True):
    """Within the block, every MoE layer of `model` returns its expert counters (device tensors); restored after."""
    layers = [m for m in model.modules() if isinstance(m, MoELayer)]
    before = [m.collect_stats for m in layers]
    for m in layers:
        m.collect_stats = on
    try:
        yield
    finally:
        for m, b in zip(layers, before):
            m.collect_stats = b
