"""Router kernels: fused softmax + top-k over router logits, and per-expert token counts.

Softmax and top-k run in one pass over a [BLOCK_T, E] tile held in registers: the logits are read once and the
probabilities never make a round trip to memory before selection. Top-k is k rounds of argmax-and-mask, which
is cheap because k and E are small (k <= 8, E <= 256 in every suite).

`routing_topk` is the differentiable entry point for models (the moebench::softmax_topk custom op, so
torch.compile keeps it as one node): forward is the fused kernel; backward is a few torch ops on [T, E]
(cheap next to the expert GEMMs) that route the gradients of both the probabilities (the load-balancing loss
reads them) and the top-k weights (the language-model loss), through the renormalisation when it is on.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _softmax_topk_kernel(logits_ptr, probs_ptr, w_ptr, idx_ptr, T, E, stride_lt, stride_le,
                         K: tl.constexpr, K_P2: tl.constexpr, RENORM: tl.constexpr,
                         BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    row_mask = rows < T
    col_mask = cols < E
    mask = row_mask[:, None] & col_mask[None, :]
    x = tl.load(logits_ptr + rows[:, None].to(tl.int64) * stride_lt + cols[None, :] * stride_le,
                mask=mask, other=0.0).to(tl.float32)
    # Padded columns are -inf so they get probability 0 and are never picked while a real column remains;
    # padded rows read 0 rather than -inf so they never compute inf - inf (they are not stored anyway).
    x = tl.where(col_mask[None, :], x, -float("inf"))
    x_max = tl.max(x, axis=1)
    num = tl.exp(x - x_max[:, None])
    num = tl.where(col_mask[None, :], num, 0.0)
    p = num / tl.sum(num, axis=1)[:, None]
    tl.store(probs_ptr + rows[:, None].to(tl.int64) * E + cols[None, :], p, mask=mask)

    kcols = tl.arange(0, K_P2)
    top_w = tl.zeros((BLOCK_T, K_P2), dtype=tl.float32)
    top_i = tl.zeros((BLOCK_T, K_P2), dtype=tl.int32)
    remaining = tl.where(col_mask[None, :], p, -1.0)
    for i in tl.static_range(K):
        best = tl.argmax(remaining, axis=1)
        best_p = tl.max(remaining, axis=1)
        top_w = tl.where(kcols[None, :] == i, best_p[:, None], top_w)
        top_i = tl.where(kcols[None, :] == i, best[:, None], top_i)
        # -2 is below every probability and below the -1 of padded columns: a picked column is never re-picked.
        remaining = tl.where(cols[None, :] == best[:, None], -2.0, remaining)
    if RENORM:
        top_w = top_w / tl.sum(top_w, axis=1)[:, None]
    out_mask = row_mask[:, None] & (kcols[None, :] < K)
    out_off = rows[:, None].to(tl.int64) * K + kcols[None, :]
    tl.store(w_ptr + out_off, top_w, mask=out_mask)
    tl.store(idx_ptr + out_off, top_i.to(tl.int64), mask=out_mask)


def topk_blocks(T: int, E: int) -> tuple[int, int]:
    """(BLOCK_T, BLOCK_E) of the softmax+top-k kernel: all E columns in one tile, ~4k elements per program.
    Enough rows to amortise a program; an 8k tile (128 x 64) used 255 registers and spilled (compile_check)."""
    block_e = triton.next_power_of_2(E)
    return max(1, min(triton.next_power_of_2(max(T, 1)), 4096 // block_e)), block_e


def softmax_topk(logits: torch.Tensor, k: int, renormalize: bool = False):
    """logits [T, E] -> (probs [T, E] fp32, topk_weight [T, k] fp32, topk_idx [T, k] int64).

    Weights are the softmax probabilities of the chosen experts, in descending order; with renormalize=True
    they are divided by their sum (Mixtral style) so each token's k weights add to 1.
    """
    if not (logits.dim() == 2):
        raise ValueError("logits must be [T, E]")
    T, E = logits.shape
    if not 1 <= k <= E:
        raise ValueError(f"k={k} must be in [1, E={E}]")
    dev = logits.device
    probs = torch.empty((T, E), device=dev, dtype=torch.float32)
    w = torch.empty((T, k), device=dev, dtype=torch.float32)
    idx = torch.empty((T, k), device=dev, dtype=torch.int64)
    if T == 0:
        return probs, w, idx
    block_t, block_e = topk_blocks(T, E)
    grid = (triton.cdiv(T, block_t),)
    _softmax_topk_kernel[grid](logits, probs, w, idx, T, E, logits.stride(0), logits.stride(1),
                               K=k, K_P2=triton.next_power_of_2(k), RENORM=renormalize,
                               BLOCK_T=block_t, BLOCK_E=block_e)
    return probs, w, idx


@torch.library.custom_op("moebench::softmax_topk", mutates_args=())
def _softmax_topk_op(logits: torch.Tensor, k: int, renormalize: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
    return softmax_topk(logits.contiguous(), k, renormalize)


@_softmax_topk_op.register_fake
def _(logits, k, renormalize):
    T, E = logits.shape
    f32 = torch.float32
    return logits.new_empty((T, E), dtype=f32), logits.new_empty((T, k), dtype=f32), \
        logits.new_empty((T, k), dtype=torch.int64)


def _topk_setup_context(ctx, inputs, output):
    logits, _, renormalize = inputs
    probs, w, idx = output
    ctx.renormalize = renormalize
    ctx.logits_dtype = logits.dtype
    ctx.save_for_backward(probs, w, idx)


def _topk_backward(ctx, d_probs, d_w, _d_idx):
    """d logits from d probs and d topk_weight.

    Without renormalisation w_j = p[idx_j], so d p[idx_j] += d w_j. With it, w_j = p[idx_j] / S,
    S = sum_l p[idx_l], so d p[idx_j] += (d w_j - sum_l d w_l * w_l) / S. Then softmax backward:
    d logits = p * (d p - sum_e d p_e * p_e).
    """
    probs, w, idx = ctx.saved_tensors
    g = d_probs.float() if d_probs is not None else torch.zeros_like(probs)
    if d_w is not None:
        d_w = d_w.float()
        if ctx.renormalize:
            s = probs.gather(1, idx).sum(-1, keepdim=True)
            d_sel = (d_w - (d_w * w).sum(-1, keepdim=True)) / s
        else:
            d_sel = d_w
        # The k indices of a row are distinct, so this scatter writes each element once (deterministic).
        g = g + torch.zeros_like(probs).scatter(1, idx, d_sel)
    d_logits = probs * (g - (g * probs).sum(-1, keepdim=True))
    return d_logits.to(ctx.logits_dtype), None, None


_softmax_topk_op.register_autograd(_topk_backward, setup_context=_topk_setup_context)


def routing_topk(logits: torch.Tensor, k: int, renormalize: bool = False):
    """Differentiable fused router: logits [T, E] -> (probs [T, E] fp32, topk_weight [T, k] fp32,
    topk_idx [T, k] int64), as `probs = logits.softmax(-1); w, idx = probs.topk(k)` (and w / w.sum(-1) with
    renormalize). Gradients reach the logits through both probs and topk_weight."""
    if logits.dim() != 2:
        raise ValueError("logits must be [T, E]")
    if not 1 <= k <= logits.shape[1]:
        raise ValueError(f"k={k} must be in [1, E={logits.shape[1]}]")
    return _softmax_topk_op(logits, k, renormalize)


@triton.jit
def _chunk_hist_kernel(ids_ptr, hist_ptr, A, E, BLOCK: tl.constexpr, BLOCK_E: tl.constexpr):
    # One-hot reduction instead of atomics: each chunk's histogram is exact and deterministic, and the
    # per-chunk rows are exactly what the stable counting sort in permute.py needs as its scan input.
    c = tl.program_id(0)
    offs = c * BLOCK + tl.arange(0, BLOCK)
    ids = tl.load(ids_ptr + offs, mask=offs < A, other=-1).to(tl.int32)
    experts = tl.arange(0, BLOCK_E)
    onehot = (ids[:, None] == experts[None, :]).to(tl.int32)
    tl.store(hist_ptr + c * E + experts, tl.sum(onehot, axis=0), mask=experts < E)


def hist_block(E: int) -> tuple[int, int]:
    block_e = triton.next_power_of_2(max(E, 1))
    # ~16k one-hot cells per program: a [chunk, E] int32 tile that stays in registers on a GPU.
    return max(16, min(1024, 16384 // block_e)), block_e


def chunk_histogram(expert_idx: torch.Tensor, E: int) -> torch.Tensor:
    """[n_chunks, E] int32: how many of each chunk's assignments go to each expert (chunk = hist_block(E)[0])."""
    A = expert_idx.numel()
    block, block_e = hist_block(E)
    n_chunks = triton.cdiv(A, block)
    hist = torch.empty((n_chunks, E), device=expert_idx.device, dtype=torch.int32)
    if n_chunks:
        _chunk_hist_kernel[(n_chunks,)](expert_idx, hist, A, E, BLOCK=block, BLOCK_E=block_e)
    return hist


def expert_counts(expert_idx: torch.Tensor, E: int):
    """expert_idx [A] -> (counts [E] int64, exclusive offsets [E] int64); offsets[e] = sum(counts[:e])."""
    counts = chunk_histogram(expert_idx.reshape(-1), E).sum(0, dtype=torch.int64)
    return counts, torch.cumsum(counts, 0) - counts
