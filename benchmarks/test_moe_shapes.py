"""The MoE layer (router, aux losses, experts; backend `torch`, the CPU training path) forward + backward against
a dense FFN with the same active FLOPs (width top_k * expert width), at the three shapes of the research notes
(research/cpu-perf.md). extra_info["ratio_vs_dense"] is the median of per-round ratios, each round timing the
dense FFN right before the MoE layer in the same process; extra_info["target_ratio"] is the issue-14 target.

    MOEBENCH_ENFORCE_TARGETS=1 pytest benchmarks/test_moe_shapes.py   # fail when a ratio misses its target
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

from bench_support import fwd_bwd, paired
from moebench.models.spec import MoEConfig
from moebench.models.mlp import MLP
from moebench.models.moe import MoELayer


@dataclass(frozen=True)
class Shape:
    name: str
    tokens: int
    d: int
    experts: int
    top_k: int
    expert_ff: int
    target: float  # MoE layer time / dense FFN time


SHAPES = [Shape("coarse", 8192, 256, 8, 2, 512, 1.1), Shape("switch-like", 4096, 512, 16, 1, 2048, 1.1),
          Shape("fine-grained", 8192, 256, 64, 8, 64, 2.5)]


def make(s: Shape, device, backend: str = "torch"):
    torch.manual_seed(0)
    cfg = MoEConfig(num_experts=s.experts, top_k=s.top_k, expert_d_ff=s.expert_ff, router="topk")
    moe = MoELayer(s.d, cfg, "gelu", backend=backend).to(device)
    dense = MLP(s.d, s.top_k * s.expert_ff, "gelu").to(device)
    x = torch.randn(1, s.tokens, s.d, device=device, requires_grad=True)
    ids = torch.zeros(1, s.tokens, dtype=torch.long, device=device)
    return fwd_bwd(moe, dense, x, ids)


@pytest.fixture
def one_thread(device):
    """The targets are one-thread CPU figures (as the CPU presets train: threads 1); GPUs are left alone."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_moe_layer_vs_dense_ffn(benchmark, device, shape, one_thread):
    run_moe, run_dense = make(shape, device)
    benchmark.group = f"moe layer fwd+bwd vs dense, {shape.name}"
    ratio = paired(benchmark, run_moe, run_dense, device, warmup=1, shape=shape.name, target_ratio=shape.target,
                   tokens=shape.tokens, experts=shape.experts, top_k=shape.top_k, expert_ff=shape.expert_ff)
    if ratio is not None and os.environ.get("MOEBENCH_ENFORCE_TARGETS") == "1":
        assert ratio <= shape.target, f"{shape.name}: MoE layer {ratio:.2f}x the dense FFN (target {shape.target}x)"
