"""torch._grouped_mm (2-D rows x 3-D experts, with offsets) as a custom op the compiler can trace in any dtype.

The compiler's fake kernel of `aten._grouped_mm` accepts bf16 only, while the CPU kernel computes float32 too: the
op below runs the same kernel eagerly and tells the compiler only the output shape, so `torch_grouped` (and
`torch` where it takes the grouped path) compiles in float32 with everything around the GEMMs (sort, gather,
activation, routing-weight scale, scatter-add) traced by inductor and nothing recomputed. A capacity limit's
dropped pairs are sorted past the last group, where the op writes zeros (no data-dependent selection). Its backward is two more
grouped GEMMs: dA = dY @ B^T per group, dB = A^T @ dY per group (the offsets' 2-D x 2-D mode).
"""
from __future__ import annotations

import torch
from torch import Tensor


@torch.library.custom_op("moebench::grouped_mm", mutates_args=())
def grouped_mm(a: Tensor, b: Tensor, offs: Tensor) -> Tensor:
    """out[rows of group e] = a[rows of group e] @ b[e]; a [A, K], b [E, K, N], offs [E] int32 cumulative rows.
    Rows past offs[-1] belong to no group (pairs a capacity limit dropped, sorted last): the kernel leaves them
    uninitialised, here they are 0, so nothing downstream (activation, backward) sees garbage."""
    out = torch._grouped_mm(a, b, offs=offs)
    past = torch.arange(out.shape[0], device=out.device) >= offs[-1]  # on the device: no host read
    return out.masked_fill_(past.unsqueeze(1), 0)


@grouped_mm.register_fake
def _(a, b, offs):
    return a.new_empty((a.shape[0], b.shape[-1]))


@torch.library.custom_op("moebench::grouped_mm_xty", mutates_args=())
def grouped_xty(a: Tensor, g: Tensor, offs: Tensor) -> Tensor:
    """out[e] = a[rows of e]^T @ g[rows of e]: [E, K, N] from a [A, K], g [A, N] (0 for an expert with no rows)."""
    return torch._grouped_mm(a.t(), g, offs=offs)


@grouped_xty.register_fake
def _(a, g, offs):
    return a.new_empty((offs.shape[0], a.shape[1], g.shape[1]))


def _setup_context(ctx, inputs, output):
    a, b, offs = inputs
    ctx.save_for_backward(a, b, offs)


def _backward(ctx, dy):
    a, b, offs = ctx.saved_tensors
    dy = dy.contiguous()
    need = ctx.needs_input_grad
    da = grouped_mm(dy, b.transpose(1, 2), offs) if need[0] else None
    db = grouped_xty(a, dy, offs) if need[1] else None
    return da, db, None


grouped_mm.register_autograd(_backward, setup_context=_setup_context)
