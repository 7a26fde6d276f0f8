"""The routing designs of 2024-2026 MoE stacks (docs/routing.md): sigmoid scores, forced balance, the selection
bias of loss-free balancing, each checked against the rule written out by hand."""
import pytest
import torch

from moebench.models.experts import expert_counts
from moebench.models.moe import MoELayer
from moebench.models.routers import ROUTERS
from moebench.models.spec import MoEConfig


def route(router="topk", **kw):
    torch.manual_seed(0)
    cfg = MoEConfig(**{"num_experts": 6, "top_k": 2, "expert_d_ff": 8, "router": router, **kw})
    r = ROUTERS[router](16, cfg)
    x = torch.randn(40, 16)
    return r, x, r(x, torch.zeros(40, dtype=torch.long), 0)


def test_sigmoid_top_k_gates_are_normalised_over_the_chosen_experts():
    r, x, out = route(score="sigmoid")
    s = r.scores(x).sigmoid()
    top, idx = s.topk(2, dim=-1)
    assert torch.equal(out.topk_idx, idx)
    torch.testing.assert_close(out.topk_weight, top / top.sum(-1, keepdim=True))
    torch.testing.assert_close(out.probs, s / s.sum(-1, keepdim=True))  # what the balancing loss reads
    raw = route(score="sigmoid", renormalize=False)[2]
    torch.testing.assert_close(raw.topk_weight, top)


@pytest.mark.parametrize("router", ["topk", "switch"])
def test_sigmoid_top_1_keeps_the_raw_gate_and_its_gradient(router):
    r, x, out = route(router, top_k=1, score="sigmoid")
    s = r.scores(x).sigmoid()
    torch.testing.assert_close(out.topk_weight, s.max(-1, keepdim=True).values)
    assert not torch.allclose(out.topk_weight, torch.ones_like(out.topk_weight))
    out.topk_weight.sum().backward()
    assert r.gate.weight.grad.abs().sum() > 0


def test_softmax_is_unchanged_by_default():
    r, x, out = route()
    p = r.scores(x).softmax(-1)
    top, idx = p.topk(2, dim=-1)
    assert torch.equal(out.topk_idx, idx) and torch.equal(out.probs, p)
    torch.testing.assert_close(out.topk_weight, top / top.sum(-1, keepdim=True))


def test_balanced_router_gives_every_expert_the_same_rows():
    r, x, out = route("balanced", top_k=3)  # 40 tokens x 3 slots = 120 = 20 per expert
    assert torch.equal(expert_counts(out.topk_idx, 6), torch.full((6,), 20))
    assert all(len(set(row)) == 3 for row in out.topk_idx.tolist())  # k distinct experts per token
    p = r.scores(x).softmax(-1).gather(-1, out.topk_idx)
    torch.testing.assert_close(out.topk_weight, p / p.sum(-1, keepdim=True))
    layer = MoELayer(16, MoEConfig(num_experts=6, top_k=3, expert_d_ff=8, router="balanced"), "gelu")
    y, aux, _ = layer(x.view(2, 20, 16), torch.zeros(2, 20, dtype=torch.long))
    z = (torch.logsumexp(layer.router.scores(x), -1) ** 2).mean()
    assert float(aux.detach()) == pytest.approx(float(1e-3 * z.detach()))  # no balancing loss, only z
    y.sum().backward()
    assert layer.router.gate.weight.grad.abs().sum() > 0  # the gates still train


def test_the_bias_chooses_but_does_not_weigh():
    r, x, out = route(bias_update_rate=1e-3)
    with torch.no_grad():
        r.expert_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0, 5.0]))  # experts 4 and 5 win every token
    out = r(x, torch.zeros(40, dtype=torch.long), 0)
    assert sorted(set(out.topk_idx.flatten().tolist())) == [4, 5]
    p = r.scores(x).softmax(-1).gather(-1, out.topk_idx)
    torch.testing.assert_close(out.topk_weight, p / p.sum(-1, keepdim=True))
    assert "expert_bias" in r.state_dict() and "expert_bias" not in dict(r.named_parameters())
    assert "step_load" not in r.state_dict()
