"""Peak training memory, measured the best way each device allows (the method is recorded with the number).

CUDA: the caching allocator's peak (torch.cuda.max_memory_allocated) over the run.
CPU: torch keeps no allocator statistics and the process RSS only grows across runs, so we count what a
training step must hold at its peak: parameters + gradients + optimizer state + every tensor autograd saved
for the backward pass (seen through saved_tensors_hooks, each storage counted once).
"""
from __future__ import annotations

import contextlib

import torch

CPU_METHOD = "cpu: params + grads + optimizer state + autograd-saved activations (saved_tensors_hooks)"
CUDA_METHOD = "cuda: torch.cuda.max_memory_allocated"


class SavedActivations:
    def __init__(self):
        self.seen: dict[int, int] = {}

    def pack(self, t: torch.Tensor):
        try:
            st = t.untyped_storage()
            self.seen[st.data_ptr()] = st.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())

    @contextlib.contextmanager
    def watch(self):
        with torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t):
            yield


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer, local=lambda t: t) -> int:
    """Parameters + gradients + optimizer state, each storage once; `local` maps a tensor to what this process
    holds of it (an FSDP rank: its shard)."""
    tensors = [t for p in model.parameters() for t in (p, p.grad) if t is not None]
    tensors += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    seen = {}
    for t in map(local, tensors):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())
