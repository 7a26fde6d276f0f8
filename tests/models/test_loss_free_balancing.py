"""Loss-free balancing (Wang et al. 2024): a selection-only bias, moved after every optimizer step toward equal
load, balances a router whose weights are frozen and skewed; nothing else moves, and nothing syncs."""
import torch

from moebench.models.balancing import end_of_step
from moebench.models.experts import expert_counts
from moebench.models.moe import MoELayer
from moebench.models.spec import MoEConfig
from tests.syncs import HostSyncs

E, T = 4, 4096


def skewed_layer(rate: float) -> MoELayer:
    torch.manual_seed(0)
    layer = MoELayer(16, MoEConfig(num_experts=E, top_k=1, expert_d_ff=8, bias_update_rate=rate, lb_coef=0.0,
                                   z_coef=0.0), "gelu")
    with torch.no_grad():
        layer.router.gate.weight.normal_(0, 0.2)
        layer.router.gate.weight[0] += 0.2  # inputs have mean 0.5: expert 0 wins most tokens
    layer.router.gate.weight.requires_grad_(False)  # frozen: only the bias can balance
    return layer


def train(layer: MoELayer, steps: int) -> list[float]:
    """`steps` optimizer steps on fresh batches; the MaxVio of each step's batch, before its update."""
    opt = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.1)
    g = torch.Generator().manual_seed(1)
    vio = []
    for _ in range(steps):
        x = torch.randn(1, T, 16, generator=g) + 0.5
        with torch.no_grad():
            load = expert_counts(layer.router(x.view(T, 16), None, 0).topk_idx, E).float()
        y, aux, _ = layer(x, torch.zeros(1, T, dtype=torch.long))
        vio.append(float(load.max() / load.mean() - 1))
        (y.square().mean() + aux).backward()
        opt.step()
        opt.zero_grad()
        end_of_step(layer)
    return vio


def test_bias_balances_a_frozen_skewed_router():
    layer = skewed_layer(1e-2)
    gate = layer.router.gate.weight.clone()
    vio = train(layer, 300)
    assert (vio[0] + 1) / E >= 0.5  # one expert takes >= 50% of the tokens at the start
    assert min(vio) < 0.1 and sum(vio[-50:]) / 50 < 0.1, (min(vio), vio[-50:])  # reached, and held
    assert torch.equal(layer.router.gate.weight, gate)  # the router weights are bitwise unchanged
    assert layer.router.expert_bias[0] < 0 < layer.router.expert_bias[1:].min()
    assert "router.expert_bias" in layer.state_dict()  # saved with the model (checkpoints, export)
    assert all(p is not layer.router.expert_bias for p in layer.parameters())  # no optimizer can see it
    assert layer.step_load is None  # cleared for the next step


def test_without_the_update_the_skew_stays():
    vio = train(skewed_layer(0.0), 30)
    assert min(vio) > 1.0


def test_the_update_is_sync_free():
    layer = skewed_layer(1e-2)
    x = torch.randn(1, 64, 16) + 0.5
    with HostSyncs() as s:
        y, aux, _ = layer(x, torch.zeros(1, 64, dtype=torch.long))
        y.sum().backward()
        end_of_step(layer)
    assert s.counts == {} and layer.router.expert_bias.abs().sum() > 0
