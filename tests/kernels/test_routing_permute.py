"""Router softmax+top-k, expert counts, the stable counting sort and the block schedule."""
from __future__ import annotations

import pytest
import torch

from moebench.kernels.permute import sort_by_expert
from moebench.kernels.routing import expert_counts, softmax_topk


@pytest.mark.parametrize("T,E,k", [(1, 4, 1), (37, 5, 2), (96, 8, 4), (50, 64, 8)])
@pytest.mark.parametrize("renorm", [False, True])
def test_softmax_topk_matches_torch(T, E, k, renorm):
    logits = torch.randn(T, E, generator=torch.Generator().manual_seed(T * E + k))
    probs, w, idx = softmax_topk(logits, k, renormalize=renorm)
    ref_probs = logits.softmax(-1)
    ref_w, ref_idx = ref_probs.topk(k, dim=-1)
    if renorm:
        ref_w = ref_w / ref_w.sum(-1, keepdim=True)
    torch.testing.assert_close(probs, ref_probs)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(w, ref_w)
    assert idx.dtype == torch.int64 and w.dtype == torch.float32


def test_softmax_topk_half_logits_and_bad_k():
    logits = torch.randn(33, 6, generator=torch.Generator().manual_seed(1)).half()
    probs, w, idx = softmax_topk(logits, 3)
    torch.testing.assert_close(probs, logits.float().softmax(-1))
    assert torch.equal(idx, logits.float().softmax(-1).topk(3).indices)
    with pytest.raises(ValueError):
        softmax_topk(logits, 7)


def test_expert_counts_and_offsets():
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 7, (3000,), generator=gen)  # several histogram chunks
    ids[ids == 4] = 5  # an empty expert
    counts, offsets = expert_counts(ids, 7)
    ref = torch.bincount(ids, minlength=7)
    assert torch.equal(counts, ref) and counts[4] == 0
    assert torch.equal(offsets, torch.cumsum(ref, 0) - ref)


@pytest.mark.parametrize("A,E", [(0, 3), (1, 1), (200, 5), (2500, 64)])
def test_sort_is_stable_and_schedule_covers_rows(A, E):
    gen = torch.Generator().manual_seed(A + E)
    exp = torch.randint(0, E, (A,), generator=gen)
    if A:
        exp[: A // 2] = 0  # one heavy expert spanning many blocks and chunks
    tok = torch.randint(0, 1000, (A,), generator=gen)
    w = torch.rand(A, generator=gen)
    bm = 16
    s = sort_by_expert(tok, exp, w, E, bm)
    assert torch.equal(s.perm, torch.argsort(exp, stable=True))
    assert torch.equal(s.sorted_tok, tok[s.perm]) and torch.equal(s.sorted_w, w[s.perm])
    assert torch.equal(s.counts, torch.bincount(exp, minlength=E))
    # Every sorted row belongs to exactly one used block, and that block's expert is the row's expert.
    owner = torch.full((A,), -1)
    for b, (e, start) in enumerate(zip(s.block_expert.tolist(), s.block_start.tolist())):
        if e < 0:
            continue
        end = min(start + bm, int(s.seg_end[e]))
        assert start < end, "a used block must hold at least one row"
        assert (owner[start:end] == -1).all()
        owner[start:end] = e
    assert torch.equal(owner, exp[s.perm])
