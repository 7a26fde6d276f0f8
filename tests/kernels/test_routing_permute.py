"""Router softmax+top-k, expert counts, the stable counting sort and the block schedule."""
from __future__ import annotations

import pytest
import torch

from moebench.kernels.permute import sort_by_expert
from moebench.kernels.routing import expert_counts, routing_topk, softmax_topk


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


@pytest.mark.parametrize("T,E,k", [(37, 5, 2), (50, 64, 8), (20, 8, 1)])
@pytest.mark.parametrize("renorm", [False, True])
def test_routing_topk_forward_backward_matches_torch(T, E, k, renorm):
    gen = torch.Generator().manual_seed(T + E + k)
    logits = torch.randn(T, E, generator=gen)
    g_probs, g_w = torch.randn(T, E, generator=gen), torch.randn(T, k, generator=gen)

    def run(fn):
        leaf = logits.clone().requires_grad_()
        probs, w, idx = fn(leaf)
        # Both outputs carry gradient, as in training (balance loss on probs, LM loss through w).
        ((probs * g_probs).sum() + (w * g_w).sum()).backward()
        return probs.detach(), w.detach(), idx, leaf.grad

    def ref(x):
        probs = x.softmax(-1)
        w, idx = probs.topk(k, dim=-1)
        if renorm:
            w = w / w.sum(-1, keepdim=True)
        return probs, w, idx

    got, want = run(lambda x: routing_topk(x, k, renorm)), run(ref)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    assert torch.equal(got[2], want[2])
    torch.testing.assert_close(got[3], want[3], rtol=1e-5, atol=1e-6)
    assert got[3].abs().max() > 0


def test_routing_topk_grad_through_weights_only_and_half_logits():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(16, 6, generator=gen).half().requires_grad_()
    _, w, _ = routing_topk(logits, 2, renormalize=True)
    w[:, 0].sum().backward()  # probs unused: its gradient arrives as None
    assert logits.grad.dtype == torch.float16
    ref = logits.detach().float().requires_grad_()
    rw, _ = ref.softmax(-1).topk(2)
    (rw / rw.sum(-1, keepdim=True))[:, 0].sum().backward()
    torch.testing.assert_close(logits.grad.float(), ref.grad, rtol=1e-2, atol=1e-3)
    with pytest.raises(ValueError):
        routing_topk(logits, 7)


def test_routing_topk_opcheck_and_compile():
    from moebench.kernels.routing import _softmax_topk_op

    logits = torch.randn(24, 8, generator=torch.Generator().manual_seed(4), requires_grad=True)
    torch.library.opcheck(_softmax_topk_op, (logits, 3, True),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration",
                                      "test_aot_dispatch_dynamic"))
    torch._dynamo.reset()
    compiled = torch.compile(lambda x: routing_topk(x, 3, True)[1].square().sum(), backend="aot_eager",
                             fullgraph=True)
    leaf = logits.detach().clone().requires_grad_()
    compiled(leaf).backward()
    ref = logits.detach().clone().requires_grad_()
    w, _ = ref.softmax(-1).topk(3)
    (w / w.sum(-1, keepdim=True)).square().sum().backward()
    torch.testing.assert_close(leaf.grad, ref.grad, rtol=1e-5, atol=1e-6)
