"""The grouped GEMM and grouped X^T Y kernels on their own, in the modes moe_ops does not exercise."""
from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from tests.kernels.kernel_helpers import all_to_one_assign, make_weights
from moebench.kernels.config import INTERPRETER_DEFAULT, gpu_default, interpreting, override
from moebench.kernels.grouped_gemm import grouped_mm, swizzle_tile
from moebench.kernels.moe_ops import triton_experts
from moebench.kernels.grouped_xty import grouped_xty
from moebench.kernels.permute import sort_by_expert

T, K, N, E = 45, 70, 130, 4  # K and N cross a block boundary (64 deep, 128 wide)
# Few big programs under the interpreter; on a GPU (benchmarks/gpu runs these un-interpreted) the fp32 tiles must
# fit its shared memory, which INTERPRETER_DEFAULT's dual X^T Y tile (321 KB at 3 stages) does not on an H100.
BLOCKS = INTERPRETER_DEFAULT if interpreting() else gpu_default(torch.float32)


def _setup(gen):
    exp = torch.randint(0, E, (2 * T,), generator=gen)
    exp[exp == 2] = 1  # an empty expert
    tok = torch.randint(0, T, (2 * T,), generator=gen)
    w = torch.rand(2 * T, generator=gen)
    return tok, exp, w, sort_by_expert(tok, exp, w, E, BLOCKS["gemm"]["BLOCK_M"])


def test_gather_store_sorted_with_transposed_weights():
    gen = torch.Generator().manual_seed(0)
    tok, exp, w, s = _setup(gen)
    x = torch.randn(T, K, generator=gen)
    wt = torch.randn(E, N, K, generator=gen).transpose(1, 2)  # non-contiguous [E, K, N] view
    out = grouped_mm(x, wt, s, BLOCKS["gemm"], a_idx=s.sorted_tok, scale=s.sorted_w)
    e_sorted = exp[s.perm]
    ref = torch.einsum("ak,akn->an", x[s.sorted_tok], wt[e_sorted]) * s.sorted_w[:, None]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_dual_input_scatter_add():
    gen = torch.Generator().manual_seed(1)
    tok, exp, w, s = _setup(gen)
    a, a2 = torch.randn(2, 2 * T, K, generator=gen)
    w1, w2 = torch.randn(2, E, K, N, generator=gen)
    out = torch.zeros(T, N)
    grouped_mm(a, w1, s, BLOCKS["gemm"], a2=a2, w2=w2, out=out, out_idx=s.sorted_tok)
    e_sorted = exp[s.perm]
    rows = torch.einsum("ak,akn->an", a, w1[e_sorted]) + torch.einsum("ak,akn->an", a2, w2[e_sorted])
    torch.testing.assert_close(out, torch.zeros(T, N).index_add(0, s.sorted_tok, rows), rtol=1e-5, atol=1e-4)


def test_xty_per_expert_with_gather_and_scale():
    gen = torch.Generator().manual_seed(2)
    tok, exp, w, s = _setup(gen)
    x = torch.randn(T, K, generator=gen)
    y = torch.randn(T, N, generator=gen)
    y2, y3 = torch.randn(2, 2 * T, N, generator=gen)
    cfg = BLOCKS["xty"]
    dw = grouped_xty(x, y, s, cfg, x_idx=s.sorted_tok, y_idx=s.sorted_tok, scale=s.sorted_w)
    dw_a, dw_b = grouped_xty(x, y2, s, cfg, x_idx=s.sorted_tok, y2=y3)
    e_sorted = exp[s.perm]
    for e in range(E):
        sel = e_sorted == e
        xs = x[s.sorted_tok[sel]]
        torch.testing.assert_close(dw[e], xs.t() @ (y[s.sorted_tok[sel]] * s.sorted_w[sel, None]),
                                   rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(dw_a[e], xs.t() @ y2[sel], rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(dw_b[e], xs.t() @ y3[sel], rtol=1e-5, atol=1e-4)
    assert (dw[2] == 0).all()  # the empty expert's gradient is written, as zeros


@triton.jit
def _swizzle_probe(out_ptr, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    pid_m, pid_n = swizzle_tile(num_pid_m, num_pid_n, GROUP_M)
    tl.store(out_ptr + 2 * tl.program_id(0), pid_m)
    tl.store(out_ptr + 2 * tl.program_id(0) + 1, pid_n)


@pytest.mark.parametrize("m,n,group", [(7, 3, 1), (7, 3, 2), (7, 3, 8), (16, 5, 4), (1, 1, 8)])
def test_swizzle_visits_every_tile_once_in_groups(m, n, group):
    out = torch.empty(m * n, 2, dtype=torch.int32)
    _swizzle_probe[(m * n,)](out, m, n, GROUP_M=group)
    tiles = [tuple(r) for r in out.tolist()]
    assert sorted(tiles) == [(i, j) for i in range(m) for j in range(n)]  # a permutation of all tiles
    # Program p belongs to group p // (group * n), which holds exactly row blocks [g*group, (g+1)*group).
    for p, (pm, pn) in enumerate(tiles):
        assert pm // group == p // (group * n)
    if group == 1:  # no grouping is plain row-major order
        assert tiles == [(i, j) for i in range(m) for j in range(n)]


def test_group_m_does_not_change_results():
    gen = torch.Generator().manual_seed(4)
    assign = all_to_one_assign(40, 5, gen)  # 5 row blocks of 16 for expert 0, more for the others
    x = torch.randn(40, 24, generator=gen)
    w = make_weights(5, 24, 40, "swiglu", torch.float32, gen)
    dy = torch.randn(40, 24, generator=gen)
    outs = []
    for group in (1, 3, 8):
        cfg = {"gemm": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": group},
               "xty": BLOCKS["xty"]}
        leaves = [t.clone().requires_grad_() for t in (x, assign.weight) + w]
        with override(cfg):
            y = triton_experts(leaves[0], assign.token_idx, assign.expert_idx, *leaves[1:], "swiglu")
            y.backward(dy)
        outs.append([y.detach()] + [t.grad for t in leaves])
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_xty_hot_expert_is_split_and_reduced_in_order(dtype):
    from moebench.kernels.grouped_xty import split_plan
    from moebench.kernels.permute import split_schedule

    gen = torch.Generator().manual_seed(5)
    A = 90
    exp = torch.zeros(A, dtype=torch.int64)
    exp[70:] = 3  # expert 0: 70 rows (hot), 3: 20 rows (one split), 1 and 2: empty
    tok = torch.randint(0, T, (A,), generator=gen)
    s = sort_by_expert(tok, exp, torch.rand(A, generator=gen), E, BLOCKS["gemm"]["BLOCK_M"])
    cfg = {"BLOCK_K": 16, "BLOCK_N": 16, "BLOCK_R": 16, "ROWS_PER_SPLIT": 16}
    rows, may_split = split_plan(cfg, A, E, K, N)
    assert rows == 32 and may_split  # mean rows per expert (23) rounded up to BLOCK_R, above ROWS_PER_SPLIT
    split = split_schedule(s.counts, s.offsets, A, rows)
    assert split.n_splits.tolist() == [3, 0, 0, 1] and split.split_expert.numel() == 3 + E
    x = torch.randn(T, K, generator=gen, dtype=dtype)
    y, y2 = torch.randn(2, A, N, generator=gen, dtype=dtype)
    dw, dw2 = grouped_xty(x, y, s, cfg, x_idx=s.sorted_tok, y2=y2)
    e_sorted = exp[s.perm]
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for e in range(E):
        sel = e_sorted == e
        xs = x[s.sorted_tok[sel]]
        torch.testing.assert_close(dw[e], xs.t() @ y[sel], **tol)
        torch.testing.assert_close(dw2[e], xs.t() @ y2[sel], **tol)
    assert (dw[1] == 0).all() and (dw2[2] == 0).all()


def test_split_schedule_covers_each_experts_rows_once():
    from moebench.kernels.permute import split_schedule

    counts = torch.tensor([0, 100, 3, 0, 40])
    offsets = torch.cumsum(counts, 0) - counts
    A, rows = int(counts.sum()), 16
    sp = split_schedule(counts, offsets, A, rows)
    assert sp.split_expert.numel() == -(-A // rows) + 5  # static: depends on A and E only
    owner = torch.full((A,), -1)
    for s, (e, start) in enumerate(zip(sp.split_expert.tolist(), sp.split_start.tolist())):
        if e < 0:
            continue
        assert sp.first_split[e] <= s < sp.first_split[e] + sp.n_splits[e]
        end = min(start + rows, int(offsets[e] + counts[e]))
        assert start < end and (owner[start:end] == -1).all()
        owner[start:end] = e
    assert torch.equal(owner, torch.repeat_interleave(torch.arange(5), counts))
    assert sp.n_splits.tolist() == [0, 7, 1, 0, 3]


def test_split_plan_splits_only_where_an_experts_tiles_cannot_fill_the_gpu():
    from moebench.kernels.config import gpu_default
    from moebench.kernels.grouped_xty import split_plan

    cfg = gpu_default(torch.bfloat16)["xty"]
    # Coarse (E=8, d=4096, f=14336) at 64k tokens x top-2: 64 x 112 tiles per expert -> no split, no buffer.
    assert split_plan(cfg, 131072, 8, 4096, 14336) == (131072, False)
    # Fine-grained (E=128, d=2048, f=768) at 16k tokens x top-8: 32 x 6 tiles -> split at the mean load.
    rows, may_split = split_plan(cfg, 131072, 128, 2048, 768)
    assert may_split and rows == 1024 and rows % cfg["BLOCK_R"] == 0
    # Few rows: ROWS_PER_SPLIT is the floor.
    assert split_plan(cfg, 1000, 128, 2048, 768) == (512, True)


def test_xty_without_split_matches_reference():
    gen = torch.Generator().manual_seed(6)
    tok, exp, w, s = _setup(gen)
    x = torch.randn(T, K, generator=gen)
    y = torch.randn(2 * T, N, generator=gen)
    cfg = {**BLOCKS["xty"], "SPLIT_BELOW_TILES": 1}  # every expert one split: direct writes only
    dw = grouped_xty(x, y, s, cfg, x_idx=s.sorted_tok)
    e_sorted = exp[s.perm]
    for e in range(E):
        sel = e_sorted == e
        torch.testing.assert_close(dw[e], x[s.sorted_tok[sel]].t() @ y[sel], rtol=1e-5, atol=1e-4)
    assert (dw[2] == 0).all()
