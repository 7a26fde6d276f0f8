"""Run under torchrun with 2 gloo ranks: the global-batch f_i (lb_scope: global) and the loss-free bias update
see every rank's tokens, through the trainer's own reduction (Parallel.sum_over_ranks). Prints BAL_OK."""
import torch
import torch.distributed as dist

from moebench.config.schema import TrainSpec
from moebench.distributed.groups import init
from moebench.distributed.parallel import Parallel
from moebench.models.balancing import balance_loss_fi, end_of_step, set_reduce
from moebench.models.experts import expert_counts
from moebench.models.moe import MoELayer
from moebench.models.spec import MoEConfig

E, K, D = 4, 2, 16


def inputs(rank: int, micro: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 * rank + micro)
    return torch.randn(2, 8, D, generator=g) * (1 + rank)  # ranks see different token distributions


def main():
    init()
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    layer = MoELayer(D, MoEConfig(num_experts=E, top_k=K, expert_d_ff=8, lb_scope="global", bias_update_rate=1e-2),
                     "gelu")
    with torch.no_grad():
        layer.router.gate.weight.normal_(0, 0.5)
    par = Parallel(layer, TrainSpec(steps=1, batch_size=8, device="cpu"), 0, torch.device("cpu"))
    set_reduce(layer, par.sum_over_ranks())
    ids = torch.zeros(2, 8, dtype=torch.long)
    for micro in range(2):
        par.module(inputs(rank, micro), ids)
    with torch.no_grad():
        every = torch.cat([inputs(r, m) for r in range(world) for m in range(2)]).reshape(-1, D)
        want = expert_counts(layer.router(every, None, 0).topk_idx, E).float() / (every.shape[0] * K)
        mine = layer.router(inputs(rank, 1).reshape(-1, D), None, 0).topk_idx
    got = balance_loss_fi(layer, mine, E, 2)
    assert torch.allclose(got, want, atol=0, rtol=0), (got, want)
    load = want * every.shape[0] * K
    end_of_step(layer, par.sum_over_ranks())
    assert torch.equal(layer.router.expert_bias, 1e-2 * torch.sign(load.mean() - load))
    others = [torch.zeros(E) for _ in range(world)]
    dist.all_gather(others, layer.router.expert_bias)
    assert all(torch.equal(o, others[0]) for o in others)  # every rank moved its bias the same way
    dist.barrier()
    if rank == 0:
        print("BAL_OK", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
