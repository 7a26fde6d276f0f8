"""torch.compile of the MoE model (train.compile): every router on every backend that runs on the CPU compiles
to one graph with no graph break, a compiled training step equals the eager one, and after the first step
nothing recompiles (dynamo's recompile limit would otherwise fall back to eager silently).

These compile with the `aot_eager` backend: dynamo's capture, fake-tensor propagation (where `aten._grouped_mm`
rejected float32) and AOT autograd, everything but inductor's code generation, which costs about 40 s of CPU per
model. Inductor is exercised once, end to end through the Trainer (tests/training/test_compile_run.py). The
routers and backends are one chain of MoE layers, so they are traced and compiled once: every router on `torch`,
every backend on `topk` (Triton through the interpreter), not the full product (39 layers, about 60 s).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch._dynamo.utils import counters

from moebench.models import ModelConfig, MoEConfig, Transformer
from moebench.models.balancing import end_of_step
from moebench.models.compiled_experts import experts_op, traceable
from moebench.models.grouped_op import grouped_mm
from moebench.models.moe import MoELayer
from moebench.models.names import BACKEND_NAMES, ROUTER_TRAITS

ROUTERS = list(ROUTER_TRAITS)
BACKENDS = list(BACKEND_NAMES)  # all of them run on the CPU (triton through the interpreter, tests/conftest.py)
D = 16


def moe_config(router: str, **moe) -> MoEConfig:
    return MoEConfig(**{"num_experts": 4, "top_k": 1 if router == "switch" else 2, "expert_d_ff": 16,
                        "router": router, **moe})


class Chain(nn.Module):
    """MoE layers in sequence (residual), one per (router, backend, extra config): one graph for all of them."""

    def __init__(self, layers: list[tuple[str, str, dict]]):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(64, D)
        self.layers = nn.ModuleList(MoELayer(D, moe_config(r, **kw), "swiglu", b) for r, b, kw in layers)
        self.head = nn.Linear(D, 64)

    def forward(self, idx):
        x, aux = self.embed(idx), 0.0
        for layer in self.layers:
            y, a, _ = layer(x, idx)
            x, aux = x + y, aux + a
        return self.head(x), aux


def transformer(router="switch", backend="torch", **moe) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, seq_len=16, d_model=D, n_layers=1, n_heads=2, d_ff=32, activation="swiglu",
                      moe=moe_config(router, **moe))
    return Transformer(cfg, backend)


def step(fn, m: nn.Module, step_i: int) -> tuple[torch.Tensor, dict]:
    idx = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(step_i))
    torch.manual_seed(100 + step_i)  # noisy_topk's noise: the same draws compiled and eager
    out = fn(idx[:, :-1])
    logits, aux = (out.logits, out.aux_loss) if isinstance(m, Transformer) else out
    loss = F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()) + aux
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    end_of_step(m)  # as the trainer: moves the loss-free bias, clears the step's loads
    return loss.detach(), grads


def compiled_equals_eager(eager: nn.Module) -> None:
    """Two steps compiled and eager from the same weights: same loss and gradients; one graph, no break, and the
    second step runs under the `fail_on_recompile` stance."""
    torch._dynamo.reset()
    counters.clear()
    comp = copy.deepcopy(eager)
    fn = torch.compile(comp, backend="aot_eager")
    for i in range(2):
        with torch.compiler.set_stance("fail_on_recompile") if i else torch.compiler.set_stance("default"):
            got_loss, got = step(fn, comp, i)
        want_loss, want = step(eager, eager, i)
        torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-6)
        assert got.keys() == want.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 1


@pytest.fixture
def grouped_mm_dtypes(monkeypatch) -> list:
    """The input dtypes of every torch._grouped_mm call while the test runs."""
    seen, real = [], torch._grouped_mm

    def recording(a, b, *args, **kw):
        seen.append((a.dtype, b.dtype))
        return real(a, b, *args, **kw)

    monkeypatch.setattr(torch, "_grouped_mm", recording)
    return seen


def test_every_router_and_every_backend_compile_and_match_eager(grouped_mm_dtypes):
    # every router on `torch`, every backend on `topk` (the full product traced 39 layers: over the time budget)
    pairs = [(r, "torch", {}) for r in ROUTERS] + [("topk", b, {}) for b in BACKENDS if b != "torch"]
    # the selections whose size only the run knows happen inside the op, not as graph breaks (the traced
    # Triton path keeps the eager selection: a graph break per capacity-limited layer, docs/compile.md)
    pairs += [("topk", "torch_loop", {"capacity_factor": 1.0}), ("topk", "reference", {"null_experts": 1}),
              ("expert_choice", "torch_grouped", {"capacity_factor": 1.5}),
              # the grouped path takes them as a mask: dropped pairs sort past the last expert (grouped_op.py)
              ("topk", "torch_grouped", {"capacity_factor": 1.0}),
              ("switch", "torch", {"capacity_factor": 1.0, "null_experts": 1})]
    # routing designs that keep state across a step (the loss-free bias, the step's loads) or change the loss
    pairs += [("topk", "torch", {"bias_update_rate": 1e-2, "score": "sigmoid"}),
              ("switch", "torch", {"lb_scope": "global"}), ("balanced", "torch", {"lb_scope": "sequence"})]
    compiled_equals_eager(Chain(pairs))
    # a float32 run is never cast to bf16 for the grouped kernel, compiled or not
    assert set(grouped_mm_dtypes) == {(torch.float32, torch.float32)}


def test_a_capacity_limited_transformer_compiles_to_one_graph():
    compiled_equals_eager(transformer("switch", "torch", capacity_factor=1.25))  # the quickstart's MoE


def test_bf16_autocast_gives_the_grouped_kernel_bf16(grouped_mm_dtypes):
    m = transformer("topk", "torch_grouped")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        step(m, m, 0)
    assert set(grouped_mm_dtypes) == {(torch.bfloat16, torch.bfloat16)}


def test_the_op_matches_its_backend_and_passes_torch_checks():
    g = torch.Generator().manual_seed(3)
    T, d, f, E = 10, 8, 16, 4
    x = torch.randn(T, d, generator=g, requires_grad=True)
    tok, exp = torch.arange(T).repeat(2), torch.randint(0, E, (2 * T,), generator=g)
    w = torch.rand(2 * T, generator=g, requires_grad=True)
    ws = [torch.randn(*s, generator=g, requires_grad=True) for s in ((E, d, f), (E, d, f), (E, f, d))]
    keep = exp < E - 1
    args = (x, tok, exp, w, *ws, keep, "swiglu", "torch_grouped")
    checks = ("test_schema", "test_faketensor", "test_autograd_registration", "test_aot_dispatch_dynamic")
    torch.library.opcheck(experts_op, args, test_utils=checks)
    # the grouped GEMM op, with an expert that gets no rows and rows past the last group (dropped pairs)
    offs = torch.tensor([3, 3, 7, 9], dtype=torch.int32)
    torch.library.opcheck(grouped_mm, (x.detach().requires_grad_(), ws[0].detach().requires_grad_(), offs),
                          test_utils=checks)
    torch.testing.assert_close(grouped_mm(x, ws[0], offs)[9:], torch.zeros(T - 9, f))


def test_which_backends_the_compiler_traces():
    f32, bf16 = torch.float32, torch.bfloat16
    few, many = (32, 4, 16, 16), (4 * 2048, 4, 16, 16)  # A rows, E, d, f: `torch` on the CPU: grouped, loop
    # the grouped path: torch._grouped_mm itself in bf16 on CUDA, its custom op in any other dtype
    for dtype, cuda in ((f32, False), (bf16, False), (f32, True), (bf16, True)):
        assert traceable("torch_grouped", dtype, cuda, few) and traceable("triton", dtype, cuda, few)
    assert traceable("torch", f32, False, few) and not traceable("torch", f32, False, many)
    # on CUDA `torch` is grouped in bf16 only: float32 takes the loop (in the opaque op), never a cast
    assert traceable("torch", bf16, True, many) and not traceable("torch", f32, True, few)
    assert not traceable("torch", torch.float16, True, few)
    for backend in ("reference", "torch_loop"):
        assert not any(traceable(backend, dtype, cuda, few) for dtype in (f32, bf16) for cuda in (False, True))
