"""The autograd wrapper (fp64 gradcheck through the kernels) and the custom ops under torch.compile."""
from __future__ import annotations

import pytest
import torch

from tests.kernels.kernel_helpers import make_weights, topk_assign
from moebench.kernels.moe_ops import experts_fwd, triton_experts
from moebench.models.experts import Assignment, reference_experts


@pytest.mark.parametrize("act", ["gelu", "swiglu"])
def test_gradcheck_fp64(act):
    # The kernels accumulate in fp64 for fp64 inputs, and the interpreter runs fp64 tl.dot, so this is a
    # real gradcheck of every kernel's backward, not of a torch fallback.
    gen = torch.Generator().manual_seed(11)
    T, d, f, E = 9, 6, 10, 3
    assign = topk_assign(T, E, 2, gen)
    x = torch.randn(T, d, generator=gen, dtype=torch.float64, requires_grad=True)
    w_up, w_gate, w_down = (None if w is None else w.requires_grad_()
                            for w in make_weights(E, d, f, act, torch.float64, gen))
    weight = assign.weight.double().requires_grad_()

    def fn(x, weight, w_up, w_down, *gate):
        return triton_experts(x, assign.token_idx, assign.expert_idx, weight, w_up, gate[0] if gate else None,
                              w_down, act)

    inputs = (x, weight, w_up, w_down) + ((w_gate,) if w_gate is not None else ())
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


def _sample(act="swiglu"):
    gen = torch.Generator().manual_seed(12)
    T, d, f, E = 20, 16, 24, 4
    assign = topk_assign(T, E, 2, gen)
    x = torch.randn(T, d, generator=gen)
    w_up, w_gate, w_down = make_weights(E, d, f, act, torch.float32, gen)
    return x, assign, w_up, w_gate, w_down


def test_opcheck_forward_op():
    x, a, w_up, w_gate, w_down = _sample()
    args = (x.requires_grad_(), a.token_idx, a.expert_idx, a.weight.requires_grad_(), w_up.requires_grad_(),
            w_gate.requires_grad_(), w_down.requires_grad_(), "swiglu")
    # Schema, fake-tensor shapes, autograd registration and AOT dispatch all checked by torch itself.
    torch.library.opcheck(experts_fwd, args,
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration",
                                      "test_aot_dispatch_dynamic"))


def test_torch_compile_forward_backward():
    x, a, w_up, w_gate, w_down = _sample()
    torch._dynamo.reset()

    # A layer-like function around the op: the surrounding torch code is compiled, the op stays opaque.
    def layer(x, weight, w_up, w_gate, w_down):
        y = triton_experts(x, a.token_idx, a.expert_idx, weight, w_up, w_gate, w_down, "swiglu")
        return (y * 2.0 + x).square().mean()

    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (x, a.weight, w_up, w_gate, w_down)]
    loss = compiled(*leaves)
    loss.backward()
    ref_leaves = [t.clone().requires_grad_() for t in (x, a.weight, w_up, w_gate, w_down)]
    y_ref = reference_experts(ref_leaves[0], Assignment(a.token_idx, a.expert_idx, ref_leaves[1]),
                              *ref_leaves[2:], "swiglu")
    ref_loss = (y_ref * 2.0 + ref_leaves[0]).square().mean()
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(leaves, ref_leaves):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-6)
