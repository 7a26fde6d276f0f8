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
