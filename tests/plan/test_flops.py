"""Analytic forward FLOPs against torch's own FlopCounterMode on real forwards."""
import pytest
import torch

from moebench.plan.flops import count
from moebench.training.flops_measured import measured_forward_flops_per_token
from moebench.models import ModelConfig, MoEConfig, Transformer

MOES = {
    "dense": None,
    "top1": MoEConfig(num_experts=4, top_k=1, expert_d_ff=64, router="switch"),
    "top2": MoEConfig(num_experts=4, top_k=2, expert_d_ff=64),
    "fine": MoEConfig(num_experts=16, top_k=4, expert_d_ff=16),
    "shared": MoEConfig(num_experts=4, top_k=2, expert_d_ff=32, shared_experts=1),
    "every2": MoEConfig(num_experts=4, top_k=2, expert_d_ff=64, moe_every=2),
}


def measured_forward_flops(cfg: ModelConfig, tokens: torch.Tensor) -> float:
    return measured_forward_flops_per_token(Transformer(cfg, "torch"), tokens)


@pytest.mark.parametrize("name", list(MOES))
@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_analytic_forward_flops_match_flop_counter(name, activation):
    cfg = ModelConfig(vocab_size=256, seq_len=32, d_model=64, n_layers=2, n_heads=4, d_ff=128, n_kv_heads=2,
                      activation=activation, moe=MOES[name])
    tokens = torch.randint(0, 256, (4, 32))
    measured = measured_forward_flops(cfg, tokens)
    analytic = count(cfg).forward_flops_per_token
    assert abs(measured / analytic - 1) < 0.05, (measured, analytic)


def test_capacity_padding_reported_separately():
    base = dict(vocab_size=256, seq_len=32, d_model=64, n_layers=2, n_heads=4, d_ff=128)
    nominal = count(ModelConfig(**base, moe=MoEConfig(num_experts=4, top_k=2, expert_d_ff=64)))
    padded = count(ModelConfig(**base, moe=MoEConfig(num_experts=4, top_k=2, expert_d_ff=64, capacity_factor=1.5)))
    assert padded.forward_flops_per_token == nominal.forward_flops_per_token
    assert padded.terms["expert_padded"] == pytest.approx(1.5 * nominal.terms["experts"])
