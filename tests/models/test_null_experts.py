"""Zero-compute experts (null_experts, MoE++): routed to like any expert, they add 0 and cost no FLOPs; the FLOP
count matches on the upper bound (every slot on a real expert) and the measured compute is what was done."""
import torch

from moebench.models.experts import expert_counts
from moebench.models.moe import MoELayer
from moebench.models.spec import ModelConfig, MoEConfig
from moebench.plan.flops import count
from tests.syncs import HostSyncs

D, F, E, N, K, T = 16, 24, 4, 4, 2, 64


def layer(null: int) -> MoELayer:
    torch.manual_seed(0)
    m = MoELayer(D, MoEConfig(num_experts=E, top_k=K, expert_d_ff=F, null_experts=null), "gelu", "torch_grouped")
    with torch.no_grad():
        m.router.gate.weight.normal_(0, 0.5)
    return m


def test_null_slots_add_nothing_and_real_slots_are_unchanged():
    m = layer(N)
    x = torch.randn(1, T, D)
    y, _, _ = m(x, torch.zeros(1, T, dtype=torch.long))
    r = m.router(x.view(T, D), None, 0)
    null = r.topk_idx >= E
    assert 0 < int(null.sum()) < T * K  # some slots went to zero-compute experts, some did not
    want = torch.zeros(T, D)
    for t in range(T):
        for j in range(K):
            e = int(r.topk_idx[t, j])
            if e < E:
                h = torch.nn.functional.gelu(x[0, t] @ m.w_up[e]) @ m.w_down[e]
                want[t] += r.topk_weight[t, j] * h
    torch.testing.assert_close(y.view(T, D), want, rtol=1e-5, atol=1e-6)
    assert m.router.gate.weight.shape[0] == E + N


def test_measured_flops_are_the_real_slots_and_the_accounting_is_the_upper_bound():
    """flops_measured (FlopCounterMode, the trainer's own producer) counts the real slots only; flops.py
    counts every slot as real, the bound FLOP matching uses."""
    from moebench.models import Transformer
    from moebench.models.moe import collecting_stats
    from moebench.training.flops_measured import measured_forward_flops_per_token

    cfg = ModelConfig(vocab_size=64, seq_len=T, d_model=D, n_layers=1, n_heads=2, d_ff=32,
                      moe=MoEConfig(num_experts=E, top_k=K, expert_d_ff=F, null_experts=N))
    torch.manual_seed(0)
    model = Transformer(cfg, "torch_grouped")
    with torch.no_grad():
        model.blocks[0].ffn.router.gate.weight.normal_(0, 0.5)
    idx = torch.randint(0, 64, (2, T))
    measured = measured_forward_flops_per_token(model, idx)
    with torch.no_grad(), collecting_stats(model.eval()):
        real = int(model(idx).expert_counters[0]["counts"][:E].sum())
    c = count(cfg)
    expert_row = 2 * 2 * D * F  # gelu: up and down
    assert c.terms["router"] == 2 * D * (E + N) and c.terms["experts"] == K * expert_row  # every slot real
    assert 0 < real < 2 * T * K
    want = c.forward_flops_per_token - c.terms["experts"] + real * expert_row / (2 * T)
    assert abs(measured - want) < 1e-6 * want, (measured, want)
    assert measured < c.forward_flops_per_token  # what was done is below the bound


def test_loads_and_balancing_see_the_zero_compute_experts():
    m = layer(N)
    x = torch.randn(2, T // 2, D)
    from moebench.models.moe import collecting_stats

    with collecting_stats(m):
        _, aux, stats = m(x, torch.zeros(2, T // 2, dtype=torch.long))
    r = m.router(x.view(T, D), None, 0)
    assert torch.equal(stats["counts"], expert_counts(r.topk_idx, E + N))
    assert float(aux.detach()) > 0


def test_the_selection_is_the_documented_sync():
    m = layer(N)
    with HostSyncs() as s:
        y, aux, _ = m(torch.randn(1, T, D), torch.zeros(1, T, dtype=torch.long))
        y.sum().backward()
    assert s.counts == {"aten.nonzero": 1}
