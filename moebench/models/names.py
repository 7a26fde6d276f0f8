"""What the suite validator and the FLOP count need to know about the named model choices, without torch:
activation shapes, router traits, backend names, and whether a device can be settled without asking torch.

`moebench plan` on a CPU suite imports only this from models/ (importing torch costs it 1-2 s of a 2 s wall;
benchmarks/plan_startup.py). The torch registries (activations.ACTIVATIONS, routers.ROUTERS,
backends.BACKENDS) are built from, or checked against, these tables (tests/models/test_names.py).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from moebench.registry import Registry


@dataclass(frozen=True)
class ActivationShape:
    gated: bool = False  # GLU family: hidden = fn(x @ W_gate) * (x @ W_up)

    @property
    def n_matrices(self) -> int:
        """d x f weight matrices of one FFN (up, down, and the gate when gated)."""
        return 3 if self.gated else 2


ACTIVATION_SHAPES: Registry[ActivationShape] = Registry("activation")
for _name, _gated in (("gelu", False), ("relu", False), ("swiglu", True)):
    ACTIVATION_SHAPES.add(_name, ActivationShape(_gated))


@dataclass(frozen=True)
class RouterTraits:
    token_choice: bool = True  # False: experts pick tokens (slots per token = k * capacity_factor)
    scored: bool = False  # honours `score: sigmoid` and the loss-free balancing bias (bias_update_rate)


ROUTER_TRAITS: Registry[RouterTraits] = Registry("router")
for _name, _token_choice, _scored in (("topk", True, True), ("switch", True, True), ("balanced", True, True),
                                      ("noisy_topk", True, False), ("hash", True, False),
                                      ("expert_choice", False, False)):
    ROUTER_TRAITS.add(_name, RouterTraits(_token_choice, _scored))

BACKEND_NAMES: Registry[str] = Registry("moe_backend")
for _name in ("reference", "torch_loop", "torch_grouped", "torch", "triton"):
    BACKEND_NAMES.add(_name, _name)
# backends that run wherever torch runs: on the CPU they need no check that imports torch or the kernels
CPU_BACKENDS = ("auto", "reference", "torch_loop", "torch_grouped", "torch")


def gpu_possible() -> bool:
    """Whether a GPU driver is installed (NVIDIA, or ROCm's /dev/kfd); without one `auto` is the CPU and torch
    need not be imported to know it."""
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/kfd") \
        or shutil.which("nvidia-smi") is not None


def cpu_without_torch(device: str) -> bool:
    """True when `train.device` surely means the CPU: `cpu`, or `auto` on a machine without a GPU driver."""
    return device == "cpu" or (device == "auto" and not gpu_possible())
