"""The expert computation under torch.compile: which backends the compiler may trace, and one opaque custom op
(`moebench::torch_experts`; the Triton kernels own `moebench::experts_fwd`/`_bwd`) for the ones it may not.

Traced (inductor compiles them with the code around them): the Triton backend (its kernels are custom ops with
fake implementations, kernels/moebench_kernels/moe_ops.py) and the grouped torch path (`torch_grouped`, and
`torch` where it takes the grouped path), whose GEMMs are `torch._grouped_mm` on CUDA in bf16 and, in any other
dtype, the same kernel as a custom op (models/grouped_op.py): fake-tensor tracing of `aten._grouped_mm` accepts
bf16 only ("Expected inputs of BF16", torch/_meta_registrations.py), and casting a float32 run to bf16 to please
the compiler would silently change its numerics: it never happens.

The opaque op: `reference` loops over a boolean mask, torch_loop splits by per-expert row counts read on the
host, and the capacity limit and zero-compute experts select pairs with `nonzero`: shapes only the run knows
(the grouped path takes that selection as a mask instead, backends.torch_grouped_experts `keep`). For those the
compiler sees one node of known output shape (x's) per MoE layer, run eagerly inside, with the pair selection
inside it too; everything around it (attention, router, losses) is compiled. Its backward
recomputes the expert forward inside `moebench::torch_experts_bwd` and differentiates it there (a custom op can
hand its backward only tensors it returns, and the backends' intermediates differ per backend): the expert FFNs
run twice in such a compiled step, as with activation checkpointing, for exactly the gradients of eager. On the
traced Triton path the selection stays in the graph (a graph break per capacity-limited layer, as the eager
path's one sync). Eager runs (train.compile false) never go through either op: they call the backend directly.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import Tensor

from .backends import BACKENDS, fast_path, torch_grouped_experts
from .experts import Assignment


def traceable(backend: str, dtype: torch.dtype, cuda: bool, shape: tuple[int, int, int, int]) -> bool:
    """Whether torch.compile may trace `backend` itself for these A assignment rows and [E, d, f] experts (else:
    the opaque op): Triton, and the grouped torch path, whose GEMMs are torch._grouped_mm on CUDA in bf16 and
    the same kernel as a custom op in any other dtype (models/grouped_op.py)."""
    if backend in ("triton", "torch_grouped"):
        return True
    return backend == "torch" and fast_path(*shape, dtype, cuda) == "grouped"


def compiled_experts(x, assign: Assignment, keep: Optional[Tensor], w_up, w_gate, w_down, activation: str,
                     backend: str, experts_fn) -> Tensor:
    """MoELayer.experts under torch.compile: the backend traced where it can be, else the opaque op."""
    traced = traceable(backend, x.dtype, x.is_cuda, (assign.expert_idx.numel(), *w_up.shape))
    if keep is None and traced:
        return experts_fn(x, assign, w_up, w_gate, w_down, activation)
    if keep is not None and traced and backend != "triton" and not (x.is_cuda and x.dtype == torch.bfloat16):
        # the grouped path through its custom op takes the selection as a mask (models/grouped_op.py)
        return torch_grouped_experts(x, assign, w_up, w_gate, w_down, activation, keep=keep)
    if keep is not None and backend == "triton":
        return experts_fn(x, select(assign, keep), w_up, w_gate, w_down, activation)  # a graph break: nonzero
    return experts_op(x, assign.token_idx, assign.expert_idx, assign.weight, w_up, w_gate, w_down, keep,
                      activation, backend)


def select(assign: Assignment, keep: Optional[Tensor]) -> Assignment:
    """The pairs with keep[a] true, in order (one `nonzero`: a host sync on CUDA); all of them when keep is None."""
    if keep is None:
        return assign
    kept = keep.nonzero().squeeze(1)
    return Assignment(assign.token_idx[kept], assign.expert_idx[kept], assign.weight[kept])


def _run(backend, x, token_idx, expert_idx, weight, w_up, w_gate, w_down, keep, activation) -> Tensor:
    assign = select(Assignment(token_idx, expert_idx, weight), keep)
    return BACKENDS[backend](x, assign, w_up, w_gate, w_down, activation)


@torch.library.custom_op("moebench::torch_experts", mutates_args=())
def experts_op(x: Tensor, token_idx: Tensor, expert_idx: Tensor, weight: Tensor, w_up: Tensor,
               w_gate: Optional[Tensor], w_down: Tensor, keep: Optional[Tensor], activation: str,
               backend: str) -> Tensor:
    """y = BACKENDS[backend](x, the kept pairs, ...), eagerly (see the module docstring)."""
    return _run(backend, x, token_idx, expert_idx, weight, w_up, w_gate, w_down, keep, activation)


@experts_op.register_fake
def _(x, token_idx, expert_idx, weight, w_up, w_gate, w_down, keep, activation, backend):
    return x.new_empty(x.shape)


@contextlib.contextmanager
def _saved_tensor_hooks_suspended():
    """torch.func refuses to run while saved-tensor hooks are set (the trainer's activation-memory watch sets one
    at step 0); the recomputation's own intermediates are transient and not what the watch measures."""
    hooks = []
    while (top := torch._C._autograd._top_saved_tensors_default_hooks(True)) is not None:
        hooks.append(top)
        torch._C._autograd._pop_saved_tensors_default_hooks()
    try:
        yield
    finally:
        for pack, unpack in reversed(hooks):
            torch._C._autograd._push_saved_tensors_default_hooks(pack, unpack)


@torch.library.custom_op("moebench::torch_experts_bwd", mutates_args=())
def experts_bwd_op(dy: Tensor, x: Tensor, token_idx: Tensor, expert_idx: Tensor, weight: Tensor, w_up: Tensor,
                   w_gate: Optional[Tensor], w_down: Tensor, keep: Optional[Tensor], activation: str,
                   backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, dweight, dw_up, dw_gate, dw_down) by recomputing the forward; dw_gate is empty without a gate."""
    def fwd(x, weight, w_up, w_down, *gate):
        return _run(backend, x, token_idx, expert_idx, weight, w_up, gate[0] if gate else None, w_down, keep,
                    activation)

    # torch.func, not torch.autograd: a custom op's body runs below the autograd dispatch key, where
    # tensor.backward() records nothing; torch.func's transform sets up its own autograd level
    primals = (x, weight, w_up, w_down) + (() if w_gate is None else (w_gate,))
    with _saved_tensor_hooks_suspended():
        _, vjp = torch.func.vjp(fwd, *primals)
        grads = vjp(dy)
    dx, dweight, dw_up, dw_down = grads[:4]
    dw_gate = grads[4] if w_gate is not None else w_up.new_empty(0)
    return dx, dweight, dw_up, dw_gate, dw_down


@experts_bwd_op.register_fake
def _(dy, x, token_idx, expert_idx, weight, w_up, w_gate, w_down, keep, activation, backend):
    dw_gate = w_up.new_empty(0) if w_gate is None else w_gate.new_empty(w_gate.shape)
    return (x.new_empty(x.shape), weight.new_empty(weight.shape), w_up.new_empty(w_up.shape), dw_gate,
            w_down.new_empty(w_down.shape))


def _setup_context(ctx, inputs, output):
    x, token_idx, expert_idx, weight, w_up, w_gate, w_down, keep, activation, backend = inputs
    ctx.activation, ctx.backend = activation, backend
    ctx.save_for_backward(x, token_idx, expert_idx, weight, w_up, w_gate, w_down, keep)


def _backward(ctx, dy):
    x, token_idx, expert_idx, weight, w_up, w_gate, w_down, keep = ctx.saved_tensors
    dx, dweight, dw_up, dw_gate, dw_down = experts_bwd_op(dy, x, token_idx, expert_idx, weight, w_up, w_gate,
                                                          w_down, keep, ctx.activation, ctx.backend)
    need = ctx.needs_input_grad
    return (dx if need[0] else None, None, None, dweight if need[3] else None, dw_up if need[4] else None,
            dw_gate if w_gate is not None and need[5] else None, dw_down if need[6] else None, None, None, None)


experts_op.register_autograd(_backward, setup_context=_setup_context)
