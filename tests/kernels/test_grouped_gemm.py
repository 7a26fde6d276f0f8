"""The grouped GEMM and grouped X^T Y kernels on their own, in the modes moe_ops does not exercise."""
from __future__ import annotations

import torch

from moebench.kernels.config import INTERPRETER_DEFAULT
from moebench.kernels.grouped_gemm import grouped_mm
from moebench.kernels.grouped_xty import grouped_xty
from moebench.kernels.permute import sort_by_expert

T, K, N, E = 45, 70, 130, 4  # K and N cross a block boundary (64 deep, 128 wide)


def _setup(gen):
    exp = torch.randint(0, E, (2 * T,), generator=gen)
    exp[exp == 2] = 1  # an empty expert
    tok = torch.randint(0, T, (2 * T,), generator=gen)
    w = torch.rand(2 * T, generator=gen)
    return tok, exp, w, sort_by_expert(tok, exp, w, E, INTERPRETER_DEFAULT["gemm"]["BLOCK_M"])


def test_gather_store_sorted_with_transposed_weights():
    gen = torch.Generator().manual_seed(0)
    tok, exp, w, s = _setup(gen)
    x = torch.randn(T, K, generator=gen)
    wt = torch.randn(E, N, K, generator=gen).transpose(1, 2)  # non-contiguous [E, K, N] view
    out = grouped_mm(x, wt, s, INTERPRETER_DEFAULT["gemm"], a_idx=s.sorted_tok, scale=s.sorted_w)
    e_sorted = exp[s.perm]
    ref = torch.einsum("ak,akn->an", x[s.sorted_tok], wt[e_sorted]) * s.sorted_w[:, None]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_dual_input_scatter_add():
    gen = torch.Generator().manual_seed(1)
    tok, exp, w, s = _setup(gen)
    a, a2 = torch.randn(2, 2 * T, K, generator=gen)
    w1, w2 = torch.randn(2, E, K, N, generator=gen)
    out = torch.zeros(T, N)
    grouped_mm(a, w1, s, INTERPRETER_DEFAULT["gemm"], a2=a2, w2=w2, out=out, out_idx=s.sorted_tok)
    e_sorted = exp[s.perm]
    rows = torch.einsum("ak,akn->an", a, w1[e_sorted]) + torch.einsum("ak,akn->an", a2, w2[e_sorted])
    torch.testing.assert_close(out, torch.zeros(T, N).index_add(0, s.sorted_tok, rows), rtol=1e-5, atol=1e-4)


def test_xty_per_expert_with_gather_and_scale():
    gen = torch.Generator().manual_seed(2)
    tok, exp, w, s = _setup(gen)
    x = torch.randn(T, K, generator=gen)
    y = torch.randn(T, N, generator=gen)
    y2, y3 = torch.randn(2, 2 * T, N, generator=gen)
    cfg = INTERPRETER_DEFAULT["xty"]
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
