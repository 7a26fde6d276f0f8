"""Autograd + torch.library wrapping of the Triton expert kernels: `triton_experts` is a drop-in backend.

Two custom ops, so torch.compile treats each as one opaque node with a fake (shape-only) implementation:
  moebench::experts_fwd -> (y, pre_u, pre_g)   pre-activations are extra outputs because a custom op can only
                                               hand tensors to its backward through its outputs
  moebench::experts_bwd -> (dx, dw_up, dw_gate, dw_down, dweight)
register_autograd ties them together (it builds the autograd.Function). The expert sort is recomputed in
backward rather than saved: it is a few tiny kernels, deterministic, and gives exactly the forward's order.

Kernel sequence, forward: sort -> up GEMM (gather x, SwiGLU/GELU/ReLU epilogue) -> down GEMM (routing weight in
the epilogue, one row per assignment) -> combine (each token sums its rows in assignment order). Backward:
sort -> dY@W_down^T (gather dy; activation backward, d_weight partials and h recompute in the epilogue) ->
dW_down, dW_up(+dW_gate) grouped X^T Y -> dX rows (dU@W_up^T + dG@W_gate^T) -> combine.

Every output is bitwise deterministic run to run: no float atomics, every sum has a fixed order (combine.py
for y and dx, a torch sum over N-tile partials for d_weight, per-expert sums in grouped_xty). The older atomic
combine (fp32 atomic adds for y, dx, d_weight: one pass less, order varies) stays behind `atomic_combine()`.
Nothing here reads a device value on the host, so the ops run under CUDA graphs without a sync.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import triton
from torch import Tensor

from .activation import ACT_CODES, down_bwd_act, kernel_cfg, up_act
from .combine import combine_rows, token_segments
from .config import get_config, interpreting
from .grouped_gemm import grouped_mm
from .grouped_xty import grouped_xty
from .permute import sort_by_expert


def is_available(device=None) -> tuple[bool, str]:
    """(usable, reason): CUDA with triton, or CPU when the Triton interpreter was switched on."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # pragma: no cover - triton is a dependency, but may fail to load
        return False, f"triton cannot be imported: {exc}"
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_available():
            return True, f"CUDA ({torch.cuda.get_device_name(device)})"
        return False, "CUDA is not available in this torch build or machine"
    if device.type == "cpu":
        if interpreting():
            return True, "CPU through the Triton interpreter (TRITON_INTERPRET=1): correct but slow"
        return False, "Triton kernels need a CUDA GPU; on CPU set TRITON_INTERPRET=1 before importing triton"
    return False, f"unsupported device type {device.type!r}"


def _acc_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


_ATOMIC_COMBINE = False


@contextlib.contextmanager
def atomic_combine(enabled: bool = True):
    """Within the block, sum y, dx and d_weight with fp32 atomics (not bitwise reproducible) instead of the
    default fixed-order combine. For benchmarking the difference only."""
    global _ATOMIC_COMBINE
    prev, _ATOMIC_COMBINE = _ATOMIC_COMBINE, enabled
    try:
        yield
    finally:
        _ATOMIC_COMBINE = prev


def _setup(x, token_idx, expert_idx, weight, w_up):
    E, d, f = w_up.shape
    cfg = get_config(x.device, E, d, f, x.shape[0], x.dtype)
    sched = sort_by_expert(token_idx.contiguous(), expert_idx.contiguous(), weight.contiguous(), E,
                           cfg["gemm"]["BLOCK_M"], acc_dtype=_acc_dtype(x))
    return cfg, sched


# The op bodies are plain functions first (fwd_impl, bwd_impl), wrapped as custom ops below: a test can then
# run them under a TorchFunctionMode, which does not see inside a custom op's dispatch.
def fwd_impl(x: Tensor, token_idx: Tensor, expert_idx: Tensor, weight: Tensor, w_up: Tensor,
             w_gate: Optional[Tensor], w_down: Tensor, activation: str) -> tuple[Tensor, Tensor, Tensor]:
    x, w_up, w_down = x.contiguous(), w_up.contiguous(), w_down.contiguous()
    w_gate = w_gate.contiguous() if w_gate is not None else None
    cfg, sched = _setup(x, token_idx, expert_idx, weight, w_up)
    pre_u, pre_g, h = up_act(x, w_up, w_gate, sched, activation, kernel_cfg(cfg["gemm"], cfg.get("up_act")))
    if _ATOMIC_COMBINE:
        y = torch.zeros(x.shape, device=x.device, dtype=_acc_dtype(x))
        grouped_mm(h, w_down, sched, cfg["gemm"], scale=sched.sorted_w, out=y, out_idx=sched.sorted_tok)
        return y.to(x.dtype), pre_u, pre_g
    # One weighted row per assignment, in sorted order (x.dtype, as the torch backends' per-expert outputs),
    # then each token sums its rows in assignment order with an fp32 accumulator.
    rows = grouped_mm(h, w_down, sched, cfg["gemm"], scale=sched.sorted_w)
    src, start = token_segments(token_idx, sched.inv_perm, x.shape[0])
    return combine_rows(rows, src, start, x.shape[0]), pre_u, pre_g


experts_fwd = torch.library.custom_op("moebench::experts_fwd", fwd_impl, mutates_args=())


@experts_fwd.register_fake
def _(x, token_idx, expert_idx, weight, w_up, w_gate, w_down, activation):
    A, f = token_idx.shape[0], w_up.shape[2]
    return (x.new_empty(x.shape), x.new_empty((A, f)),
            x.new_empty((A, f) if activation == "swiglu" else (0, f)))


def bwd_impl(dy: Tensor, x: Tensor, token_idx: Tensor, expert_idx: Tensor, weight: Tensor, w_up: Tensor,
             w_gate: Optional[Tensor], w_down: Tensor, pre_u: Tensor, pre_g: Tensor,
             activation: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    x, w_up, w_down = x.contiguous(), w_up.contiguous(), w_down.contiguous()
    w_gate = w_gate.contiguous() if w_gate is not None else None
    dy = dy.to(x.dtype).contiguous()
    cfg, sched = _setup(x, token_idx, expert_idx, weight, w_up)
    gated = activation == "swiglu"
    A, f = token_idx.shape[0], w_up.shape[2]
    atomic = _ATOMIC_COMBINE
    bcfg = kernel_cfg(cfg["gemm"], cfg.get("bwd_act"))
    if atomic:
        dweight = torch.zeros(A, device=x.device, dtype=_acc_dtype(x))
    else:  # one partial per (assignment, N tile of f), summed below in a fixed order
        dweight = torch.empty((A, triton.cdiv(f, bcfg["BLOCK_N"])), device=x.device, dtype=_acc_dtype(x))
    d_u, d_g, h = down_bwd_act(dy, w_down, pre_u, pre_g, sched, activation, bcfg, dweight)
    if not atomic:
        dweight = dweight.sum(1)
    tok = sched.sorted_tok
    dw_down = grouped_xty(h, dy, sched, cfg["xty"], y_idx=tok, scale=sched.sorted_w, out_dtype=w_down.dtype)
    if gated:
        dw_up, dw_gate = grouped_xty(x, d_u, sched, cfg["xty"], x_idx=tok, y2=d_g, out_dtype=w_up.dtype)
    else:
        dw_up = grouped_xty(x, d_u, sched, cfg["xty"], x_idx=tok, out_dtype=w_up.dtype)
        dw_gate = w_up.new_empty(0)
    dual = dict(a2=d_g if gated else None, w2=w_gate.transpose(1, 2) if gated else None)
    if atomic:
        dx = torch.zeros(x.shape, device=x.device, dtype=_acc_dtype(x))
        grouped_mm(d_u, w_up.transpose(1, 2), sched, cfg["gemm"], out=dx, out_idx=tok, **dual)
        dx = dx.to(x.dtype)
    else:
        rows = grouped_mm(d_u, w_up.transpose(1, 2), sched, cfg["gemm"], **dual)
        src, start = token_segments(token_idx, sched.inv_perm, x.shape[0])
        dx = combine_rows(rows, src, start, x.shape[0])
    return dx, dw_up, dw_gate, dw_down, dweight.to(weight.dtype)


experts_bwd = torch.library.custom_op("moebench::experts_bwd", bwd_impl, mutates_args=())


@experts_bwd.register_fake
def _(dy, x, token_idx, expert_idx, weight, w_up, w_gate, w_down, pre_u, pre_g, activation):
    dw_gate = w_up.new_empty(w_up.shape) if activation == "swiglu" else w_up.new_empty(0)
    return (x.new_empty(x.shape), w_up.new_empty(w_up.shape), dw_gate, w_down.new_empty(w_down.shape),
            weight.new_empty(weight.shape))


def _setup_context(ctx, inputs, output):
    x, token_idx, expert_idx, weight, w_up, w_gate, w_down, activation = inputs
    _, pre_u, pre_g = output
    ctx.activation = activation
    ctx.has_gate = w_gate is not None
    ctx.save_for_backward(x, token_idx, expert_idx, weight, w_up, w_gate, w_down, pre_u, pre_g)


def _backward(ctx, dy, _d_pre_u, _d_pre_g):
    x, token_idx, expert_idx, weight, w_up, w_gate, w_down, pre_u, pre_g = ctx.saved_tensors
    dx, dw_up, dw_gate, dw_down, dweight = experts_bwd(dy, x, token_idx, expert_idx, weight, w_up, w_gate, w_down,
                                                       pre_u, pre_g, ctx.activation)
    need = ctx.needs_input_grad
    return (dx if need[0] else None, None, None, dweight if need[3] else None, dw_up if need[4] else None,
            dw_gate if ctx.has_gate and need[5] else None, dw_down if need[6] else None, None)


experts_fwd.register_autograd(_backward, setup_context=_setup_context)


def triton_experts(x: Tensor, token_idx: Tensor, expert_idx: Tensor, weight: Tensor, w_up: Tensor,
                   w_gate: Optional[Tensor], w_down: Tensor, activation: str) -> Tensor:
    """y[t] = sum over assignments a with token_idx[a] == t of weight[a] * FFN_{expert_idx[a]}(x[t]).

    Same contract as moebench.models.experts.reference_experts, with the assignment passed as plain tensors
    (token_idx, expert_idx: [A] int64; weight: [A]) so this package depends on torch and triton only.
    w_up, w_gate: [E, d, f]; w_down: [E, f, d]; activation one of ACT_CODES (w_gate only for swiglu).
    """
    if activation not in ACT_CODES:
        raise ValueError(f"unknown activation {activation!r}")
    if (activation == "swiglu") != (w_gate is not None):
        raise ValueError("w_gate must be given exactly when activation == 'swiglu'")
    # tl.dot needs one dtype: compute in x's (as autocast would), the casts' backward returns grads in the
    # weights' own dtype (e.g. fp32 master weights with bf16 activations).
    w_up, w_down = w_up.to(x.dtype), w_down.to(x.dtype)
    w_gate = w_gate.to(x.dtype) if w_gate is not None else None
    y, _, _ = experts_fwd(x, token_idx, expert_idx, weight, w_up, w_gate, w_down, activation)
    return y
