"""Routers: token scores -> which experts see which tokens, with what gate weight.

Each router is registered by name (the `router:` field of a variant) and returns a `Routing`. Token-choice
routers (topk, noisy_topk, switch, hash) give every token k (expert, gate) slots; the MoE layer then applies
the capacity limit. Expert choice gives each expert its own tokens, so it already holds a flat assignment.

What the rest of moebench needs to know about a router is a class attribute, read by the FLOP count, the MoE
layer, inference pruning and suite validation (never an `if router == "..."` elsewhere):
  token_choice              every token picks k experts (False: experts pick tokens; slots per token then
                            follow the capacity factor)
  balanced_by_construction  needs no load-balancing loss (hash, expert choice)
  causal                    a token's routing depends only on that token (expert choice sees the whole group)
  learned                   has router weights (pruning re-routes through them; hash has none)
  scored                    honours `score: sigmoid` and the loss-free balancing bias (topk, switch, balanced)

Scores (`score:`): softmax over experts (default), or sigmoid per expert (DeepSeek-V3), whose k gates are
normalised over the selected experts when top_k > 1 and `renormalize` (with top_k 1 the raw sigmoid gate is kept:
a normalised single gate is 1 and gives the router no gradient). Loss-free balancing (`bias_update_rate`, Wang et
al. 2024) adds a per-expert bias to the scores for the top-k choice only; models/balancing.py updates it.

- topk        GShard (Lepikhin et al. 2020) / Mixtral (Jiang et al. 2024): softmax over experts, keep the top k;
              `renormalize` rescales the k gates to sum to 1 (Mixtral) or keeps the raw probabilities (GShard).
              With k = 1 renormalize is ignored: a single renormalised gate is always 1, which would cut the
              router off from the language-model gradient.
- noisy_topk  Shazeer et al. 2017: logits + N(0,1) * softplus(x W_noise) * noise_std while training, keep the
              top k logits, softmax over those k only.
- switch      Fedus et al. 2021: top-1, gate = the chosen expert's softmax probability (renormalising a single
              gate would make it 1 and cut the router's gradient from the language-model loss).
- balanced    forced equal assignment (torchtitan's debug option): round robin over experts, learned gates.
- hash        Roller et al. 2021: expert = fixed hash of the token id, no learned router, gate 1/k.
- expert_choice  Zhou et al. 2022: every expert takes its top-C tokens by softmax score, C = k * T / E *
              capacity_factor. In a causal LM this sees the whole routing group: a token's routing depends on
              later positions' scores, which leaks information the model could not have at inference time. Set
              `expert_choice_group` to route within groups of that many positions of one sequence (as Krajewski
              et al. 2024 did); with 0 the group is the whole batch. Either way, treat its loss as non-causal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from moebench.registry import Registry

from .spec import MoEConfig
from .experts import Assignment


@dataclass
class Routing:
    logits: Optional[torch.Tensor]  # [T, E] fp32 router logits (None for hash)
    probs: Optional[torch.Tensor]  # [T, E] fp32 softmax probabilities (None for hash)
    topk_idx: Optional[torch.Tensor] = None  # [T, k] token choice
    topk_weight: Optional[torch.Tensor] = None  # [T, k]
    assignment: Optional[Assignment] = None  # expert choice: already flat


ROUTERS: Registry[type] = Registry("router")


def register_router(name: str):
    def deco(cls):
        cls.router_name = name
        return ROUTERS.add(name, cls)

    return deco


class Router(nn.Module):
    """Learned linear gate d_model -> num_experts, computed in fp32 when router_fp32 (Switch)."""

    token_choice = True
    balanced_by_construction = False
    causal = True
    learned = True
    scored = False  # honours `score: sigmoid` and the selection bias of loss-free balancing (bias_update_rate)

    def __init__(self, d_model: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = nn.Linear(d_model, cfg.routed_experts, bias=False)
        # Switch Table 3: a 10x smaller init than the usual 1/sqrt(fan_in) keeps early routing stable.
        nn.init.trunc_normal_(self.gate.weight, std=cfg.router_init_scale / math.sqrt(d_model))
        if cfg.bias_update_rate:
            # loss-free balancing (Wang et al. 2024): a buffer, never a parameter, so no optimizer touches it;
            # models/balancing.py moves it after every optimizer step from the step's loads
            self.register_buffer("expert_bias", torch.zeros(cfg.routed_experts))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.router_fp32:
            with torch.autocast(device_type=x.device.type, enabled=False):
                return F.linear(x.float(), self.gate.weight.float())
        return self.gate(x).float()

    def gate_scores(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gate scores, the distribution over experts the balancing loss and statistics read). Sigmoid
        scores (DeepSeek-V3) are independent per expert; their distribution is the scores normalised over all
        experts, as in DeepSeek-V3's sequence-wise balance loss."""
        if self.cfg.score == "sigmoid":
            s = logits.sigmoid()
            return s, s / s.sum(-1, keepdim=True)
        p = logits.softmax(-1)
        return p, p

    def select(self, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-k experts by score (+ the balancing bias, which only chooses: the gates are the unbiased
        scores of the chosen experts)."""
        if self.cfg.bias_update_rate:
            idx = (scores + self.expert_bias).topk(k, dim=-1).indices
            return scores.gather(-1, idx), idx
        return scores.max(dim=-1, keepdim=True) if k == 1 else scores.topk(k, dim=-1)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor, group: int) -> Routing:
        raise NotImplementedError


@register_router("topk")
class TopKRouter(Router):
    scored = True

    def forward(self, x, token_ids, group):
        logits = self.scores(x)
        s, probs = self.gate_scores(logits)
        w, idx = self.select(s, self.cfg.top_k)
        if self.cfg.renormalize and self.cfg.top_k > 1:  # one renormalised gate is always 1: no router gradient
            w = w / w.sum(-1, keepdim=True)
        return Routing(logits, probs, idx, w)


@register_router("switch")
class SwitchRouter(Router):
    scored = True

    def forward(self, x, token_ids, group):
        logits = self.scores(x)
        s, probs = self.gate_scores(logits)
        w, idx = self.select(s, 1)
        return Routing(logits, probs, idx, w)


@register_router("balanced")
class BalancedRouter(Router):
    """Forced balance (torchtitan's debug option): slot j of token t goes to expert (t * k + j) mod E, so every
    expert gets the same rows by construction (exactly, when T * k is a multiple of E); the gates are the
    learned scores of those experts, so the router still trains. Separates the cost of imbalance from the cost
    of the kernels in throughput runs; its FLOPs are the nominal k experts per token."""

    balanced_by_construction = True
    scored = True

    def forward(self, x, token_ids, group):
        logits = self.scores(x)
        s, probs = self.gate_scores(logits)
        T, (E, k) = s.shape[0], (self.cfg.num_experts, self.cfg.top_k)
        idx = (torch.arange(T, device=x.device).unsqueeze(1) * k + torch.arange(k, device=x.device)) % E
        w = s.gather(-1, idx)
        if self.cfg.renormalize and k > 1:
            w = w / w.sum(-1, keepdim=True)
        return Routing(logits, probs, idx, w)


@register_router("noisy_topk")
class NoisyTopKRouter(Router):
    def __init__(self, d_model, cfg):
        super().__init__(d_model, cfg)
        self.noise = nn.Linear(d_model, cfg.num_experts, bias=False)
        nn.init.zeros_(self.noise.weight)  # start noise at softplus(0) = 0.69 * noise_std, learnable from there

    def forward(self, x, token_ids, group):
        logits = self.scores(x)
        if self.training and self.cfg.noise_std > 0:
            with torch.autocast(device_type=x.device.type, enabled=False):
                std = F.softplus(F.linear(x.float(), self.noise.weight.float()))
            logits = logits + torch.randn_like(logits) * std * self.cfg.noise_std
        top, idx = logits.topk(self.cfg.top_k, dim=-1)
        w = top.softmax(-1)
        return Routing(logits, logits.softmax(-1), idx, w)


@register_router("hash")
class HashRouter(nn.Module):
    """No parameters: a fixed multiplicative hash of the token id picks k distinct experts."""

    token_choice = True
    balanced_by_construction = True
    causal = True
    learned = False
    scored = False

    def __init__(self, d_model: int, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, x, token_ids, group):
        E, k = self.cfg.num_experts, self.cfg.top_k
        h = (token_ids.long() * 2654435761 + 97) % 4294967291  # Knuth multiplicative hash mod a prime
        first = h % E
        idx = (first.unsqueeze(1) + torch.arange(k, device=x.device)) % E
        w = torch.full(idx.shape, 1.0 / k, device=x.device)
        return Routing(None, None, idx, w)


@register_router("expert_choice")
class ExpertChoiceRouter(Router):
    token_choice = False
    balanced_by_construction = True
    causal = False

    def forward(self, x, token_ids, group):
        logits = self.scores(x)
        probs = logits.softmax(-1)
        T, E = probs.shape
        g = group if group and T % group == 0 else T
        n_groups = T // g
        cf = self.cfg.capacity_factor or 1.0
        cap = max(1, min(g, math.ceil(self.cfg.top_k * g / E * cf)))
        # [groups, E, g]: each expert ranks the tokens of its group
        scores = probs.view(n_groups, g, E).transpose(1, 2)
        w, local = scores.topk(cap, dim=-1)
        offsets = (torch.arange(n_groups, device=x.device) * g).view(n_groups, 1, 1)
        tok = (local + offsets).reshape(-1)
        exp = torch.arange(E, device=x.device).view(1, E, 1).expand_as(local).reshape(-1)
        assign = Assignment(tok, exp, w.reshape(-1))
        return Routing(logits, probs, assignment=assign)
