"""Counting host syncs on the CPU, where none costs anything but the same code on CUDA would stall the device.

`HostSyncs` is two modes at once:
- a TorchFunctionMode that counts the Python-level reads of a tensor's value (`.item()`, `.tolist()`,
  `bool(t)`, `int(t)`, `.cpu()`, `.to("cpu")`...), and
- a TorchDispatchMode that counts the aten ops which wait for the device on CUDA even though they return a
  tensor (`nonzero`, which a boolean index calls, `bincount`, which reads the input's max, `unique`,
  `masked_select`, and `_local_scalar_dense`, the op behind every scalar read).
Our Triton custom ops are single nodes to the modes; their Python bodies are replayed under the modes on exit.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch._library.custom_ops import OPDEFS
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"}
SYNC_OPS = {"_local_scalar_dense", "nonzero", "bincount", "masked_select", "_unique2", "unique_dim",
            "unique_consecutive", "repeat_interleave"}


class _Reads(TorchFunctionMode):
    def __init__(self, counts: Counter, to_cpu: bool):
        super().__init__()
        self.counts, self.to_cpu = counts, to_cpu

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in READS:
            self.counts[name] += 1
        elif name == "to" and self.to_cpu and _to_cpu(args[1:], kwargs):
            self.counts["to(cpu)"] += 1
        return func(*args, **kwargs)


def _to_cpu(args, kwargs) -> bool:
    dev = kwargs.get("device", args[0] if args else None)
    return isinstance(dev, (str, torch.device)) and torch.device(dev).type == "cpu"


class _Ops(TorchDispatchMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts
        self.custom: list = []  # (opdef, args, kwargs) of our custom ops, replayed by HostSyncs.__exit__

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            self.counts[f"aten.{name}"] += 1
        if func.namespace == "moebench" and func.name() in OPDEFS:
            self.custom.append((OPDEFS[func.name()], args, kwargs or {}))
        return func(*args, **(kwargs or {}))


class HostSyncs:
    """with HostSyncs() as s: ...; s.counts is a Counter of what would have synchronised.

    look_inside=False skips replaying our custom ops' bodies (slow under the Triton interpreter).
    to_cpu=False leaves `.to(device)` alone: code that moves tensors to *its* device (the trainer's batch,
    clip_grad_norm_'s norms) reads as `.to(cpu)` on a CPU run but is a host-to-device copy on a GPU."""

    def __init__(self, to_cpu: bool = True, look_inside: bool = True):
        self.counts: Counter = Counter()
        self.to_cpu, self.look_inside = to_cpu, look_inside
        self._modes = (_Reads(self.counts, to_cpu), _Ops(self.counts))

    def __enter__(self):
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc):
        for m in reversed(self._modes):
            m.__exit__(*exc)
        # Inside a dispatch handler the Python key is excluded, so a custom op's body is invisible to the
        # modes: run each body again, on the same inputs, where both modes see every op it calls.
        for opdef, args, kwargs in (self._modes[1].custom if self.look_inside else ()):
            with HostSyncs(self.to_cpu) as inner:
                opdef._init_fn(*args, **kwargs)
            self.counts.update({f"{opdef._name}: {k}": v for k, v in inner.counts.items()})
        return False

    @property
    def total(self) -> int:
        return sum(self.counts.values())
