"""triton_experts against reference_experts and a per-token loop: forward, all five gradients, odd loads."""
from __future__ import annotations

import pytest
import torch

from tests.kernels.kernel_helpers import (all_to_one_assign, expert_choice_assign, make_weights, per_token_loop,
                            topk_assign, triton_assign)
from moebench.kernels.moe_ops import is_available
from moebench.models.experts import Assignment, reference_experts

# Sizes deliberately not multiples of the interpreter blocks (64 rows, 128 columns, 64 deep).
T, D, F, E = 37, 24, 40, 5


def _assign(kind, gen):
    if kind == "top1":
        return topk_assign(T, E, 1, gen)
    if kind == "top2":
        return topk_assign(T, E, 2, gen)
    if kind == "top4":
        return topk_assign(T, E, 4, gen)
    if kind == "empty_expert":
        return topk_assign(T, E, 2, gen, empty_expert=3)
    if kind == "one_expert_all":
        return all_to_one_assign(T, E, gen)
    if kind == "capacity_drop":
        return topk_assign(T, E, 2, gen, capacity=6)
    if kind == "expert_choice":
        return expert_choice_assign(T, E, 9, gen)
    raise ValueError(kind)


def _grads(fn, x, assign, w_up, w_gate, w_down, act, dy):
    leaves = [t.detach().clone().requires_grad_() for t in (x, assign.weight, w_up, w_down)]
    gate = w_gate.detach().clone().requires_grad_() if w_gate is not None else None
    xl, wl, up, down = leaves
    y = fn(xl, Assignment(assign.token_idx, assign.expert_idx, wl), up, gate, down, act)
    params = leaves + ([gate] if gate is not None else [])
    grads = torch.autograd.grad(y, params, dy, allow_unused=True)
    return y.detach(), dict(zip(["x", "weight", "w_up", "w_down", "w_gate"], grads))


KINDS = ["top1", "top2", "top4", "empty_expert", "one_expert_all", "capacity_drop", "expert_choice"]


@pytest.mark.parametrize("act", ["gelu", "swiglu"])
@pytest.mark.parametrize("kind", KINDS)
def test_forward_backward_fp32(act, kind):
    gen = torch.Generator().manual_seed(2 * KINDS.index(kind) + (act == "swiglu"))
    assign = _assign(kind, gen)
    x = torch.randn(T, D, generator=gen)
    w_up, w_gate, w_down = make_weights(E, D, F, act, torch.float32, gen)
    dy = torch.randn(T, D, generator=gen)
    y, g = _grads(triton_assign, x, assign, w_up, w_gate, w_down, act, dy)
    y_ref, g_ref = _grads(reference_experts, x, assign, w_up, w_gate, w_down, act, dy)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-4, atol=1e-5, msg=lambda m: f"d{name}: {m}")
    if kind in ("capacity_drop", "expert_choice"):
        untouched = torch.ones(T, dtype=torch.bool)
        untouched[assign.token_idx] = False
        assert untouched.any(), "the case is meant to leave some tokens without an assignment"
        assert (y[untouched] == 0).all() and (g["x"][untouched] == 0).all()


def test_relu_and_per_token_oracle():
    """Checks against an oracle that shares no grouping logic with the reference."""
    gen = torch.Generator().manual_seed(7)
    assign = expert_choice_assign(T, E, 11, gen)
    x = torch.randn(T, D, generator=gen, dtype=torch.float64)
    for act in ("relu", "swiglu"):
        w_up, w_gate, w_down = make_weights(E, D, F, act, torch.float64, gen)
        dy = torch.randn(T, D, generator=gen, dtype=torch.float64)
        w64 = Assignment(assign.token_idx, assign.expert_idx, assign.weight.double())
        y, g = _grads(triton_assign, x, w64, w_up, w_gate, w_down, act, dy)
        y_ref, g_ref = _grads(per_token_loop, x, w64, w_up, w_gate, w_down, act, dy)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
        for name in g_ref:
            torch.testing.assert_close(g[name], g_ref[name], rtol=1e-10, atol=1e-12)


def test_fp16_forward_backward():
    gen = torch.Generator().manual_seed(3)
    assign = topk_assign(T, E, 2, gen)
    x = torch.randn(T, D, generator=gen)
    w_up, w_gate, w_down = make_weights(E, D, F, "swiglu", torch.float32, gen)
    dy = torch.randn(T, D, generator=gen)
    half = [t.half() for t in (x, w_up, w_gate, w_down, dy)]
    y, g = _grads(triton_assign, half[0], assign, *half[1:4], "swiglu", half[4])
    # fp32 math on the fp16-rounded inputs is the target: the kernels accumulate in fp32.
    y_ref, g_ref = _grads(reference_experts, *[t.float() for t in half[:1]], assign,
                          *[t.float() for t in half[1:4]], "swiglu", half[4].float())
    assert y.dtype == torch.float16 and g["w_up"].dtype == torch.float16
    torch.testing.assert_close(y.float(), y_ref, rtol=2e-2, atol=2e-3)
    for name in g_ref:
        torch.testing.assert_close(g[name].float(), g_ref[name], rtol=2e-2, atol=5e-3)


def test_fp16_activations_with_fp32_weights():
    gen = torch.Generator().manual_seed(8)
    assign = topk_assign(T, E, 2, gen)
    x = torch.randn(T, D, generator=gen).half()
    w_up, w_gate, w_down = make_weights(E, D, F, "gelu", torch.float32, gen)
    y, g = _grads(triton_assign, x, assign, w_up, w_gate, w_down, "gelu", torch.ones(T, D).half())
    y_ref, g_ref = _grads(reference_experts, x.float(), assign, w_up.half().float(), None,
                          w_down.half().float(), "gelu", torch.ones(T, D))
    assert y.dtype == torch.float16 and g["w_up"].dtype == torch.float32 and g["x"].dtype == torch.float16
    torch.testing.assert_close(y.float(), y_ref, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(g["w_down"], g_ref["w_down"], rtol=2e-2, atol=5e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 tl.dot needs a GPU")
def test_bf16_forward_backward_gpu():
    gen = torch.Generator().manual_seed(4)
    assign = topk_assign(256, 8, 2, gen)
    x = torch.randn(256, 64, generator=gen)
    w_up, w_gate, w_down = make_weights(8, 64, 128, "swiglu", torch.float32, gen)
    dy = torch.randn(256, 64, generator=gen)
    dev = [t.bfloat16().cuda() for t in (x, w_up, w_gate, w_down, dy)]
    a_dev = Assignment(assign.token_idx.cuda(), assign.expert_idx.cuda(), assign.weight.cuda())
    y, g = _grads(triton_assign, dev[0], a_dev, *dev[1:4], "swiglu", dev[4])
    y_ref, g_ref = _grads(reference_experts, dev[0].float(), a_dev, *[t.float() for t in dev[1:4]], "swiglu",
                          dev[4].float())
    torch.testing.assert_close(y.float(), y_ref, rtol=5e-2, atol=2e-2)
    for name in g_ref:
        torch.testing.assert_close(g[name].float(), g_ref[name], rtol=5e-2, atol=5e-2)


def test_no_assignments_gives_zeros():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(T, D, generator=gen, requires_grad=True)
    w_up, w_gate, w_down = make_weights(E, D, F, "gelu", torch.float32, gen)
    empty = Assignment(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), torch.zeros(0))
    y = triton_assign(x, empty, w_up, w_gate, w_down, "gelu")
    assert y.shape == x.shape and (y == 0).all()
    (dx,) = torch.autograd.grad(y.sum(), [x])
    assert (dx == 0).all()


def test_rejects_mismatched_gate():
    gen = torch.Generator().manual_seed(6)
    w_up, w_gate, w_down = make_weights(E, D, F, "swiglu", torch.float32, gen)
    assign = topk_assign(T, E, 1, gen)
    with pytest.raises(ValueError):
        triton_assign(torch.randn(T, D), assign, w_up, None, w_down, "swiglu")
    with pytest.raises(ValueError):
        triton_assign(torch.randn(T, D), assign, w_up, w_gate, w_down, "gelu")


def test_is_available_on_cpu_under_interpreter(monkeypatch):
    ok, reason = is_available("cpu")
    assert ok, reason  # conftest switched the interpreter on
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    ok, reason = is_available("cpu")
    assert not ok and "TRITON_INTERPRET" in reason


@pytest.mark.parametrize("act", ["gelu", "swiglu"])
def test_multi_tile_paths_with_small_blocks(act):
    """With 16-wide blocks every loop runs several times: several row blocks per expert, several K steps,
    several N tiles (so d_weight has several per-tile partials) and several row splits of the hot expert in
    the dW kernel (reduced in split order)."""
    from moebench.kernels.config import override

    small = {"gemm": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16},
             "xty": {"BLOCK_K": 16, "BLOCK_N": 16, "BLOCK_R": 16, "ROWS_PER_SPLIT": 16}}
    gen = torch.Generator().manual_seed(9)
    assign = all_to_one_assign(T, E, gen)  # expert 0: 37 rows = 3 row blocks
    x = torch.randn(T, D, generator=gen)
    w_up, w_gate, w_down = make_weights(E, D, F, act, torch.float32, gen)
    dy = torch.randn(T, D, generator=gen)
    with override(small):
        y, g = _grads(triton_assign, x, assign, w_up, w_gate, w_down, act, dy)
    y_ref, g_ref = _grads(reference_experts, x, assign, w_up, w_gate, w_down, act, dy)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-4, atol=1e-5)


def test_activation_kernels_take_their_own_block_sections():
    """The "up_act" / "bwd_act" config sections change N/K tiles (and so the number of d_weight partials) of the
    activation kernels only; results stay those of the reference."""
    from moebench.kernels.config import override

    cfg = {"gemm": {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16},
           "up_act": {"BLOCK_N": 64, "BLOCK_K": 32, "BLOCK_M": 999},  # BLOCK_M is ignored: one schedule
           "bwd_act": {"BLOCK_N": 16},
           "xty": {"BLOCK_K": 32, "BLOCK_N": 32, "BLOCK_R": 16}}
    gen = torch.Generator().manual_seed(10)
    assign = topk_assign(T, E, 2, gen)
    x = torch.randn(T, D, generator=gen)
    w_up, w_gate, w_down = make_weights(E, D, F, "swiglu", torch.float32, gen)
    dy = torch.randn(T, D, generator=gen)
    with override(cfg):
        y, g = _grads(triton_assign, x, assign, w_up, w_gate, w_down, "swiglu", dy)
    y_ref, g_ref = _grads(reference_experts, x, assign, w_up, w_gate, w_down, "swiglu", dy)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-4, atol=1e-5)


def test_fp16_multi_tile_split_paths():
    """fp16 through every multi-program path (row blocks, N tiles, dW splits reduced from fp32 partials)."""
    from moebench.kernels.config import override

    small = {"gemm": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 2},
             "xty": {"BLOCK_K": 16, "BLOCK_N": 16, "BLOCK_R": 16, "ROWS_PER_SPLIT": 16}}
    gen = torch.Generator().manual_seed(11)
    assign = all_to_one_assign(T, E, gen)
    x = torch.randn(T, D, generator=gen).half()
    w_up, w_gate, w_down = (w.half() for w in make_weights(E, D, F, "swiglu", torch.float32, gen))
    dy = torch.randn(T, D, generator=gen).half()
    with override(small):
        y, g = _grads(triton_assign, x, assign, w_up, w_gate, w_down, "swiglu", dy)
    y_ref, g_ref = _grads(reference_experts, x.float(), assign, w_up.float(), w_gate.float(), w_down.float(),
                          "swiglu", dy.float())
    assert y.dtype == torch.float16 and g["w_gate"].dtype == torch.float16
    torch.testing.assert_close(y.float(), y_ref, rtol=2e-2, atol=2e-3)
    for name in g_ref:
        torch.testing.assert_close(g[name].float(), g_ref[name], rtol=2e-2, atol=5e-3)
