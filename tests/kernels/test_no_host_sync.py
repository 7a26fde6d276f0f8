"""No host syncs: nothing in the forward or backward reads a device value back to the host (.item(), bool(t),
.tolist(), .cpu(), ...). On a GPU each such read stalls the stream and breaks CUDA-graph capture."""
from __future__ import annotations

import collections
import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from tests.kernels.kernel_helpers import all_to_one_assign, make_weights
from moebench.kernels import moe_ops

SYNCS = {torch.Tensor.item, torch.Tensor.cpu, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
         torch.Tensor.__float__, torch.Tensor.numpy}
# The Triton interpreter copies kernel arguments to numpy itself; on a GPU that code does not run. Calls made
# from inside the triton package are therefore not ours and are not counted.
TRITON_DIR = str(Path(__import__("triton").__file__).parent)


class SyncCounter(TorchFunctionMode):
    """Counts host-sync calls made by code outside triton; also counts everything, to prove it is listening."""

    def __init__(self):
        super().__init__()
        self.syncs = collections.Counter()
        self.seen = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen += 1
        if func in SYNCS:
            caller = sys._getframe(1)
            while caller is not None and caller.f_code.co_filename.startswith(str(Path(torch.__file__).parent)):
                caller = caller.f_back  # step over torch's own wrappers (Tensor.__bool__ -> ...)
            if caller is None or not caller.f_code.co_filename.startswith(TRITON_DIR):
                where = f"{caller.f_code.co_filename}:{caller.f_lineno}" if caller else "?"
                self.syncs[f"{func.__name__} at {where}"] += 1
        return func(*args, **(kwargs or {}))


def _inputs(act="swiglu"):
    gen = torch.Generator().manual_seed(0)
    T, d, f, E = 23, 16, 24, 4
    a = all_to_one_assign(T, E, gen)  # a hot expert (several row blocks) and empty experts
    x = torch.randn(T, d, generator=gen)
    w_up, w_gate, w_down = make_weights(E, d, f, act, torch.float32, gen)
    return x, a, w_up, w_gate, w_down, torch.randn(T, d, generator=gen)


def test_forward_backward_make_no_host_sync():
    x, a, w_up, w_gate, w_down, dy = _inputs()
    # Small blocks, so every loop (row blocks, N tiles, dW row splits) runs more than once.
    small = {"gemm": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 2},
             "xty": {"BLOCK_K": 16, "BLOCK_N": 16, "BLOCK_R": 16, "ROWS_PER_SPLIT": 16}}
    from moebench.kernels.config import override

    with override(small):
        # 1) The whole public path, autograd included (the mode sees the op boundaries only).
        leaves = [t.clone().requires_grad_() for t in (x, a.weight, w_up, w_gate, w_down)]
        with SyncCounter() as outer:
            y = moe_ops.triton_experts(leaves[0], a.token_idx, a.expert_idx, leaves[1], *leaves[2:], "swiglu")
            y.backward(dy)
        # 2) The op bodies themselves, which a TorchFunctionMode cannot see through the custom-op dispatch.
        with SyncCounter() as inner:
            y2, pre_u, pre_g = moe_ops.fwd_impl(x, a.token_idx, a.expert_idx, a.weight, w_up, w_gate, w_down,
                                                "swiglu")
            grads = moe_ops.bwd_impl(dy, x, a.token_idx, a.expert_idx, a.weight, w_up, w_gate, w_down, pre_u,
                                     pre_g, "swiglu")
    assert all(t.grad is not None for t in leaves)
    assert torch.equal(y.detach(), y2) and torch.equal(leaves[0].grad, grads[0])
    assert outer.seen > 0 and inner.seen > 50, "the mode did not see the torch calls"
    assert not outer.syncs, dict(outer.syncs)
    assert not inner.syncs, dict(inner.syncs)


def test_the_counter_catches_a_sync():
    t = torch.arange(3)
    with SyncCounter() as c:
        t.sum().item()
        if t.max() > 1:
            t.tolist()
    assert sum(c.syncs.values()) == 3, dict(c.syncs)
