"""MoE layer: aux losses by hand, capacity drops exactly the overflow, routers, backends agree."""
import math

import pytest
import torch

from moebench.models.backends import BACKENDS
from moebench.models.spec import MoEConfig
from moebench.models.experts import Assignment, reference_experts
from moebench.models.moe import MoELayer, collecting_stats, token_choice_assignment
from moebench.models.routers import ROUTERS, Routing
from moebench.models.counters import expert_stats, layer_counters


def naive_per_token(x, assign, w_up, w_gate, w_down, activation):
    """The slowest possible oracle: one token, one expert at a time."""
    y = torch.zeros_like(x)
    for t, e, w in zip(assign.token_idx.tolist(), assign.expert_idx.tolist(), assign.weight):
        h = x[t] @ w_up[e]
        h = torch.nn.functional.silu(x[t] @ w_gate[e]) * h if activation == "swiglu" else torch.nn.functional.gelu(h)
        y[t] = y[t] + w * (h @ w_down[e])
    return y


def make_weights(E, d, f, swiglu, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: (torch.randn(*s, generator=g) * 0.2).requires_grad_()  # noqa: E731
    return mk(E, d, f), (mk(E, d, f) if swiglu else None), mk(E, f, d)


RAGGED = {
    "balanced": lambda T, E: torch.arange(T) % E,
    "one_expert_all": lambda T, E: torch.zeros(T, dtype=torch.long),
    "empty_expert": lambda T, E: torch.arange(T) % (E - 1),
}


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
@pytest.mark.parametrize("load", list(RAGGED))
@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_backends_agree_forward_and_backward(backend, load, activation):
    T, d, f, E = 13, 8, 12, 4
    x = torch.randn(T, d, requires_grad=True)
    exp = torch.cat([RAGGED[load](T, E), (RAGGED[load](T, E) + 1) % E])
    tok = torch.arange(T).repeat(2)
    wts = torch.rand(2 * T, requires_grad=True)
    ws = make_weights(E, d, f, activation == "swiglu")
    assign = Assignment(tok, exp, wts)
    ref = naive_per_token(x, assign, *ws, activation)
    out = BACKENDS[backend](x, assign, *ws, activation)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(out)
    params = [x, wts] + [w for w in ws if w is not None]
    g_ref = torch.autograd.grad(ref, params, grad)
    g_out = torch.autograd.grad(out, params, grad)
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_capacity_drops_exactly_the_overflow():
    # 6 tokens, top-1, everyone wants expert 0; capacity 2 -> tokens 0 and 1 kept, 4 dropped
    idx = torch.zeros(6, 1, dtype=torch.long)
    r = Routing(None, None, idx, torch.ones(6, 1))
    assign, dropped = token_choice_assignment(r, 4, capacity=2)
    assert assign.token_idx.tolist() == [0, 1] and dropped == 4
    # top-2: first choices are served before any second choice (slot-major priority)
    idx = torch.tensor([[0, 1], [0, 1], [1, 0]])
    r = Routing(None, None, idx, torch.ones(3, 2))
    assign, dropped = token_choice_assignment(r, 2, capacity=2)
    kept = sorted(zip(assign.token_idx.tolist(), assign.expert_idx.tolist()))
    assert kept == [(0, 0), (0, 1), (1, 0), (2, 1)]
    assert dropped == 2


def test_dropped_tokens_pass_through_as_zero():
    cfg = MoEConfig(num_experts=2, top_k=1, expert_d_ff=8, router="topk", capacity_factor=0.5, lb_coef=0, z_coef=0)
    layer = MoELayer(8, cfg, "gelu")
    x = torch.randn(1, 8, 8)
    assert layer(x, torch.zeros(1, 8, dtype=torch.long))[2] is None  # statistics only when asked for
    with collecting_stats(layer):
        y, _, stats = layer(x, torch.zeros(1, 8, dtype=torch.long))
    assert not layer.collect_stats
    zero_rows = (y[0].abs().sum(-1) == 0).sum().item()
    assert stats["dropped"].item() == zero_rows > 0


def test_load_balancing_and_z_loss_by_hand():
    cfg = MoEConfig(num_experts=2, top_k=1, expert_d_ff=4, router="switch", lb_coef=0.5, z_coef=0.25)
    layer = MoELayer(2, cfg, "gelu")
    with torch.no_grad():
        layer.router.gate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]])
    _, aux, _ = layer(x, torch.zeros(1, 3, dtype=torch.long))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    p = logits.softmax(-1)
    f = torch.tensor([2 / 3, 1 / 3])  # tokens 0, 2 -> expert 0; token 1 -> expert 1
    lb = 0.5 * 2 * (f * p.mean(0)).sum()
    z = 0.25 * (torch.logsumexp(logits, -1) ** 2).mean()
    assert aux.item() == pytest.approx((lb + z).item(), rel=1e-6)


def test_hash_routing_is_deterministic_and_ignores_input():
    cfg = MoEConfig(num_experts=8, top_k=1, expert_d_ff=4, router="hash")
    r = ROUTERS["hash"](16, cfg)
    ids = torch.arange(100)
    a = r(torch.randn(100, 16), ids, 0).topk_idx
    b = r(torch.randn(100, 16), ids, 0).topk_idx
    assert torch.equal(a, b) and len(set(a.flatten().tolist())) == 8
    assert torch.equal(r(torch.randn(3, 16), torch.tensor([5, 5, 5]), 0).topk_idx.flatten(), a[5].repeat(3))


@pytest.mark.parametrize("router", ["topk", "noisy_topk", "switch", "expert_choice"])
def test_gradients_reach_learned_routers(router):
    cfg = MoEConfig(num_experts=4, top_k=2 if router != "switch" else 1, expert_d_ff=8, router=router,
                    renormalize=False, lb_coef=0.0, z_coef=0.0)
    layer = MoELayer(8, cfg, "gelu")
    y, aux, _ = layer(torch.randn(2, 6, 8), torch.zeros(2, 6, dtype=torch.long))
    (y.square().sum() + aux).backward()
    g = layer.router.gate.weight.grad
    assert g is not None and g.abs().sum() > 0


def test_expert_choice_capacity_and_groups():
    cfg = MoEConfig(num_experts=4, top_k=1, expert_d_ff=8, router="expert_choice", expert_choice_group=4)
    r = ROUTERS["expert_choice"](8, cfg)(torch.randn(8, 8), torch.zeros(8, dtype=torch.long), 4)
    a = r.assignment
    assert a.token_idx.numel() == 2 * 4 * 1  # 2 groups x 4 experts x capacity 1
    for g in range(2):  # each expert picks only inside its group
        sel = slice(g * 4, (g + 1) * 4)
        assert ((a.token_idx.view(2, 4)[g] // 4) == g).all(), a.token_idx.view(2, 4)


def test_stats_summary_by_hand():
    counters = [layer_counters(4, torch.tensor([0, 0, 0, 1]), 1, None, None)]
    s = expert_stats(counters, dead_threshold=0.1)
    assert s["layers"][0]["load"] == [0.75, 0.25, 0.0, 0.0]
    assert s["max_load_x_E"] == pytest.approx(3.0)
    assert s["dead_experts"] == 2
    assert s["drop_fraction"] == pytest.approx(1 / 4)
    H = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(4)
    assert s["entropy"] == pytest.approx(H)


def test_the_torch_path_rule():
    from moebench.models.backends import GROUPED_BELOW_ROWS, fast_path

    at_limit = GROUPED_BELOW_ROWS * 64
    f32, bf16 = torch.float32, torch.bfloat16
    assert fast_path(at_limit, 64, 256, 64, f32, cuda=False) == "grouped"  # exactly 1024 rows per expert
    assert fast_path(at_limit + 1, 64, 256, 64, f32, cuda=False) == "loop"
    assert fast_path(10 * at_limit, 64, 256, 64, bf16, cuda=True) == "grouped"  # CUDA bf16: the sync-free path
    assert fast_path(16, 64, 256, 60, bf16, cuda=True) == "loop"  # a 120-byte bf16 row is not 16-byte aligned


def test_load_metrics_per_layer_by_hand():
    """MaxVio globally over the evaluation and per batch (Wang et al. 2024), CV and dead experts per layer, and
    their p50 / p90 / max over layers."""
    from moebench.models.counters import accumulate

    b1 = [layer_counters(4, torch.tensor([0, 0, 0, 1]), 0, None, None),  # layer 0: loads 3,1,0,0
          layer_counters(4, torch.tensor([0, 1, 2, 3]), 0, None, None)]  # layer 1: even
    b2 = [layer_counters(4, torch.tensor([1, 2, 3, 3]), 0, None, None),
          layer_counters(4, torch.tensor([0, 1, 2, 3]), 0, None, None)]
    s = expert_stats(accumulate(accumulate(None, b1), b2), dead_threshold=0.1)
    l0, l1 = s["layers"]
    assert l0["max_vio"] == pytest.approx(3 / 2 - 1)  # summed counts 3, 2, 1, 2: max 3 / mean 2
    assert l0["max_vio_batch"] == pytest.approx(((3 / 1 - 1) + (2 / 1 - 1)) / 2)
    assert l1["max_vio"] == 0.0 and l1["max_vio_batch"] == 0.0 and l1["dead"] == 0 and l1["cv"] == 0.0
    assert s["max_vio"] == {"p50": 0.0, "p90": l0["max_vio"], "max": l0["max_vio"]}
    assert s["dead_layers"]["max"] == l0["dead"]
