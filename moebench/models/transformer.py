"""A decoder-only transformer (pre-norm, causal SDPA attention, RoPE or learned positions, GQA) whose
feed-forward block is a dense MLP or an MoE layer, chosen per block by ModelConfig.is_moe_layer."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .spec import ModelConfig
from .mlp import MLP
from .moe import MoELayer


@dataclass
class ModelOutput:
    logits: torch.Tensor
    aux_loss: torch.Tensor  # sum of MoE auxiliary losses (already scaled by their coefficients)
    # one dict of device tensors per MoE layer (models/counters.py), only inside collecting_stats(model)
    expert_counters: list = field(default_factory=list)


def rope_cache(seq_len: int, head_dim: int, device, base: float = 10000.0):
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    ang = torch.outer(torch.arange(seq_len, device=device).float(), inv)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):  # x [B, H, S, hd]; rotate pairs (x1, x2) of the two halves
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos[: x.shape[2]], sin[: x.shape[2]]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def make_norm(cfg: ModelConfig) -> nn.Module:
    return nn.RMSNorm(cfg.d_model) if cfg.norm == "rmsnorm" else nn.LayerNorm(cfg.d_model)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        hd, kv = cfg.head_dim, cfg.kv_heads
        self.q = nn.Linear(cfg.d_model, cfg.n_heads * hd, bias=False)
        self.kv = nn.Linear(cfg.d_model, 2 * kv * hd, bias=False)
        self.o = nn.Linear(cfg.n_heads * hd, cfg.d_model, bias=False)

    def forward(self, x, rope):
        B, S, _ = x.shape
        hd, H, KV = self.cfg.head_dim, self.cfg.n_heads, self.cfg.kv_heads
        q = self.q(x).view(B, S, H, hd).transpose(1, 2)
        k, v = self.kv(x).view(B, S, 2, KV, hd).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        drop = self.cfg.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop, enable_gqa=KV != H)
        return self.o(y.transpose(1, 2).reshape(B, S, H * hd))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, i: int, backend: str):
        super().__init__()
        self.norm1, self.norm2 = make_norm(cfg), make_norm(cfg)
        self.attn = Attention(cfg)
        self.is_moe = cfg.is_moe_layer(i)
        if self.is_moe:
            self.ffn = MoELayer(cfg.d_model, cfg.moe, cfg.activation, backend, cfg.n_layers)
        else:
            self.ffn = MLP(cfg.d_model, cfg.d_ff, cfg.activation, cfg.n_layers)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rope, token_ids):
        x = x + self.drop(self.attn(self.norm1(x), rope))
        h = self.norm2(x)
        if self.is_moe:
            y, aux, counters = self.ffn(h, token_ids)
            return x + self.drop(y), aux, counters
        return x + self.drop(self.ffn(h)), None, None


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, moe_backend: str = "torch"):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.seq_len, cfg.d_model) if cfg.pos == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, i, moe_backend) for i in range(cfg.n_layers))
        self.norm = make_norm(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        if self.pos is not None:
            nn.init.normal_(self.pos.weight, std=0.02)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        else:
            nn.init.normal_(self.head.weight, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, idx: torch.Tensor) -> ModelOutput:
        B, S = idx.shape
        x = self.embed(idx)
        rope = None
        if self.pos is not None:
            x = x + self.pos(torch.arange(S, device=idx.device))
        else:
            rope = rope_cache(S, self.cfg.head_dim, idx.device)
        x = self.drop(x)
        aux = x.new_zeros((), dtype=torch.float32)
        counters = []
        for block in self.blocks:
            x, a, c = block(x, rope, idx)
            if a is not None:
                aux = aux + a
            if c is not None:
                counters.append(c)
        return ModelOutput(self.head(self.norm(x)), aux, counters)
