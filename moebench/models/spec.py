"""Resolved model configuration: what models/, flops.py and the kernels read. Plain frozen dataclasses."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional


@dataclass(frozen=True)
class MoEConfig:
    num_experts: int
    top_k: int
    expert_d_ff: int
    router: str = "topk"  # a name in models.routers.ROUTERS
    renormalize: bool = True  # topk: rescale the k gate values to sum to 1 (Mixtral); GShard keeps them
    noise_std: float = 1.0  # noisy_topk: scale of the learned Gaussian noise (Shazeer et al. 2017)
    shared_experts: int = 0  # always-on experts of width expert_d_ff (DeepSeekMoE)
    capacity_factor: Optional[float] = None  # None = dropless
    lb_coef: float = 1e-2  # Switch load-balancing loss alpha
    z_coef: float = 1e-3  # ST-MoE router z-loss
    router_fp32: bool = True  # Switch selective precision
    router_init_scale: float = 0.1  # Switch Table 3: 0.1x of the default init
    moe_every: int = 1  # MoE in every n-th block (Switch: 2)
    n_dense_layers: int = 0  # first n blocks stay dense (DeepSeekMoE)
    dead_threshold: float = 0.1  # an expert is dead if its load share < dead_threshold / num_experts
    expert_choice_group: int = 0  # expert_choice: route within groups of this many positions (0 = whole batch)
    score: str = "softmax"  # softmax | sigmoid (DeepSeek-V3), for routers with `scored` (models/routers.py)
    bias_update_rate: float = 0.0  # loss-free balancing rate u (Wang et al. 2024); 0 = off
    null_experts: int = 0  # zero-compute experts (MoE++, Jin et al. 2024): routed to, return 0, cost nothing
    lb_scope: str = "micro_batch"  # micro_batch | sequence | global: over what f_i of the balancing loss is taken

    @property
    def routed_experts(self) -> int:
        """The experts a router scores: the real ones, then the zero-compute ones (indices >= num_experts)."""
        return self.num_experts + self.null_experts


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    seq_len: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    n_kv_heads: Optional[int] = None  # None = n_heads (multi-head); fewer = grouped-query attention
    activation: str = "gelu"  # a name in models.activations.ACTIVATIONS
    pos: str = "rope"  # rope | learned
    norm: str = "layernorm"  # layernorm | rmsnorm
    tie_embeddings: bool = True
    dropout: float = 0.0
    moe: Optional[MoEConfig] = None

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def is_moe_layer(self, i: int) -> bool:
        """Block i (0-based) holds an MoE FFN: after the dense prefix, every moe_every-th block."""
        m = self.moe
        if m is None or i < m.n_dense_layers:
            return False
        return (i - m.n_dense_layers) % m.moe_every == m.moe_every - 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        moe = d.pop("moe", None)
        return cls(**d, moe=MoEConfig(**moe) if moe else None)
