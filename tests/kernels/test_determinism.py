"""The default combine is deterministic: fixed-order per-token sums, no atomic kernels launched."""
from __future__ import annotations

import inspect

import pytest
import torch

from tests.kernels.kernel_helpers import make_weights, topk_assign, triton_assign
from moebench.kernels import activation, combine, grouped_gemm, grouped_xty, moe_ops, permute, routing
from moebench.kernels.combine import combine_rows, token_segments
from moebench.models.experts import Assignment, reference_experts


def test_combine_rows_sums_each_tokens_rows_in_assignment_order():
    gen = torch.Generator().manual_seed(0)
    T, A, N = 70, 150, 130  # > one 64-token tile and one 128-column tile
    tok = torch.randint(0, T - 5, (A,), generator=gen)  # the last 5 tokens get no row; others 0..many
    row_of = torch.randperm(A, generator=gen)  # where each assignment's row was written
    rows = torch.randn(A, N, generator=gen, dtype=torch.float64)
    src, start = token_segments(tok, row_of, T)
    assert start.shape == (T + 1,) and start[0] == 0 and start[-1] == A
    for t in (0, 7, T - 1):  # segments list the token's assignments in increasing assignment index
        want = row_of[(tok == t).nonzero().flatten()]
        assert torch.equal(src[start[t]:start[t + 1]], want)
    out = combine_rows(rows, src, start, T)
    ref = torch.zeros(T, N, dtype=torch.float64).index_add(0, tok, rows[row_of])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert (out[T - 5:] == 0).all()
    # fp16 rows accumulate in fp32 and round once.
    half = combine_rows(rows.half(), src, start, T, out_dtype=torch.float32)
    ref32 = torch.zeros(T, N).index_add(0, tok, rows.half().float()[row_of])
    torch.testing.assert_close(half, ref32, rtol=1e-5, atol=1e-5)


def _spy_launches(monkeypatch):
    """Wrap every @triton.jit kernel the ops launch; record (kernel name, constexpr kwargs) per launch."""
    launches = []

    class Spy:
        def __init__(self, fn):
            self.fn = fn

        def __getitem__(self, grid):
            def launch(*args, **kw):
                py = self.fn.fn  # the Python function under the (interpreted or JIT) kernel object
                launches.append((py.__name__, inspect.getsource(py), kw))
                return self.fn[grid](*args, **kw)
            return launch

    for mod in (activation, combine, grouped_gemm, grouped_xty, permute, routing):
        for name, obj in list(vars(mod).items()):
            if name.startswith("_") and name.endswith("_kernel"):
                monkeypatch.setattr(mod, name, Spy(obj))
    return launches


def _fwd_bwd(act="swiglu", seed=1):
    gen = torch.Generator().manual_seed(seed)
    T, d, f, E = 37, 24, 40, 5
    a = topk_assign(T, E, 2, gen)
    x = torch.randn(T, d, generator=gen)
    weights = make_weights(E, d, f, act, torch.float32, gen)
    dy = torch.randn(T, d, generator=gen)
    leaves = [t.clone().requires_grad_() for t in (x, a.weight) + tuple(w for w in weights if w is not None)]
    w_up, *rest = leaves[2:]
    w_gate, w_down = (rest[0], rest[1]) if act == "swiglu" else (None, rest[0])
    y = triton_assign(leaves[0], Assignment(a.token_idx, a.expert_idx, leaves[1]), w_up, w_gate, w_down, act)
    y.backward(dy)
    return [y.detach()] + [t.grad for t in leaves], (x, a, weights, dy)


ATOMIC_FLAGS = ("SCATTER_ADD", "ATOMIC_DW")


def test_default_path_launches_no_atomic_and_is_bitwise_repeatable(monkeypatch):
    launches = _spy_launches(monkeypatch)
    first, _ = _fwd_bwd()
    names = {n for n, _, _ in launches}
    assert {"_grouped_mm_kernel", "_down_bwd_act_kernel", "_combine_kernel", "_xty_kernel"} <= names, names
    for name, src, kw in launches:
        if "atomic_add" in src:
            # Every atomic in our kernels sits behind one of these switches; the default leaves them off.
            flags = [f for f in ATOMIC_FLAGS if f in kw]
            assert flags and not any(kw[f] for f in flags), (name, {f: kw.get(f) for f in ATOMIC_FLAGS})
    second, _ = _fwd_bwd()
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_atomic_combine_is_opt_in_and_still_correct(monkeypatch):
    launches = _spy_launches(monkeypatch)
    with moe_ops.atomic_combine():
        got, (x, a, weights, dy) = _fwd_bwd(act="gelu", seed=2)
    assert any(kw.get("SCATTER_ADD") for _, _, kw in launches)
    assert any(kw.get("ATOMIC_DW") for _, _, kw in launches)
    assert not moe_ops._ATOMIC_COMBINE  # the context restored the default
    w_up, _, w_down = weights
    leaves = [t.clone().requires_grad_() for t in (x, a.weight, w_up, w_down)]
    y = reference_experts(leaves[0], Assignment(a.token_idx, a.expert_idx, leaves[1]), leaves[2], None,
                          leaves[3], "gelu")
    y.backward(dy)
    for g, want in zip(got, [y.detach()] + [t.grad for t in leaves]):
        torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", ["relu", "swiglu"])
def test_uneven_rows_per_token_default_combine_matches_reference(act):
    # Tokens with 0 or many rows (as expert choice gives) go through variable-length combine segments.
    gen = torch.Generator().manual_seed(3)
    T, d, f, E = 30, 16, 24, 4
    a = Assignment(torch.randint(0, 10, (60,), generator=gen), torch.randint(0, E, (60,), generator=gen),
                   torch.rand(60, generator=gen))
    counts = torch.bincount(a.token_idx, minlength=T)
    assert counts.max() >= 3 and (counts == 0).any()
    x = torch.randn(T, d, generator=gen, dtype=torch.float64)
    w = make_weights(E, d, f, act, torch.float64, gen)
    w64 = Assignment(a.token_idx, a.expert_idx, a.weight.double())
    torch.testing.assert_close(triton_assign(x, w64, *w, act), reference_experts(x, w64, *w, act),
                               rtol=1e-10, atol=1e-12)
