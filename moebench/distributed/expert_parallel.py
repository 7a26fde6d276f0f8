"""Expert parallelism: an MoE layer's experts sharded over `expert_parallel` ranks, tokens moved to their
experts' ranks and back with all_to_all_single (uneven splits), autograd through both exchanges.

Layout: with world size W and expert parallel N (N divides W and the expert count E), ranks
[0..N-1], [N..2N-1], ... are expert-parallel groups; rank r holds experts [i*E/N, (i+1)*E/N) with
i = r % N. Ranks holding the same experts (r % N equal) form an expert-data-parallel group over which expert
gradients are summed. Everything that is not an expert weight is replicated and reduced by DDP.

`ep_experts` has the signature of `moebench.models.experts.reference_experts` plus keyword-only group
arguments; the layer calls it with its local weight shard, so EP is a backend-like function:

    send: sort this rank's (token, expert, weight) assignments by expert (hence by owning rank), gather the
          token rows, exchange counts, all_to_all the rows (and their local expert ids)
    compute: the layer's own backend on the received rows, one row = one assignment
    combine: all_to_all the outputs back, weight them here (so router gradients stay local), index_add
"""
from __future__ import annotations

import functools

import torch
import torch.distributed as dist

from moebench.errors import UserError
from moebench.models.experts import Assignment

from .groups import comm_timer, groups, world_size

EXPERT_PARAMS = ("w_up", "w_gate", "w_down")


# ------------------------------------------------------------------------------------------ exchange
def _all_to_all(x: torch.Tensor, out_splits: list[int], in_splits: list[int], group) -> torch.Tensor:
    x = x.contiguous()
    out = x.new_empty((sum(out_splits), *x.shape[1:]))
    with comm_timer.timed(x.device):
        dist.all_to_all_single(out, x, out_splits, in_splits, group=group)
    return out


class AllToAll(torch.autograd.Function):
    """all_to_all_single with autograd: the gradient goes back by the transposed exchange."""

    @staticmethod
    def forward(ctx, x, out_splits, in_splits, group):
        ctx.splits, ctx.group = (list(out_splits), list(in_splits)), group
        return _all_to_all(x, list(out_splits), list(in_splits), group)

    @staticmethod
    def backward(ctx, grad):
        out_splits, in_splits = ctx.splits
        return _all_to_all(grad, in_splits, out_splits, ctx.group), None, None, None


def all_to_all(x, out_splits, in_splits, group=None) -> torch.Tensor:
    return AllToAll.apply(x, out_splits, in_splits, group)


def exchange_counts(send_counts: torch.Tensor, group) -> torch.Tensor:
    recv = torch.empty_like(send_counts)
    with comm_timer.timed(send_counts.device):
        dist.all_to_all_single(recv, send_counts.contiguous(), group=group)
    return recv


# ------------------------------------------------------------------------------------------ experts fn
def ep_experts(x, assign: Assignment, w_up, w_gate, w_down, activation: str, *, local_fn,
               ep_size: int) -> torch.Tensor:
    """y[t] = sum_a weight[a] * FFN_{expert[a]}(x[t]) with the experts spread over the EP group;
    w_* are this rank's shard [E/N, ...]; assign.expert_idx holds global expert ids."""
    group = groups(ep_size)[0]  # looked up per call: modules hold no ProcessGroup past teardown
    e_local = w_up.shape[0]
    order = torch.argsort(assign.expert_idx, stable=True)
    expert = assign.expert_idx[order]
    tok, w = assign.token_idx[order], assign.weight[order]
    dest = torch.div(expert, e_local, rounding_mode="floor")
    send_counts = torch.bincount(dest, minlength=ep_size)
    recv_counts = exchange_counts(send_counts, group)
    send, recv = send_counts.tolist(), recv_counts.tolist()
    rows = all_to_all(x[tok], recv, send, group)  # [R, d] rows this rank's experts must process
    local_e = _all_to_all(expert - dest * e_local, recv, send, group)
    n = rows.shape[0]
    local = Assignment(torch.arange(n, device=x.device), local_e, torch.ones(n, dtype=x.dtype, device=x.device))
    out = local_fn(rows, local, w_up, w_gate, w_down, activation)  # [R, d], row i = FFN_{local_e[i]}(rows[i])
    back = all_to_all(out, send, recv, group)  # [A, d] in this rank's sorted assignment order
    return torch.zeros_like(x).index_add(0, tok, back * w.to(x.dtype).unsqueeze(1))


# ------------------------------------------------------------------------------------------ layout
def moe_layers(model: torch.nn.Module):
    from moebench.models.moe import MoELayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, MoELayer)]


def shard_model(model: torch.nn.Module, ep_size: int) -> list[str]:
    """Keep this rank's experts in every MoE layer and route its tokens through `ep_experts`.
    Returns the qualified names of the (now sharded) expert parameters."""
    if ep_size <= 1:
        return []
    _, _, ep_rank = groups(ep_size)
    names = []
    for name, layer in moe_layers(model):
        E = layer.cfg.num_experts
        if E % ep_size:
            raise UserError(f"train.expert_parallel: {ep_size} does not divide num_experts {E}")
        fn = functools.partial(ep_experts, local_fn=layer.experts_fn, ep_size=ep_size)
        layer.shard_experts(ep_rank, ep_size, fn)
        names += [f"{name}.{p}" for p in EXPERT_PARAMS if getattr(layer, p) is not None]
    return names


def reduce_expert_grads(model: torch.nn.Module, names: list[str], ep_size: int) -> None:
    """Expert grads hold the sum over the EP group's ranks of d(rank loss)/dw; make them d(global mean)/dw:
    sum over the expert-data-parallel group, divide by the world size (DDP averages everything else)."""
    if not names:
        return
    _, edp_group, _ = groups(ep_size)
    params = dict(model.named_parameters())
    W = world_size()
    for n in names:
        p = params[n]
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if edp_group is not None:
            with comm_timer.timed(p.device):
                dist.all_reduce(p.grad, group=edp_group)
        p.grad.div_(W)


def full_state_dict(model: torch.nn.Module, ep_size: int) -> dict:
    """The unsharded state dict (every expert in every layer), as a one-process model would have it.
    Collective: every rank must call it; the result is complete on every rank."""
    sd = model.state_dict()
    if ep_size <= 1:
        return sd
    ep_group, _, _ = groups(ep_size)
    for name, layer in moe_layers(model):
        for p in EXPERT_PARAMS:
            key = f"{name}.{p}"
            if key not in sd:
                continue
            local = sd[key].contiguous()
            parts = [torch.empty_like(local) for _ in range(ep_size)]
            dist.all_gather(parts, local, group=ep_group)
            sd[key] = torch.cat(parts, 0)
    return sd
