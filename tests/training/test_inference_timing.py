"""Timed inference charges the MoE model for nothing the dense model lacks: expert statistics are collected in
one extra, untimed forward per batch size, never inside the timed repeats."""
import torch

from moebench.models import ModelConfig, MoEConfig, Transformer
from moebench.models import moe as moe_mod
from moebench.training.inference import forward_speed


def test_expert_statistics_stay_out_of_the_timed_forwards(monkeypatch):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                      moe=MoEConfig(num_experts=4, top_k=1, expert_d_ff=16))
    model = Transformer(cfg, "torch")
    calls = []
    real = moe_mod.layer_counters
    monkeypatch.setattr(moe_mod, "layer_counters", lambda *a: calls.append(1) or real(*a))
    rows = forward_speed(model, 64, 16, [1, 2], torch.device("cpu"), repeats=3)
    assert len(calls) == 2 * 2  # one untimed forward per batch size, 2 MoE layers each; none of the 2 x 4 others
    assert all(r["expert_batch_max_over_mean"] >= 1.0 for r in rows)
    assert not any(m.collect_stats for m in model.modules() if isinstance(m, moe_mod.MoELayer))
