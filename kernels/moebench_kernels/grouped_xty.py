"""Weight gradients: dW[e] = X_e^T @ Y_e, summed over the rows that expert e received.

A program owning one (expert, K tile, N tile) of dW and walking all of that expert's rows would make the
whole launch wait for the hottest expert: with one expert holding most tokens, its few K x N programs run
long after the rest of the grid is idle. So each expert's sorted rows are cut into splits of at most
`rows` rows (permute.split_schedule) and one program owns one (split, K tile, N tile):

  * an expert with a single split (the balanced case) writes its dW tile directly, in the output dtype;
  * an expert with several splits writes one fp32 partial per split into `part` [n_slots, K, N], and
    _split_reduce_kernel sums an expert's partials in split order (fixed order: deterministic);
  * an empty expert has no split; the reduce kernel writes its zeros.

The grid has a static size, cdiv(A, rows) + E slots (like the GEMMs' block schedule), so it needs no host
sync. `rows` = max(ROWS_PER_SPLIT, mean rows per expert), rounded up to BLOCK_R: a hot expert then spreads
over about as many programs as a balanced routing gives every expert, and the partial buffer stays at most
2E slots (2x an fp32 dW; allocated every time, written only for experts that really split) instead of growing
with the token count. A literal ROWS_PER_SPLIT cap would need cdiv(A, ROWS_PER_SPLIT) + E slots: for the coarse
bench shape (E=8, d=4096, f=14336) at 64k tokens, 264 x 235 MB = 62 GB per buffer, against 16 x 235 MB = 3.8 GB
here. And coarse shapes do not need the split at all: an expert's dW there is 64 x 112 tiles, so even one
expert holding every row keeps the whole GPU busy. So when an expert's dW has at least SPLIT_BELOW_TILES tiles
(config key, default 1024, about 8 waves of 132 SMs) nothing is split and no partial buffer is allocated.

Like the forward, X and Y rows can be gathered by token index (x and dy are never permuted), Y rows can be
scaled by the routing weight, and DUAL computes a second product sharing the X loads (dW_up and dW_gate both
need x^T).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .grouped_gemm import dot_precision
from .permute import split_schedule

DEFAULT_ROWS_PER_SPLIT = 512  # config key xty.ROWS_PER_SPLIT
DEFAULT_SPLIT_BELOW_TILES = 1024  # config key xty.SPLIT_BELOW_TILES
# The reduction is elementwise over two fp32 tiles (DUAL): 8 warps keep it far from the register limit.
REDUCE_WARPS = 8


@triton.jit
def _xty_kernel(x_ptr, x_idx_ptr, stride_xm, stride_xk,
                y_ptr, y_idx_ptr, stride_ym, stride_yn, y2_ptr, stride_y2m, stride_y2n, scale_ptr,
                out_ptr, out2_ptr, stride_oe, stride_ok, stride_on,
                part_ptr, part2_ptr, stride_ps, stride_pk, stride_pn,
                split_expert_ptr, split_start_ptr, n_splits_ptr, offsets_ptr, counts_ptr, rows_per_split, K, N,
                GATHER_X: tl.constexpr, GATHER_Y: tl.constexpr, SCALE_Y: tl.constexpr, DUAL: tl.constexpr,
                IS_F64: tl.constexpr, PRECISION: tl.constexpr,
                BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr):
    s = tl.program_id(0)
    e = tl.load(split_expert_ptr + s)
    if e >= 0:
        offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        offs_n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
        k_mask = offs_k < K
        n_mask = offs_n < N
        start = tl.load(split_start_ptr + s)
        end = tl.minimum(start + rows_per_split, tl.load(offsets_ptr + e) + tl.load(counts_ptr + e))
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
                sc = tl.load(scale_ptr + rows, mask=r_mask, other=0.0).to(acc.dtype)
                y = (y.to(acc.dtype) * sc[:, None]).to(y_ptr.dtype.element_ty)
            acc = tl.dot(xt, y, acc, input_precision=PRECISION, out_dtype=acc.dtype)
            if DUAL:
                y2 = tl.load(y2_ptr + yr[:, None].to(tl.int64) * stride_y2m + offs_n[None, :] * stride_y2n,
                             mask=y_mask, other=0.0)
                acc2 = tl.dot(xt, y2, acc2, input_precision=PRECISION, out_dtype=acc2.dtype)
        mask = k_mask[:, None] & n_mask[None, :]
        if tl.load(n_splits_ptr + e) == 1:  # the expert's only split: this is its dW, no reduction needed
            off = e.to(tl.int64) * stride_oe + offs_k[:, None].to(tl.int64) * stride_ok + offs_n[None, :] * stride_on
            tl.store(out_ptr + off, acc.to(out_ptr.dtype.element_ty), mask=mask)
            if DUAL:
                tl.store(out2_ptr + off, acc2.to(out2_ptr.dtype.element_ty), mask=mask)
        else:
            off = s.to(tl.int64) * stride_ps + offs_k[:, None].to(tl.int64) * stride_pk + offs_n[None, :] * stride_pn
            tl.store(part_ptr + off, acc, mask=mask)
            if DUAL:
                tl.store(part2_ptr + off, acc2, mask=mask)


@triton.jit
def _split_reduce_kernel(part_ptr, part2_ptr, stride_ps, stride_pk, stride_pn,
                         out_ptr, out2_ptr, stride_oe, stride_ok, stride_on, n_splits_ptr, first_split_ptr, K, N,
                         DUAL: tl.constexpr, IS_F64: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    e = tl.program_id(0)
    n = tl.load(n_splits_ptr + e)
    if n != 1:  # one split wrote dW[e] itself; zero splits (empty expert) write zeros here
        offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        offs_n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (offs_k < K)[:, None] & (offs_n < N)[None, :]
        first = tl.load(first_split_ptr + e)
        if IS_F64:
            acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float64)
        else:
            acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
        acc2 = tl.zeros_like(acc)
        # Scalar 64-bit slot pointers stepped per split + one 32-bit in-slot offset tile (K*N < 2^31): two
        # tiles of 64-bit pointers would not fit in registers next to two fp32 accumulators.
        p_off = offs_k[:, None] * stride_pk + offs_n[None, :] * stride_pn
        p1 = part_ptr + first.to(tl.int64) * stride_ps
        p2 = part2_ptr + first.to(tl.int64) * stride_ps
        for _ in range(0, n):  # split order: the fixed summation order
            acc += tl.load(p1 + p_off, mask=mask, other=0.0)
            p1 += stride_ps
            if DUAL:
                acc2 += tl.load(p2 + p_off, mask=mask, other=0.0)
                p2 += stride_ps
        off = e.to(tl.int64) * stride_oe + offs_k[:, None].to(tl.int64) * stride_ok + offs_n[None, :] * stride_on
        tl.store(out_ptr + off, acc.to(out_ptr.dtype.element_ty), mask=mask)
        if DUAL:
            tl.store(out2_ptr + off, acc2.to(out2_ptr.dtype.element_ty), mask=mask)


def split_plan(cfg: dict, A: int, E: int, K: int, N: int) -> tuple[int, bool]:
    """-> (rows per split, whether experts can have several splits); static: shapes and config only.

    No split when an expert's dW already has SPLIT_BELOW_TILES tiles (its programs fill the GPU alone);
    else max(ROWS_PER_SPLIT, mean rows per expert) rounded up to BLOCK_R (see the module docstring)."""
    tiles = triton.cdiv(K, cfg["BLOCK_K"]) * triton.cdiv(N, cfg["BLOCK_N"])
    if tiles >= cfg.get("SPLIT_BELOW_TILES", DEFAULT_SPLIT_BELOW_TILES):
        return max(A, 1), False  # every expert's rows fit one split
    br = cfg["BLOCK_R"]
    rows = max(cfg.get("ROWS_PER_SPLIT", DEFAULT_ROWS_PER_SPLIT), triton.cdiv(A, max(E, 1)), 1)
    return triton.cdiv(rows, br) * br, True


def grouped_xty(x, y, sched, cfg: dict, *, x_idx=None, y_idx=None, scale=None, y2=None, out_dtype=None):
    """-> dW [E, K, N] (and dW2 for y2) where dW[e] = sum over expert e's sorted rows r of x[xr]^T y[yr]."""
    E = sched.counts.numel()
    A = sched.sorted_tok.numel()
    K, N = x.shape[1], y.shape[1]
    out_dtype = out_dtype or x.dtype
    out = torch.empty((E, K, N), device=x.device, dtype=out_dtype)
    out2 = torch.empty_like(out) if y2 is not None else out
    bk, bn, br = cfg["BLOCK_K"], cfg["BLOCK_N"], cfg["BLOCK_R"]
    rows, may_split = split_plan(cfg, A, E, K, N)
    splits = split_schedule(sched.counts, sched.offsets, A, rows)
    n_slots = splits.split_expert.numel()
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    # Allocated for every slot (which experts split is known on the device only), written only by those that
    # do; a 1-element stand-in when no expert can split (the kernels then never touch it).
    part = torch.empty((n_slots, K, N) if may_split else (1, 1, 1), device=x.device, dtype=acc_dtype)
    part2 = torch.empty_like(part) if y2 is not None else part
    tiles = (triton.cdiv(K, bk), triton.cdiv(N, bn))
    y2_ = y2 if y2 is not None else y
    meta = dict(num_warps=cfg.get("num_warps", 4), num_stages=cfg.get("num_stages", 3))
    _xty_kernel[(n_slots,) + tiles](
        x, x_idx if x_idx is not None else sched.sorted_tok, x.stride(0), x.stride(1),
        y, y_idx if y_idx is not None else sched.sorted_tok, y.stride(0), y.stride(1),
        y2_, y2_.stride(0), y2_.stride(1), scale if scale is not None else sched.sorted_w,
        out, out2, out.stride(0), out.stride(1), out.stride(2), part, part2, part.stride(0), part.stride(1),
        part.stride(2), splits.split_expert, splits.split_start, splits.n_splits, sched.offsets, sched.counts,
        splits.rows, K, N,
        GATHER_X=x_idx is not None, GATHER_Y=y_idx is not None, SCALE_Y=scale is not None,
        DUAL=y2 is not None, IS_F64=x.dtype == torch.float64, PRECISION=dot_precision(x.dtype),
        BLOCK_K=bk, BLOCK_N=bn, BLOCK_R=br, **meta)
    _split_reduce_kernel[(E,) + tiles](
        part, part2, part.stride(0), part.stride(1), part.stride(2), out, out2, out.stride(0), out.stride(1),
        out.stride(2), splits.n_splits, splits.first_split, K, N, DUAL=y2 is not None,
        IS_F64=x.dtype == torch.float64, BLOCK_K=bk, BLOCK_N=bn, num_warps=REDUCE_WARPS)
    return (out, out2) if y2 is not None else out
