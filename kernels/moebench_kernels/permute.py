"""Stable counting sort of assignments by expert, and the block schedule the grouped GEMMs run on.

Only indices are sorted (ScatterMoE style): the GEMMs gather x rows through `sorted_tok` in their prologue, so
no permuted copy of the activations exists. The sort is two parallel passes over fixed-size chunks: a per-chunk
histogram, a tiny [n_chunks, E] scan in torch, then each chunk writes its assignments to their final slots
(rank within the chunk from a one-hot cumsum). It is stable (ties keep their input order), deterministic,
and needs no host sync, so it is safe under CUDA graphs and torch.compile.

Block schedule (like vLLM's moe_align_block_size, but without padding the row arrays): expert e's rows are
cut into ceil(count_e / BLOCK_M) blocks; block b knows its expert and first sorted row, and masks rows past
the expert's end. The grid has a static upper bound cdiv(A, BLOCK_M) + E; unused blocks have expert -1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .routing import chunk_histogram, hist_block


@triton.jit
def _chunk_scatter_kernel(ids_ptr, tok_ptr, w_ptr, base_ptr, perm_ptr, inv_perm_ptr, sorted_tok_ptr,
                          sorted_w_ptr, A, E, BLOCK: tl.constexpr, BLOCK_E: tl.constexpr):
    c = tl.program_id(0)
    offs = c * BLOCK + tl.arange(0, BLOCK)
    valid = offs < A
    ids = tl.load(ids_ptr + offs, mask=valid, other=-1).to(tl.int32)
    experts = tl.arange(0, BLOCK_E)
    onehot = (ids[:, None] == experts[None, :]).to(tl.int32)
    # Exclusive rank among same-expert assignments earlier in this chunk: this is what makes the sort stable.
    rank = tl.sum((tl.cumsum(onehot, axis=0) - onehot) * onehot, axis=1)
    base = tl.load(base_ptr + c * E + ids, mask=valid, other=0)
    pos = base + rank
    tl.store(perm_ptr + pos, offs.to(tl.int64), mask=valid)
    tl.store(inv_perm_ptr + offs, pos.to(tl.int64), mask=valid)
    tl.store(sorted_tok_ptr + pos, tl.load(tok_ptr + offs, mask=valid, other=0), mask=valid)
    tl.store(sorted_w_ptr + pos, tl.load(w_ptr + offs, mask=valid, other=0.0).to(sorted_w_ptr.dtype.element_ty),
             mask=valid)


@dataclass
class SortedAssignments:
    perm: torch.Tensor  # [A] int64: sorted position -> original assignment index
    inv_perm: torch.Tensor  # [A] int64: original assignment index -> sorted position (where its row is)
    sorted_tok: torch.Tensor  # [A] int64: token of each sorted row
    sorted_w: torch.Tensor  # [A] fp32 (fp64 for fp64 weights): routing weight of each sorted row
    counts: torch.Tensor  # [E] int64
    offsets: torch.Tensor  # [E] int64, exclusive
    block_expert: torch.Tensor  # [n_blocks] int32, -1 for unused blocks
    block_start: torch.Tensor  # [n_blocks] int32: first sorted row of the block
    seg_end: torch.Tensor  # [E] int32: one past the last sorted row of each expert
    block_m: int


def sort_by_expert(token_idx, expert_idx, weight, E: int, block_m: int, acc_dtype=torch.float32):
    """Stable sort of A assignments by expert plus the BLOCK_M schedule; see the module docstring."""
    A = expert_idx.numel()
    dev = expert_idx.device
    hist = chunk_histogram(expert_idx, E)  # [n_chunks, E]
    counts = hist.sum(0, dtype=torch.int64)
    offsets = torch.cumsum(counts, 0) - counts
    base = (offsets.unsqueeze(0) + torch.cumsum(hist, 0, dtype=torch.int64) - hist).to(torch.int32).contiguous()
    perm = torch.empty(A, device=dev, dtype=torch.int64)
    inv_perm = torch.empty(A, device=dev, dtype=torch.int64)
    sorted_tok = torch.empty(A, device=dev, dtype=torch.int64)
    sorted_w = torch.empty(A, device=dev, dtype=acc_dtype)
    if A:
        block, block_e = hist_block(E)
        _chunk_scatter_kernel[(hist.shape[0],)](expert_idx, token_idx, weight, base, perm, inv_perm, sorted_tok,
                                                sorted_w, A, E, BLOCK=block, BLOCK_E=block_e)
    block_expert, block_start, seg_end = block_schedule(counts, offsets, A, block_m)
    return SortedAssignments(perm, inv_perm, sorted_tok, sorted_w, counts, offsets, block_expert, block_start,
                             seg_end, block_m)


def _segments(counts: torch.Tensor, offsets: torch.Tensor, A: int, size: int):
    """Cut each expert's rows into pieces of `size` rows. -> (piece expert [-1 unused], piece start row,
    pieces per expert nb, first piece of each expert) over a static cdiv(A, size) + E pieces."""
    E = counts.numel()
    n_pieces = triton.cdiv(A, size) + E  # sum_e ceil(c_e / size) <= A / size + E, whatever the routing
    nb = (counts + size - 1) // size
    cum = torch.cumsum(nb, 0)
    first = cum - nb
    b = torch.arange(n_pieces, device=counts.device, dtype=torch.int64)
    e = torch.searchsorted(cum, b, right=True)
    valid = e < E
    e_c = e.clamp(max=E - 1)
    start = offsets[e_c] + (b - first[e_c]) * size
    return torch.where(valid, e_c, -1).to(torch.int32), torch.where(valid, start, 0).to(torch.int32), nb, first


def block_schedule(counts: torch.Tensor, offsets: torch.Tensor, A: int, block_m: int):
    """Per-block (expert, first row) for a grid of cdiv(A, block_m) + E blocks; all device ops, no sync."""
    block_expert, block_start, _, _ = _segments(counts, offsets, A, block_m)
    seg_end = (offsets + counts).to(torch.int32)
    return block_expert, block_start, seg_end


@dataclass
class SplitSchedule:
    """Row splits for the weight-gradient kernel (grouped_xty): expert e's rows in pieces of `rows` rows."""
    split_expert: torch.Tensor  # [n_splits] int32, -1 for unused slots
    split_start: torch.Tensor  # [n_splits] int32: first sorted row of the split
    n_splits: torch.Tensor  # [E] int32: splits of each expert (0 for an empty expert)
    first_split: torch.Tensor  # [E] int32: index of each expert's first split
    rows: int


def split_schedule(counts: torch.Tensor, offsets: torch.Tensor, A: int, rows: int) -> SplitSchedule:
    """Like block_schedule with `rows` per piece: a static cdiv(A, rows) + E slots, no host sync."""
    split_expert, split_start, nb, first = _segments(counts, offsets, A, rows)
    return SplitSchedule(split_expert, split_start, nb.to(torch.int32), first.to(torch.int32), rows)
