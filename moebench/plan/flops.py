"""Analytic parameter and FLOP counts of a ModelConfig: pure functions, term by term.

Conventions (stated in the README and the report):
- A matmul of [m, n] x [n, p] costs 2*m*n*p FLOPs; norms, softmax, activations, RoPE are not counted (they are
  not matmuls; FlopCounterMode does not count them either).
- Attention scores: QK^T and AV over the full context, 2 * 2 * seq_len * d_model per token per layer
  forward, with no discount for the causal mask (PaLM App. B: 6N + 12 L H Q T for training; Kaplan et al.
  2020 count only QK^T, a factor 2 lower on this term).
- MoE: the router (2 * d * E) and k experts per token (plus shared experts); capacity padding, where a
  capacity factor makes experts compute capacity_factor * k rows per token on fixed-shape hardware, is
  reported separately as `expert_padded` and not used for matching (our backends compute only real rows).
- Zero-compute experts (null_experts): matched on the upper bound, every slot on a real expert; what they
  save is measured (flops_measured, FlopCounterMode), not assumed.
- Expert choice processes k * capacity_factor token-slots per token on average.
- Training = 3 x forward (backward = 2 x forward: gradients w.r.t. activations and weights).
"""
from __future__ import annotations

from dataclasses import dataclass

# the torch-free tables: planning a CPU suite never imports torch (tests/plan/test_plan_no_torch.py)
from moebench.models.names import ACTIVATION_SHAPES, ROUTER_TRAITS
from moebench.models.spec import ModelConfig


def ffn_matrices(activation: str) -> int:
    return ACTIVATION_SHAPES[activation].n_matrices


def norm_params(cfg: ModelConfig) -> int:
    return cfg.d_model if cfg.norm == "rmsnorm" else 2 * cfg.d_model


def attn_params(cfg: ModelConfig) -> int:
    d, hd = cfg.d_model, cfg.head_dim
    return d * cfg.n_heads * hd * 2 + 2 * d * cfg.kv_heads * hd  # q, o, and k, v (fewer heads under GQA)


def slots_per_token(cfg: ModelConfig) -> float:
    m = cfg.moe
    if not ROUTER_TRAITS[m.router].token_choice:  # experts pick capacity_factor * k * T / E tokens each
        return m.top_k * (m.capacity_factor or 1.0)
    return float(m.top_k)


@dataclass(frozen=True)
class Counts:
    params_total: int
    params_active: int
    params_embedding: int
    forward_flops_per_token: float
    train_flops_per_token: float
    terms: dict  # forward FLOPs per token, by term


def count(cfg: ModelConfig) -> Counts:
    d, V, L, S = cfg.d_model, cfg.vocab_size, cfg.n_layers, cfg.seq_len
    nm = ffn_matrices(cfg.activation)
    emb = V * d + (S * d if cfg.pos == "learned" else 0)
    head = 0 if cfg.tie_embeddings else V * d
    per_layer_common = attn_params(cfg) + 2 * norm_params(cfg)
    total = active = emb + head + norm_params(cfg) + L * per_layer_common
    terms = {
        "attn_proj": 2.0 * L * attn_params(cfg),
        "attn_scores": 2.0 * 2 * L * S * d,
        "dense_ffn": 0.0,
        "router": 0.0,
        "experts": 0.0,
        "shared_experts": 0.0,
        "lm_head": 2.0 * d * V,
    }
    padded = 0.0
    m = cfg.moe
    for i in range(L):
        if cfg.is_moe_layer(i):
            one = nm * d * m.expert_d_ff
            shared = m.shared_experts * one
            router = d * m.routed_experts  # zero-compute experts are scored like the others
            total += router + m.num_experts * one + shared
            slots = slots_per_token(cfg)
            active += router + round(slots * one) + shared
            terms["router"] += 2.0 * router
            terms["experts"] += 2.0 * slots * one
            terms["shared_experts"] += 2.0 * shared
            token_choice = ROUTER_TRAITS[m.router].token_choice  # expert choice has no padding: capacity is its rule
            cf = m.capacity_factor if (m.capacity_factor and token_choice) else 1.0
            padded += 2.0 * slots * cf * one
        else:
            total += nm * d * cfg.d_ff
            active += nm * d * cfg.d_ff
            terms["dense_ffn"] += 2.0 * nm * d * cfg.d_ff
    fwd = sum(terms.values())
    terms["expert_padded"] = padded  # informational, not part of the sum
    return Counts(total, active, emb, fwd, 3.0 * fwd, terms)

