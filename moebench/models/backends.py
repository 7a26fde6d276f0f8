"""MoE expert-compute backends, chosen by name (train.moe_backend). All implement experts.reference_experts.

- reference      per-expert boolean mask over all assignments (obviously correct; the test oracle)
- torch_loop     sort once, then one matmul chain per expert on contiguous slices (needs the per-expert row
                 counts on the host: one sync per call, by design)
- torch_grouped  sort once, then torch._grouped_mm over all experts at once (one kernel per matmul)
- torch          the fast torch path, chosen per call from the shape and dtype (never from timings, so a seed's
                 loss curve does not depend on noise): torch_grouped on CUDA in bf16 (the grouped kernel's only
                 dtype; float32 CUDA runs take torch_loop, never a cast: fast_path); on CPU torch_grouped when
                 experts get few rows each (<= GROUPED_BELOW_ROWS on average: per-expert Python overhead dominates, e.g.
                 fine-grained experts), else torch_loop (measured on the 2-core CI machine, one thread, d 256:
                 grouped 1.10 vs loop 1.24 x dense time at 256 rows per expert; loop 0.94 vs grouped 1.14 at
                 2048 rows; 64 experts at 128 rows: grouped 2x faster; benchmarks/test_moe_layer.py and
                 evidence/kernels/cpu.md)
- triton         our Triton kernels (moebench.kernels); CUDA, or CPU under TRITON_INTERPRET=1
"""
from __future__ import annotations


import torch

from moebench.errors import UserError
from moebench.registry import Registry

from .activations import ACTIVATIONS
from .experts import Assignment, ExpertsFn, expert_counts, expert_ffn, reference_experts, scaled_down
from .grouped_op import grouped_mm


def _sort(assign: Assignment, E: int):
    order = torch.argsort(assign.expert_idx, stable=True)
    counts = expert_counts(assign.expert_idx, E)
    return assign.token_idx[order], assign.weight[order], counts


def torch_loop_experts(x, assign, w_up, w_gate, w_down, activation):
    """One matmul chain per expert. The split sizes must be on the host, so this path syncs once per call by
    design (the CPU path for experts with many rows, where there is no device to wait for)."""
    E = w_up.shape[0]
    tok, w, counts = _sort(assign, E)
    sizes = counts.tolist()
    # Split the weights once: indexing w_up[e] in the loop makes autograd zero-fill and accumulate a full
    # [E, d, f] gradient per expert (66% of this path's time at switch-like shapes, research/cpu-perf.md).
    ups, downs = w_up.unbind(0), w_down.unbind(0)
    gates = w_gate.unbind(0) if w_gate is not None else (None,) * E
    rows = x.index_select(0, tok).split(sizes)  # not x[tok]: aten.index and its backward are slower on the CPU
    outs = [expert_ffn(chunk, ups[e], gates[e], downs[e], activation, scale=we)
            for e, (chunk, we, n) in enumerate(zip(rows, w.split(sizes), sizes)) if n]
    y = torch.zeros_like(x)
    return y.index_add(0, tok, torch.cat(outs)) if outs else y


def torch_grouped_experts(x, assign, w_up, w_gate, w_down, activation, keep=None):
    """Sort once, three (or two) torch._grouped_mm calls over every expert; no host sync. With `keep` (the
    compiled layer's capacity / zero-compute mask, models/compiled_experts.py) the other pairs sort past the last
    expert, where the grouped op computes nothing and returns zeros: no shape depends on the data."""
    E = w_up.shape[0]
    if keep is None:
        tok, w, counts = _sort(assign, E)
    else:
        exp = torch.where(keep, assign.expert_idx, E)
        order = torch.argsort(exp, stable=True)
        tok, w, counts = assign.token_idx[order], assign.weight[order], expert_counts(exp, E + 1)[:E]
    offs = counts.cumsum(0).to(torch.int32)
    xs = x.index_select(0, tok)
    act = ACTIVATIONS[activation]
    gmm = _grouped_mm_for(x) if keep is None else grouped_mm
    hidden = act.hidden(gmm(xs, w_up, offs), gmm(xs, w_gate, offs) if act.gated else None)
    out = scaled_down(hidden, w_down, w, lambda h, wd: gmm(h, wd, offs))
    return torch.zeros_like(x).index_add(0, tok, out)


def _grouped_mm_for(x: torch.Tensor):
    """torch._grouped_mm, or under torch.compile, where its fake kernel takes bf16 only, the same kernel as a
    custom op of known output shape (models/grouped_op.py) for any other dtype: never a cast."""
    if torch.compiler.is_compiling() and not (x.is_cuda and x.dtype == torch.bfloat16):
        return grouped_mm
    return lambda a, b, offs: torch._grouped_mm(a, b, offs=offs)


GROUPED_BELOW_ROWS = 1024


def fast_path(n_rows: int, E: int, d: int, f: int, dtype: torch.dtype, cuda: bool) -> str:
    """Which path `torch` takes, from shapes and dtype only: "grouped" or "loop".

    On CUDA, torch._grouped_mm is a bf16 kernel (its compiler meta function accepts nothing else): the grouped
    path is taken for bf16 inputs only, i.e. under bf16 autocast, where MoELayer.experts casts the expert input and
    weights once, as the dense FFN's nn.Linear computes in bf16 there. A float32 (or float16) CUDA run takes the
    loop in its own dtype: nothing here casts to make the grouped kernel applicable."""
    # <=: at exactly GROUPED_BELOW_ROWS rows per expert (the fine-grained shape) grouped was 0.85x the loop's time
    few_rows = n_rows <= GROUPED_BELOW_ROWS * E
    # _grouped_mm needs 16-byte aligned row strides (on CUDA an unaligned shape takes the syncing loop path)
    aligned = all(n * dtype.itemsize % 16 == 0 for n in (d, f))
    usable = dtype == torch.bfloat16 if cuda else few_rows
    return "grouped" if hasattr(torch, "_grouped_mm") and aligned and usable else "loop"


def torch_fast_experts(x, assign, w_up, w_gate, w_down, activation):
    E, d, f = w_up.shape
    path = fast_path(assign.expert_idx.numel(), E, d, f, x.dtype, x.is_cuda)
    fn = torch_grouped_experts if path == "grouped" else torch_loop_experts
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
