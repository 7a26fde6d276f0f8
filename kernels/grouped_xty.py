"""Weight gradients: dW[e] = X_e^T @ Y_e, summed over the rows that expert e received.

One program owns one (expert, K tile, N tile) of dW and walks that expert's sorted rows in BLOCK_R chunks, so
each dW element is written once (no atomics, deterministic) and an empty expert writes zeros. Like the
forward, X and Y rows can be gathered by token index (x and dy are never permuted), Y rows can be scaled by
the routing weight, and DUAL computes a second product sharing the X loads (dW_up and dW_gate both need
x^T). Experts with many rows take longer than others; the grid is wide enough in K x N tiles at real sizes.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .grouped_gemm import dot_precision


@triton.jit
def _xty_kernel(x_ptr, x_idx_ptr, stride_xm, stride_xk,
                y_ptr, y_idx_ptr, stride_ym, stride_yn, y2_ptr, stride_y2m, stride_y2n, scale_ptr,
                out_ptr, out2_ptr, stride_oe, stride_ok, stride_on, offsets_ptr, counts_ptr, K, N,
                GATHER_X: tl.constexpr, GATHER_Y: tl.constexpr, SCALE_Y: tl.constexpr, DUAL: tl.constexpr,
                IS_F64: tl.constexpr, PRECISION: tl.constexpr,
                BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr):
    e = tl.program_id(0)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    k_mask = offs_k < K
    n_mask = offs_n < N
    start = tl.load(offsets_ptr + e)
    end = start + tl.load(counts_ptr + e)
    if IS_F64:
        acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float64)
    else:
        acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    acc2 = tl.zeros_like(acc)
    offs_r = tl.arange(0, BLOCK_R)
    for r0 in range(start, end, BLOCK_R):
        rows = r0 + offs_r
        r_mask = rows < end
        if GATHER_X:
            xr = tl.load(x_idx_ptr + rows, mask=r_mask, other=0)
        else:
            xr = rows
        if GATHER_Y:
            yr = tl.load(y_idx_ptr + rows, mask=r_mask, other=0)
        else:
            yr = rows
        xt = tl.load(x_ptr + xr[None, :].to(tl.int64) * stride_xm + offs_k[:, None] * stride_xk,
                     mask=r_mask[None, :] & k_mask[:, None], other=0.0)
        y_mask = r_mask[:, None] & n_mask[None, :]
        y = tl.load(y_ptr + yr[:, None].to(tl.int64) * stride_ym + offs_n[None, :] * stride_yn, mask=y_mask,
                    other=0.0)
        if SCALE_Y:
            s = tl.load(scale_ptr + rows, mask=r_mask, other=0.0).to(acc.dtype)
            y = (y.to(acc.dtype) * s[:, None]).to(y_ptr.dtype.element_ty)
        acc = tl.dot(xt, y, acc, input_precision=PRECISION)
        if DUAL:
            y2 = tl.load(y2_ptr + yr[:, None].to(tl.int64) * stride_y2m + offs_n[None, :] * stride_y2n,
                         mask=y_mask, other=0.0)
            acc2 = tl.dot(xt, y2, acc2, input_precision=PRECISION)
    mask = k_mask[:, None] & n_mask[None, :]
    off = e.to(tl.int64) * stride_oe + offs_k[:, None].to(tl.int64) * stride_ok + offs_n[None, :] * stride_on
    tl.store(out_ptr + off, acc.to(out_ptr.dtype.element_ty), mask=mask)
    if DUAL:
        tl.store(out2_ptr + off, acc2.to(out2_ptr.dtype.element_ty), mask=mask)


def grouped_xty(x, y, sched, cfg: dict, *, x_idx=None, y_idx=None, scale=None, y2=None, out_dtype=None):
    """-> dW [E, K, N] (and dW2 for y2) where dW[e] = sum over expert e's sorted rows r of x[xr]^T y[yr]."""
    E = sched.counts.numel()
    K, N = x.shape[1], y.shape[1]
    out_dtype = out_dtype or x.dtype
    out = torch.empty((E, K, N), device=x.device, dtype=out_dtype)
    out2 = torch.empty_like(out) if y2 is not None else out
    bk, bn, br = cfg["BLOCK_K"], cfg["BLOCK_N"], cfg["BLOCK_R"]
    grid = (E, triton.cdiv(K, bk), triton.cdiv(N, bn))
    y2_ = y2 if y2 is not None else y
    _xty_kernel[grid](x, x_idx if x_idx is not None else sched.sorted_tok, x.stride(0), x.stride(1),
                      y, y_idx if y_idx is not None else sched.sorted_tok, y.stride(0), y.stride(1),
                      y2_, y2_.stride(0), y2_.stride(1), scale if scale is not None else sched.sorted_w,
                      out, out2, out.stride(0), out.stride(1), out.stride(2), sched.offsets, sched.counts, K, N,
                      GATHER_X=x_idx is not None, GATHER_Y=y_idx is not None, SCALE_Y=scale is not None,
                      DUAL=y2 is not None, IS_F64=x.dtype == torch.float64, PRECISION=dot_precision(x.dtype),
                      BLOCK_K=bk, BLOCK_N=bn, BLOCK_R=br,
                      num_warps=cfg.get("num_warps", 4), num_stages=cfg.get("num_stages", 3))
    return (out, out2) if y2 is not None else out
