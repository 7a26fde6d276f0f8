"""Assignment builders and an independent per-token oracle shared by the kernel tests."""
from __future__ import annotations

import torch

from moebench.kernels.moe_ops import triton_experts
from moebench.models.experts import Assignment, expert_ffn


def triton_assign(x, assign, w_up, w_gate, w_down, activation):
    """triton_experts with reference_experts' signature (an Assignment), so tests can swap the two."""
    return triton_experts(x, assign.token_idx, assign.expert_idx, assign.weight, w_up, w_gate, w_down,
                          activation)


def topk_assign(T, E, k, gen, capacity=None, empty_expert=None):
    """Top-k routing; optional per-expert capacity drops later tokens (some tokens end with no assignment)."""
    logits = torch.randn(T, E, generator=gen)
    if empty_expert is not None:
        logits[:, empty_expert] = -1e9
    w, idx = logits.softmax(-1).topk(k)
    tok = torch.arange(T).repeat_interleave(k)
    exp, wt = idx.reshape(-1), w.reshape(-1)
    if capacity is not None:
        keep = torch.zeros_like(exp, dtype=torch.bool)
        seen = [0] * E
        for a, e in enumerate(exp.tolist()):
            if seen[e] < capacity:
                seen[e] += 1
                keep[a] = True
        tok, exp, wt = tok[keep], exp[keep], wt[keep]
    return Assignment(tok, exp, wt)


def all_to_one_assign(T, E, gen):
    """Every token goes to expert 0 (weight 1), plus a second random expert: one hot expert, several empty."""
    tok = torch.arange(T).repeat_interleave(2)
    exp = torch.stack([torch.zeros(T, dtype=torch.int64), torch.randint(1, 3, (T,), generator=gen)], 1).reshape(-1)
    return Assignment(tok, exp, torch.rand(2 * T, generator=gen))


def expert_choice_assign(T, E, capacity, gen):
    """Each expert picks its top-`capacity` tokens: a token can appear several times or never."""
    scores = torch.randn(T, E, generator=gen).softmax(-1)
    w, tok = scores.t().topk(capacity, dim=1)  # [E, capacity]
    exp = torch.arange(E).repeat_interleave(capacity)
    return Assignment(tok.reshape(-1), exp, w.reshape(-1))


def make_weights(E, d, f, activation, dtype, gen):
    def r(*shape, fan):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) / fan ** 0.5).to(dtype)

    w_up = r(E, d, f, fan=d)
    w_gate = r(E, d, f, fan=d) if activation == "swiglu" else None
    w_down = r(E, f, d, fan=f)
    return w_up, w_gate, w_down


def per_token_loop(x, assign, w_up, w_gate, w_down, activation):
    """A second oracle, independent of the reference's grouping: one FFN call per assignment."""
    y = torch.zeros_like(x)
    for t, e, w in zip(assign.token_idx.tolist(), assign.expert_idx.tolist(), assign.weight):
        out = expert_ffn(x[t:t + 1], w_up[e], None if w_gate is None else w_gate[e], w_down[e], activation)
        y = y.index_add(0, torch.tensor([t]), out * w.to(x.dtype))
    return y
