"""Grouped GEMM over expert-sorted rows: out[r] = a[row(r)] @ W[expert(r)], with gather and scatter fused.

One program computes a BLOCK_M x BLOCK_N tile of one expert's rows (the block schedule in permute.py says
which expert and which sorted rows). Prologue: A rows are read through an index (`a_idx`), so x is never
permuted in memory. Epilogue: an optional per-row scale (the routing weight) and either a plain store in
sorted order (the default: combine.py then sums each token's rows in a fixed order) or an atomic add into the
row's token (the non-deterministic combine, kept for moe_ops.atomic_combine()).
DUAL_IN adds a second (A, W) product into the same accumulator: the SwiGLU dX is dU @ Wup^T + dG @ Wgate^T.
Accumulation is fp32 (fp64 for fp64 inputs, which exists only for gradcheck).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


DEFAULT_GROUP_M = 8  # row blocks per launch group (swizzle_tile); a config key, "GROUP_M"


@triton.jit
def mm_tile(acc, a_ptr, a_rows, row_mask, stride_am, stride_ak, w_ptr, stride_wk, stride_wn, offs_n, n_mask, K,
            BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """acc += A[a_rows, :K] @ W[:K, offs_n]; masked rows and columns read as zero."""
    offs_k = tl.arange(0, BLOCK_K)
    a_base = a_ptr + a_rows[:, None].to(tl.int64) * stride_am
    w_base = w_ptr + offs_n[None, :].to(tl.int64) * stride_wn
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        k_mask = kk < K
        a = tl.load(a_base + kk[None, :] * stride_ak, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        w = tl.load(w_base + kk[:, None].to(tl.int64) * stride_wk, mask=k_mask[:, None] & n_mask[None, :],
                    other=0.0)
        # out_dtype names the accumulator's dtype: Triton 3.6 (the device image's) asserts the fp64 accumulator
        # equals its float32 default; later Tritons infer it
        acc = tl.dot(a, w, acc, input_precision=PRECISION, out_dtype=acc.dtype)
    return acc


@triton.jit
def swizzle_tile(num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """(row block, N tile) of this program in a 1-D grid of num_pid_m * num_pid_n programs.

    Row-major order (all N tiles of block 0, then block 1, ...) reloads every W tile once per row block while
    it is still in L2 only if the whole W fits there. Instead, programs launch in groups of GROUP_M row blocks:
    within a group they walk down the GROUP_M blocks first, then to the next N tile, so GROUP_M consecutive
    programs share one W tile and a group's x rows are reused across its N tiles (Triton's matmul tutorial,
    vLLM fused_moe's GROUP_SIZE_M). It only reorders programs: every tile is computed exactly as before.
    """
    pid = tl.program_id(0)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)  # the last group may be short
    pid_m = first_pid_m + (pid % num_pid_in_group) % group_size_m
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def block_rows(b, block_expert_ptr, block_start_ptr, seg_end_ptr, BLOCK_M: tl.constexpr):
    """(expert, sorted rows, row mask) of row block b; expert < 0 means the block is unused."""
    e = tl.load(block_expert_ptr + b)
    start = tl.load(block_start_ptr + b)
    end = tl.load(seg_end_ptr + tl.maximum(e, 0))
    rows = start + tl.arange(0, BLOCK_M)
    return e, rows, rows < end


@triton.jit
def _grouped_mm_kernel(a_ptr, a_idx_ptr, stride_am, stride_ak,
                       w_ptr, stride_we, stride_wk, stride_wn,
                       a2_ptr, stride_a2m, stride_a2k,
                       w2_ptr, stride_w2e, stride_w2k, stride_w2n,
                       out_ptr, out_idx_ptr, stride_om, stride_on,
                       scale_ptr, block_expert_ptr, block_start_ptr, seg_end_ptr, n_blocks, K, N,
                       GATHER_A: tl.constexpr, DUAL_IN: tl.constexpr, SCALE: tl.constexpr,
                       SCATTER_ADD: tl.constexpr, IS_F64: tl.constexpr, PRECISION: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid_m, pid_n = swizzle_tile(n_blocks, tl.cdiv(N, BLOCK_N), GROUP_M)
    e, rows, row_mask = block_rows(pid_m, block_expert_ptr, block_start_ptr, seg_end_ptr, BLOCK_M)
    if e >= 0:
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_mask = offs_n < N
        if GATHER_A:
            a_rows = tl.load(a_idx_ptr + rows, mask=row_mask, other=0)
        else:
            a_rows = rows
        if IS_F64:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc = mm_tile(acc, a_ptr, a_rows, row_mask, stride_am, stride_ak, w_ptr + e.to(tl.int64) * stride_we,
                      stride_wk, stride_wn, offs_n, n_mask, K, BLOCK_K, PRECISION)
        if DUAL_IN:
            acc = mm_tile(acc, a2_ptr, a_rows, row_mask, stride_a2m, stride_a2k,
                          w2_ptr + e.to(tl.int64) * stride_w2e, stride_w2k, stride_w2n, offs_n, n_mask, K,
                          BLOCK_K, PRECISION)
        if SCALE:
            acc = acc * tl.load(scale_ptr + rows, mask=row_mask, other=0.0).to(acc.dtype)[:, None]
        mask = row_mask[:, None] & n_mask[None, :]
        if SCATTER_ADD:
            out_rows = tl.load(out_idx_ptr + rows, mask=row_mask, other=0)
            tl.atomic_add(out_ptr + out_rows[:, None].to(tl.int64) * stride_om + offs_n[None, :] * stride_on,
                          acc.to(out_ptr.dtype.element_ty), mask=mask)
        else:
            tl.store(out_ptr + rows[:, None].to(tl.int64) * stride_om + offs_n[None, :] * stride_on,
                     acc.to(out_ptr.dtype.element_ty), mask=mask)


def dot_precision(dtype: torch.dtype) -> str:
    """Follow torch's own TF32 switch for fp32, so the Triton path is exactly as precise as the torch paths."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def grouped_mm(a, w, sched, cfg: dict, *, a_idx=None, a2=None, w2=None, scale=None, out=None, out_idx=None):
    """Rows of `a` (gathered through a_idx if given) times W[e] ([E, K, N], any strides, so W^T is a view).

    Writes `out` in sorted-row order, or, when out_idx is given, atomically adds each row into out[out_idx[r]]
    (`out` must then be a zeroed fp32/fp64 buffer). `scale` multiplies each row; `a2 @ w2` is added to
    the same tile (both read through the same rows). Returns out.
    """
    E, K, N = w.shape
    n_rows = sched.sorted_tok.numel()
    if out is None:
        out = torch.empty((n_rows, N), device=a.device, dtype=a.dtype)
    if n_rows == 0:
        return out
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    if not (bm == sched.block_m):
        raise ValueError("the schedule was built for another BLOCK_M")
    n_blocks = sched.block_expert.numel()
    grid = (n_blocks * triton.cdiv(N, bn),)
    dual = a2 is not None
    a2_, w2_ = (a2, w2) if dual else (a, w)
    _grouped_mm_kernel[grid](
        a, a_idx if a_idx is not None else sched.sorted_tok, a.stride(0), a.stride(1),
        w, w.stride(0), w.stride(1), w.stride(2),
        a2_, a2_.stride(0), a2_.stride(1), w2_, w2_.stride(0), w2_.stride(1), w2_.stride(2),
        out, out_idx if out_idx is not None else sched.sorted_tok, out.stride(0), out.stride(1),
        scale if scale is not None else sched.sorted_w,
        sched.block_expert, sched.block_start, sched.seg_end, n_blocks, K, N,
        GATHER_A=a_idx is not None, DUAL_IN=dual, SCALE=scale is not None, SCATTER_ADD=out_idx is not None,
        IS_F64=a.dtype == torch.float64, PRECISION=dot_precision(a.dtype),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=cfg.get("GROUP_M", DEFAULT_GROUP_M),
        num_warps=cfg.get("num_warps", 4), num_stages=cfg.get("num_stages", 3))
    return out
