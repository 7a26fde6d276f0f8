"""The MoE hot path reads nothing back to the host: a training forward + backward of an MoE layer and of a whole
Transformer performs no host sync on the grouped torch paths and the Triton path (tests/syncs.py counts them on
the CPU, where they are free, so the CUDA code path is what is checked). torch_loop reads the per-expert row
counts by design (split sizes); a capacity limit costs one `nonzero` per layer (dropped pairs are not computed).
"""
import pytest
import torch
import torch.nn.functional as F

from moebench.models import ModelConfig, MoEConfig, Transformer
from moebench.models.counters import expert_stats, to_host
from moebench.models.moe import MoELayer, collecting_stats
from tests.syncs import HostSyncs

SYNC_FREE = ["torch_grouped", "torch", "triton"]  # `torch` at these shapes takes its grouped branch


def layer_step(backend, activation="gelu", router="topk", capacity=None, stats=False, **kw):
    torch.manual_seed(0)
    cfg = MoEConfig(num_experts=4, top_k=1 if router == "switch" else 2, expert_d_ff=16, router=router,
                    capacity_factor=capacity, **kw)
    layer = MoELayer(16, cfg, activation, backend)
    x = torch.randn(2, 8, 16, requires_grad=True)
    ids = torch.randint(0, 50, (2, 8))
    with collecting_stats(layer, stats), HostSyncs() as s:
        y, aux, counters = layer(x, ids)
        (y.square().sum() + aux).backward()
    return s.counts, counters


@pytest.mark.parametrize("backend, activation", [("torch_grouped", "gelu"), ("torch", "swiglu"),
                                                 ("triton", "swiglu")])  # the interpreter is slow: one each
def test_moe_layer_training_step_has_no_host_sync(backend, activation):
    counts, counters = layer_step(backend, activation)
    assert counts == {} and counters is None


@pytest.mark.parametrize("router", ["switch", "hash", "expert_choice", "noisy_topk", "balanced"])
def test_every_router_is_sync_free(router):
    assert layer_step("torch", router=router)[0] == {}


@pytest.mark.parametrize("kw", [{"score": "sigmoid"}, {"score": "sigmoid", "router": "switch"},
                                {"bias_update_rate": 1e-3}, {"lb_scope": "sequence"}, {"lb_scope": "global"}],
                         ids=lambda kw: "-".join(map(str, kw.values())))
def test_routing_designs_are_sync_free(kw):
    assert layer_step("torch", **kw)[0] == {}


@pytest.mark.parametrize("backend", SYNC_FREE)
def test_transformer_training_step_has_no_host_sync(backend):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                      moe=MoEConfig(num_experts=4, top_k=2, expert_d_ff=16, moe_every=2))  # dense + MoE block
    model = Transformer(cfg, backend)
    idx = torch.randint(0, 64, (2, 17))
    with HostSyncs(look_inside=backend != "triton") as s:  # the kernels' bodies: the layer test above
        out = model(idx[:, :-1])
        loss = F.cross_entropy(out.logits.flatten(0, 1), idx[:, 1:].flatten()) + out.aux_loss
        loss.backward()
    assert s.counts == {} and out.expert_counters == []


def test_statistics_stay_on_the_device_until_summarized():
    counts, counters = layer_step("torch", stats=True)
    assert counts == {} and counters["counts"].dtype == torch.int64
    with HostSyncs() as s:
        host = to_host([counters, counters])
    assert s.counts == {"cpu": 1}  # one read-back of every counter of every layer, packed
    assert all(v.device.type == "cpu" and v.dtype == torch.float64 for layer in host for v in layer.values())
    summary = expert_stats([counters], dead_threshold=0.1)
    assert sum(summary["layers"][0]["load"]) == pytest.approx(1.0)


def test_the_counter_sees_the_syncs_that_exist():
    """torch_loop's split sizes and the capacity limit's kept-row count are the documented exceptions; if the
    counter missed them, the zero counts above would prove nothing."""
    assert layer_step("torch_loop")[0] == {"tolist": 1}
    assert layer_step("torch_grouped", capacity=1.0)[0] == {"aten.nonzero": 1}
    assert layer_step("reference")[0]["__bool__"] == 4  # one `if any rows` per expert
