"""lb_scope: the f_i of the load-balancing loss per micro-batch, per sequence, or over the step's global batch
(Qiu et al. 2025), each against the formula written out by hand."""
import pytest
import torch

from moebench.models.balancing import balance_loss_fi, end_of_step
from moebench.models.experts import expert_counts
from moebench.models.moe import MoELayer
from moebench.models.spec import MoEConfig

E, K, COEF = 4, 2, 1e-2


def layer(scope: str) -> MoELayer:
    torch.manual_seed(0)
    m = MoELayer(16, MoEConfig(num_experts=E, top_k=K, expert_d_ff=8, lb_scope=scope, lb_coef=COEF, z_coef=0.0),
                 "gelu")
    with torch.no_grad():
        m.router.gate.weight.normal_(0, 0.5)  # a visibly uneven router, so the scopes differ
    return m


def routed(m, x):
    with torch.no_grad():
        r = m.router(x.reshape(-1, 16), None, 0)
    return r.topk_idx, r.probs


def test_global_f_i_equals_micro_batch_f_i_on_the_concatenated_batch():
    g, micro = layer("global"), layer("micro_batch")
    x1, x2 = torch.randn(2, 8, 16), torch.randn(2, 8, 16) * 2 + 0.3
    ids = torch.zeros(2, 8, dtype=torch.long)
    g(x1, ids)
    _, aux2, _ = g(x2, ids)  # the second micro-batch of the step
    whole = torch.cat([x1, x2])
    want = expert_counts(routed(micro, whole)[0], E).float() / (32 * K)
    assert torch.equal(balance_loss_fi(g, routed(g, x2)[0], E, 2), want)
    p2 = routed(g, x2)[1].mean(0)  # P_i stays the micro-batch's own
    assert float(aux2.detach()) == pytest.approx(float(COEF * E * (want * p2).sum()), rel=1e-6)
    _, aux_micro, _ = micro(x2, ids)
    assert float(aux_micro.detach()) != pytest.approx(float(aux2.detach()), rel=1e-3)  # the scopes really differ here
    end_of_step(g)
    assert g.step_load is None  # the next step starts its own global batch


def test_sequence_scope_by_hand():
    m = layer("sequence")
    x = torch.randn(3, 8, 16)
    _, aux, _ = m(x, torch.zeros(3, 8, dtype=torch.long))
    idx, probs = routed(m, x)
    want = 0.0
    for b in range(3):
        f = expert_counts(idx[b * 8:(b + 1) * 8], E).float() / (8 * K)
        want += COEF * E * float((f * probs[b * 8:(b + 1) * 8].mean(0)).sum()) / 3
    assert float(aux.detach()) == pytest.approx(want, rel=1e-6)


def test_outside_training_global_scope_uses_the_batch():
    m = layer("global").eval()
    x = torch.randn(2, 8, 16)
    _, aux, _ = m(x, torch.zeros(2, 8, dtype=torch.long))
    idx, probs = routed(m, x)
    f = expert_counts(idx, E).float() / idx.numel()
    assert float(aux.detach()) == pytest.approx(float(COEF * E * (f * probs.mean(0)).sum()), rel=1e-6)
    assert m.step_load is None
