"""Deterministic top-k combine: out[t] = sum of the per-assignment rows of token t, in assignment order.

The expert GEMMs write one row per assignment, in expert-sorted order. Adding those rows into their tokens with
atomics (or torch's index_add on CUDA) sums them in whatever order the hardware schedules, so two identical
steps can differ in the last bit and a resumed run drifts from an uninterrupted one. Instead:

  token_segments: a stable sort of the assignments by token (ties keep assignment order, i.e. top-k slot order)
                  gives, per token, a contiguous segment [start[t], start[t+1]) of source rows;
  combine_rows:   one program per (BLOCK_T tokens, BLOCK_N columns) walks each token's segment in that order
                  and accumulates in fp32 (fp64 for fp64 rows).

Any assignment structure works (top-k, capacity drops leaving a token with fewer rows, expert choice giving a
token any number of rows, none at all): the loop runs to the longest segment in the tile, masked per token.
All device ops, no host sync.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .config import interpreting


@triton.jit
def _combine_kernel(rows_ptr, stride_rm, stride_rn, src_ptr, start_ptr, out_ptr, stride_om, stride_on, T, N,
                    IS_F64: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    t_mask = offs_t < T
    n_mask = offs_n < N
    seg = tl.load(start_ptr + offs_t, mask=t_mask, other=0)
    cnt = tl.load(start_ptr + offs_t + 1, mask=t_mask, other=0) - seg
    # The per-token values as [BLOCK_T, 1] columns before the loop: a 1-D masked load inside it (mask and pointer
    # in two layouts) breaks Triton 3.6's layout pass ("mask type matches ptr type"; the device image's Triton).
    seg_c, cnt_c, t_mask_c = seg[:, None], cnt[:, None], t_mask[:, None]
    if IS_F64:
        acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
    # Row j of every token in the tile at once; the j order is the fixed summation order.
    for j in range(0, tl.max(cnt, axis=0)):
        live = t_mask_c & (j < cnt_c)
        src = tl.load(src_ptr + seg_c + j, mask=live, other=0)
        acc += tl.load(rows_ptr + src.to(tl.int64) * stride_rm + offs_n[None, :] * stride_rn,
                       mask=live & n_mask[None, :], other=0.0).to(acc.dtype)
    tl.store(out_ptr + offs_t[:, None].to(tl.int64) * stride_om + offs_n[None, :] * stride_on,
             acc.to(out_ptr.dtype.element_ty), mask=t_mask[:, None] & n_mask[None, :])


def token_segments(token_idx: torch.Tensor, row_of: torch.Tensor, T: int):
    """-> (src [A] int64, start [T+1] int64): token t's rows are row_of[a] for its assignments a, in
    increasing a, listed at src[start[t]:start[t+1]]. `row_of[a]` is where assignment a's row was written
    (the inverse of the expert sort's permutation)."""
    tok_sorted, order = torch.sort(token_idx, stable=True)
    start = torch.searchsorted(tok_sorted, torch.arange(T + 1, device=token_idx.device, dtype=tok_sorted.dtype))
    return row_of[order].contiguous(), start.contiguous()


def combine_blocks() -> tuple[int, int]:
    # Interpreter: cost is per program, so few big ones. GPU: a 32x128 tile is 16 KB of fp32 accumulator per
    # program, and T/32 * d/128 programs fill the machine at any training batch.
    return (64, 128) if interpreting() else (32, 128)


def combine_rows(rows: torch.Tensor, src: torch.Tensor, start: torch.Tensor, T: int,
                 out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """out [T, N]: out[t] = sum_j rows[src[start[t] + j]] for j < start[t+1] - start[t], in j order."""
    N = rows.shape[1]
    out = torch.empty((T, N), device=rows.device, dtype=out_dtype or rows.dtype)
    if T == 0 or N == 0:
        return out
    bt, bn = combine_blocks()
    _combine_kernel[(triton.cdiv(T, bt), triton.cdiv(N, bn))](
        rows, rows.stride(0), rows.stride(1), src, start, out, out.stride(0), out.stride(1), T, N,
        IS_F64=rows.dtype == torch.float64, BLOCK_T=bt, BLOCK_N=bn)
    return out
