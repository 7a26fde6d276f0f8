"""Run under torchrun (2 ranks, gloo): an expert-parallel MoE layer's forward and backward equal the
one-process layer's. Exits non-zero (assertion) on a mismatch; prints EP_OK on rank 0."""
import sys

import torch
import torch.distributed as dist

from moebench.distributed import groups as env
from moebench.distributed.expert_parallel import shard_model
from moebench.models.spec import MoEConfig
from moebench.models.moe import MoELayer


def check(router: str, activation: str, capacity_factor):
    torch.manual_seed(0)
    cfg = MoEConfig(num_experts=4, top_k=2, expert_d_ff=16, router=router, capacity_factor=capacity_factor)
    ref = MoELayer(8, cfg, activation, "torch")
    ep = MoELayer(8, cfg, activation, "torch")
    ep.load_state_dict(ref.state_dict())
    holder = torch.nn.Module()
    holder.moe = ep
    names = shard_model(holder, 2)
    assert names and ep.w_up.shape[0] == 2
    r = dist.get_rank()
    torch.manual_seed(100 + r)  # different tokens, and a different number of them, on each rank
    x = torch.randn(1, 5 + 3 * r, 8)
    ids = torch.randint(0, 50, (1, 5 + 3 * r))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, aux_ref, _ = ref(xa, ids)
    y_ep, aux_ep, _ = ep(xb, ids)
    torch.testing.assert_close(y_ep, y_ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(y_ref)
    ((y_ref * g).sum() + aux_ref).backward()
    ((y_ep * g).sum() + aux_ep).backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-6)
    for n, p in ref.named_parameters():
        q = dict(ep.named_parameters())[n]
        if n in ("w_up", "w_gate", "w_down"):
            full = p.grad.clone()
            dist.all_reduce(full)  # the experts see every rank's tokens
            torch.testing.assert_close(q.grad, full[2 * r: 2 * r + 2], rtol=1e-5, atol=1e-6)
        else:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    env.init()
    try:
        for router, act, cap in (("topk", "gelu", None), ("topk", "swiglu", None), ("switch", "relu", 1.0),
                                 ("expert_choice", "gelu", 1.0)):
            check(router, act, cap)
        if env.is_rank0():
            print("EP_OK", flush=True)
    finally:
        env.teardown()
    sys.exit(0)
