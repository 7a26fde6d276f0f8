"""MoE expert-compute backends, chosen by name (train.moe_backend). All implement experts.reference_experts.

- reference      per-expert boolean mask over all assignments (obviously correct; the test oracle)
- torch_loop     sort once, then one matmul chain per expert on contiguous slices
- torch_grouped  sort once, then torch._grouped_mm over all experts at once (one kernel per matmul)
- torch          the fast torch path, chosen per call from the shape (never from timings, so a seed's loss
                 curve does not depend on noise): torch_grouped on CUDA; on CPU torch_grouped when experts get
                 few rows each (< GROUPED_BELOW_ROWS on average: per-expert Python overhead dominates, e.g.
                 fine-grained experts), else torch_loop (measured on the 2-core CI machine, one thread, d 256:
                 grouped 1.10 vs loop 1.24 x dense time at 256 rows per expert; loop 0.94 vs grouped 1.14 at
                 2048 rows; 64 experts at 128 rows: grouped 2x faster; benchmarks/test_moe_layer.py and
                 reports/kernels/cpu.md)
- triton         our Triton kernels (moebench.kernels); CUDA, or CPU under TRITON_INTERPRET=1
"""
from __future__ import annotations

from typing import Callable

import torch

from moebench.errors import UserError
from moebench.registry import Registry

from .activations import ACTIVATIONS
from .experts import Assignment, ExpertsFn, expert_ffn, reference_experts


def _sort(assign: Assignment, E: int):
    order = torch.argsort(assign.expert_idx, stable=True)
    counts = torch.bincount(assign.expert_idx, minlength=E)
    return assign.token_idx[order], assign.weight[order], counts


def torch_loop_experts(x, assign, w_up, w_gate, w_down, activation):
    E = w_up.shape[0]
    tok, w, counts = _sort(assign, E)
    xs = x[tok]
    outs = []
    for e, (chunk, n) in enumerate(zip(xs.split(counts.tolist()), counts.tolist())):
        if n:
            outs.append(expert_ffn(chunk, w_up[e], None if w_gate is None else w_gate[e], w_down[e], activation))
    y = torch.zeros_like(x)
    if not outs:
        return y
    out = torch.cat(outs) * w.to(x.dtype).unsqueeze(1)
    return y.index_add(0, tok, out)


def torch_grouped_experts(x, assign, w_up, w_gate, w_down, activation):
    E = w_up.shape[0]
    tok, w, counts = _sort(assign, E)
    offs = counts.cumsum(0).to(torch.int32)
    xs = x[tok]
    act = ACTIVATIONS[activation]
    hidden = act.hidden(torch._grouped_mm(xs, w_up, offs=offs),
                        torch._grouped_mm(xs, w_gate, offs=offs) if act.gated else None)
    out = torch._grouped_mm(hidden, w_down, offs=offs) * w.to(x.dtype).unsqueeze(1)
    return torch.zeros_like(x).index_add(0, tok, out)


GROUPED_BELOW_ROWS = 1024


def torch_fast_experts(x, assign, w_up, w_gate, w_down, activation):
    few_rows = assign.expert_idx.numel() < GROUPED_BELOW_ROWS * w_up.shape[0]
    # _grouped_mm needs 16-byte aligned row strides
    aligned = all(n * x.element_size() % 16 == 0 for n in (w_up.shape[1], w_up.shape[2]))
    grouped = hasattr(torch, "_grouped_mm") and aligned and (x.is_cuda or few_rows)
    fn = torch_grouped_experts if grouped else torch_loop_experts
    return fn(x, assign, w_up, w_gate, w_down, activation)


def _triton(x, assign, w_up, w_gate, w_down, activation):
    from moebench.kernels.moe_ops import triton_experts

    # moebench.kernels takes plain tensors (it imports nothing from moebench): unpack the Assignment here.
    return triton_experts(x, assign.token_idx, assign.expert_idx, assign.weight, w_up, w_gate, w_down, activation)


BACKENDS: Registry[ExpertsFn] = Registry("moe_backend")
for _name, _fn in (("reference", reference_experts), ("torch_loop", torch_loop_experts),
                   ("torch_grouped", torch_grouped_experts), ("torch", torch_fast_experts), ("triton", _triton)):
    BACKENDS.add(_name, _fn)


def get_backend(name: str) -> ExpertsFn:
    return BACKENDS[name]


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when a GPU is visible, else cpu; asking for cuda without one is the user's error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device: cuda was asked for but no CUDA GPU is visible; use device: auto or cpu")
    return torch.device(name)


def resolve_backend(name: str, device: torch.device) -> str:
    """`auto` -> triton on CUDA, torch elsewhere. Asking for triton where it cannot run is an error."""
    if name == "auto":
        return "triton" if device.type == "cuda" and triton_available(device)[0] else "torch"
    if name == "triton":
        ok, why = triton_available(device)
        if not ok:
            raise UserError(f"moe_backend: triton cannot run here: {why}. Use moe_backend: auto or torch.")
    get_backend(name)
    return name


def triton_available(device: torch.device) -> tuple[bool, str]:
    try:
        from moebench.kernels.moe_ops import is_available
    except Exception as e:  # noqa: BLE001 - any import failure means the kernels can't run
        return False, f"moebench.kernels failed to import ({type(e).__name__}: {e})"
    return is_available(device)
