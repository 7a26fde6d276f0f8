"""The two GEMMs that touch the expert hidden layer, with the activation fused into their epilogues.

Forward (up projection): one program computes the x@W_up tile and, for SwiGLU, the x@W_gate tile from the
same gathered x rows (x is read once for both), then writes the pre-activations (saved for backward) and
h = act(.) for the down projection.

Backward (dY through W_down^T): g = dy[tok] @ W_down[e]^T is the gradient of the unweighted expert output
w.r.t. h. The epilogue recomputes h from the saved pre-activations (h is not saved, which saves A*f of
activation memory), then produces
    d_weight[a] = <h_a, g_a>           (gradient of the routing weight, reaching the router)
    dU, dG      = act'(pre) * w_a * g_a  (what the up/gate weight gradients and dX need)
and writes h back for the dW_down kernel. Each program holds only BLOCK_N of the f columns, so d_weight comes
out as one partial sum per N tile: stored as dweight[a, n_tile] and summed by the caller in a fixed order
(deterministic), or, with ATOMIC_DW, added atomically into dweight[a] (faster by one tiny reduction, but the
order of the adds varies run to run).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .grouped_gemm import DEFAULT_GROUP_M, block_rows, dot_precision, mm_tile, swizzle_tile

ACT_CODES = {"relu": 0, "gelu": 1, "swiglu": 2}


@triton.jit
def _gelu_parts(u):
    # Exact (erf) GELU, as torch.nn.functional.gelu's default; returns (gelu(u), gelu'(u)).
    cdf = 0.5 * (1.0 + tl.math.erf(u * 0.7071067811865476))
    pdf = tl.exp(-0.5 * u * u) * 0.3989422804014327
    return u * cdf, cdf + u * pdf


@triton.jit
def _up_act_kernel(x_ptr, tok_ptr, stride_xm, stride_xk,
                   wu_ptr, wg_ptr, stride_we, stride_wk, stride_wn,
                   pre_u_ptr, pre_g_ptr, h_ptr, stride_hm, stride_hn,
                   block_expert_ptr, block_start_ptr, seg_end_ptr, n_blocks, K, N,
                   ACT: tl.constexpr, IS_F64: tl.constexpr, PRECISION: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid_m, pid_n = swizzle_tile(n_blocks, tl.cdiv(N, BLOCK_N), GROUP_M)
    e, rows, row_mask = block_rows(pid_m, block_expert_ptr, block_start_ptr, seg_end_ptr, BLOCK_M)
    if e >= 0:
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_mask = offs_n < N
        toks = tl.load(tok_ptr + rows, mask=row_mask, other=0)
        if IS_F64:
            acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
        else:
            acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_g = tl.zeros_like(acc_u)
        offs_k = tl.arange(0, BLOCK_K)
        x_base = x_ptr + toks[:, None].to(tl.int64) * stride_xm
        w_off = e.to(tl.int64) * stride_we + offs_n[None, :].to(tl.int64) * stride_wn
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + offs_k
            k_mask = kk < K
            a = tl.load(x_base + kk[None, :] * stride_xk, mask=row_mask[:, None] & k_mask[None, :], other=0.0)
            w_mask = k_mask[:, None] & n_mask[None, :]
            kw = kk[:, None].to(tl.int64) * stride_wk
            acc_u = tl.dot(a, tl.load(wu_ptr + w_off + kw, mask=w_mask, other=0.0), acc_u,
                           input_precision=PRECISION, out_dtype=acc_u.dtype)
            if ACT == 2:
                acc_g = tl.dot(a, tl.load(wg_ptr + w_off + kw, mask=w_mask, other=0.0), acc_g,
                               input_precision=PRECISION, out_dtype=acc_g.dtype)
        mask = row_mask[:, None] & n_mask[None, :]
        off = rows[:, None].to(tl.int64) * stride_hm + offs_n[None, :] * stride_hn
        out_ty = h_ptr.dtype.element_ty
        # Activate the rounded pre-activation: backward recomputes h from exactly these stored values.
        u = acc_u.to(out_ty)
        tl.store(pre_u_ptr + off, u, mask=mask)
        u = u.to(acc_u.dtype)
        if ACT == 2:
            g = acc_g.to(out_ty)
            tl.store(pre_g_ptr + off, g, mask=mask)
            g = g.to(acc_u.dtype)
            h = g * tl.sigmoid(g) * u
        elif ACT == 1:
            h, _ = _gelu_parts(u)
        else:
            h = tl.maximum(u, 0.0)
        tl.store(h_ptr + off, h.to(out_ty), mask=mask)


@triton.jit
def _down_bwd_act_kernel(dy_ptr, tok_ptr, stride_dm, stride_dk,
                         wd_ptr, stride_we, stride_wk, stride_wn,
                         pre_u_ptr, pre_g_ptr, sw_ptr, perm_ptr,
                         d_u_ptr, d_g_ptr, h_ptr, stride_hm, stride_hn, dweight_ptr, stride_dwm, stride_dwn,
                         block_expert_ptr, block_start_ptr, seg_end_ptr, n_blocks, K, N,
                         ACT: tl.constexpr, ATOMIC_DW: tl.constexpr, IS_F64: tl.constexpr, PRECISION: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid_m, pid_n = swizzle_tile(n_blocks, tl.cdiv(N, BLOCK_N), GROUP_M)
    e, rows, row_mask = block_rows(pid_m, block_expert_ptr, block_start_ptr, seg_end_ptr, BLOCK_M)
    if e >= 0:
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_mask = offs_n < N
        toks = tl.load(tok_ptr + rows, mask=row_mask, other=0)
        if IS_F64:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float64)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc = mm_tile(acc, dy_ptr, toks, row_mask, stride_dm, stride_dk, wd_ptr + e.to(tl.int64) * stride_we,
                      stride_wk, stride_wn, offs_n, n_mask, K, BLOCK_K, PRECISION)
        mask = row_mask[:, None] & n_mask[None, :]
        off = rows[:, None].to(tl.int64) * stride_hm + offs_n[None, :] * stride_hn
        out_ty = h_ptr.dtype.element_ty
        w = tl.load(sw_ptr + rows, mask=row_mask, other=0.0).to(acc.dtype)
        u = tl.load(pre_u_ptr + off, mask=mask, other=0.0).to(acc.dtype)
        dh = acc * w[:, None]
        if ACT == 2:
            g = tl.load(pre_g_ptr + off, mask=mask, other=0.0).to(acc.dtype)
            sig = tl.sigmoid(g)
            silu = g * sig
            h = silu * u
            tl.store(d_u_ptr + off, (dh * silu).to(out_ty), mask=mask)
            tl.store(d_g_ptr + off, (dh * u * sig * (1.0 + g * (1.0 - sig))).to(out_ty), mask=mask)
        elif ACT == 1:
            h, dgelu = _gelu_parts(u)
            tl.store(d_u_ptr + off, (dh * dgelu).to(out_ty), mask=mask)
        else:
            h = tl.maximum(u, 0.0)
            tl.store(d_u_ptr + off, tl.where(u > 0, dh, 0.0).to(out_ty), mask=mask)
        h = h.to(out_ty)
        tl.store(h_ptr + off, h, mask=mask)
        # The forward used the rounded h, so the weight gradient does too.
        part = tl.sum(h.to(acc.dtype) * acc, axis=1)
        orig = tl.load(perm_ptr + rows, mask=row_mask, other=0)
        dw_ptrs = dweight_ptr + orig * stride_dwm + pid_n * stride_dwn
        if ATOMIC_DW:
            tl.atomic_add(dw_ptrs, part.to(dweight_ptr.dtype.element_ty), mask=row_mask)
        else:
            tl.store(dw_ptrs, part.to(dweight_ptr.dtype.element_ty), mask=row_mask)


def _launch_cfg(cfg, sched, N):
    """-> (1-D grid, n_blocks, N tiles, launch meta): row blocks x N tiles, ordered by swizzle_tile."""
    if not (cfg["BLOCK_M"] == sched.block_m):
        raise ValueError("the schedule was built for another BLOCK_M")
    n_blocks, n_tiles = sched.block_expert.numel(), triton.cdiv(N, cfg["BLOCK_N"])
    return (n_blocks * n_tiles,), n_blocks, n_tiles, dict(
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"],
        GROUP_M=cfg.get("GROUP_M", DEFAULT_GROUP_M), num_warps=cfg.get("num_warps", 4),
        num_stages=cfg.get("num_stages", 3))


def up_act(x, w_up, w_gate, sched, activation: str, cfg: dict):
    """-> (pre_u [A, f], pre_g [A, f] or empty, h [A, f]), rows in expert-sorted order."""
    E, K, N = w_up.shape
    A = sched.sorted_tok.numel()
    gated = activation == "swiglu"
    pre_u = torch.empty((A, N), device=x.device, dtype=x.dtype)
    pre_g = torch.empty((A, N) if gated else (0, N), device=x.device, dtype=x.dtype)
    h = torch.empty((A, N), device=x.device, dtype=x.dtype)
    if A == 0:
        return pre_u, pre_g, h
    wg = w_gate if gated else w_up
    if not (wg.stride() == w_up.stride()):
        raise ValueError("w_up and w_gate must share a layout")
    grid, n_blocks, _, meta = _launch_cfg(cfg, sched, N)
    _up_act_kernel[grid](x, sched.sorted_tok, x.stride(0), x.stride(1),
                         w_up, wg, w_up.stride(0), w_up.stride(1), w_up.stride(2),
                         pre_u, pre_g if gated else pre_u, h, h.stride(0), h.stride(1),
                         sched.block_expert, sched.block_start, sched.seg_end, n_blocks, K, N,
                         ACT=ACT_CODES[activation], IS_F64=x.dtype == torch.float64,
                         PRECISION=dot_precision(x.dtype), **meta)
    return pre_u, pre_g, h


def kernel_cfg(gemm_cfg: dict, overrides: dict | None) -> dict:
    """Block config of one activation kernel: the GEMM config with its optional section ("up_act" or
    "bwd_act") on top. Both epilogues hold more tiles than a plain GEMM (SwiGLU up: two accumulators; backward:
    the accumulator plus pre-activations, h, dU, dG), so at the GEMM's 64x128 tile and 4 warps they spill on
    sm_80 / sm_90 (compile_check); the GPU default gives them 8 warps (and the backward 64 columns).
    BLOCK_M cannot differ: all row-blocked kernels share one schedule."""
    return {**gemm_cfg, **(overrides or {}), "BLOCK_M": gemm_cfg["BLOCK_M"]}


def down_bwd_act(dy, w_down, pre_u, pre_g, sched, activation: str, cfg: dict, dweight):
    """-> (d_u, d_g or empty, h), sorted order, and d_weight partials: `dweight` is either an fp32/fp64
    [A, cdiv(f, BLOCK_N)] buffer (every entry written: the partial of N tile j for assignment a, in original
    assignment order; sum over dim 1 to finish) or a zeroed [A] buffer the kernel atomically adds into."""
    E, N, K = w_down.shape  # w_down is [E, f, d]: the GEMM runs over d and produces f columns
    A = sched.sorted_tok.numel()
    gated = activation == "swiglu"
    d_u = torch.empty_like(pre_u)
    d_g = torch.empty_like(pre_g)
    h = torch.empty_like(pre_u)
    if A == 0:
        return d_u, d_g, h
    grid, n_blocks, n_tiles, meta = _launch_cfg(cfg, sched, N)
    atomic = dweight.dim() == 1
    if not (atomic or dweight.shape == (A, n_tiles)):
        raise ValueError("dweight must be [A] (atomic) or [A, cdiv(f, BLOCK_N)]")
    _down_bwd_act_kernel[grid](dy, sched.sorted_tok, dy.stride(0), dy.stride(1),
                               w_down, w_down.stride(0), w_down.stride(2), w_down.stride(1),
                               pre_u, pre_g if gated else pre_u, sched.sorted_w, sched.perm,
                               d_u, d_g if gated else d_u, h, h.stride(0), h.stride(1),
                               dweight, dweight.stride(0), 0 if atomic else dweight.stride(1),
                               sched.block_expert, sched.block_start, sched.seg_end, n_blocks, K, N,
                               ACT=ACT_CODES[activation], ATOMIC_DW=atomic, IS_F64=dy.dtype == torch.float64,
                               PRECISION=dot_precision(dy.dtype), **meta)
    return d_u, d_g, h
