"""torch.compile of the MoE model (train.compile): every router and every backend that runs on the CPU compiles to
one graph with no graph break, a compiled training step equals the eager one, and after the first step nothing
recompiles (dynamo's recompile limit would otherwise fall back to eager silently).

The router x backend matrix compiles with the `aot_eager` backend: dynamo's capture, fake-tensor propagation
(where `aten._grouped_mm` rejected float32) and AOT autograd, everything but inductor's code generation, which
costs ~1 min of g++ per model on a loaded 2-core machine. Inductor itself is exercised once, end to end through
the Trainer (tests/training/test_compile_run.py). Every router on the `torch` backend, every backend on `topk`.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from moebench.models import ModelConfig, MoEConfig, Transformer
from moebench.models.compiled_experts import experts_op, traceable
from moebench.models.names import BACKEND_NAMES, ROUTER_TRAITS

ROUTERS = list(ROUTER_TRAITS)
BACKENDS = list(BACKEND_NAMES)  # all of them run on the CPU (triton through the interpreter, tests/conftest.py)


def model(router="topk", backend="torch", **moe) -> Transformer:
    torch.manual_seed(0)
    moe = {"num_experts": 4, "top_k": 1 if router == "switch" else 2, "expert_d_ff": 16, "router": router, **moe}
    cfg = ModelConfig(vocab_size=64, seq_len=16, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                      activation="swiglu", moe=MoEConfig(**moe))
    return Transformer(cfg, backend)


def step(fn, m: Transformer, step_i: int) -> tuple[torch.Tensor, dict]:
    idx = torch.randint(0, 64, (2, 17), generator=torch.Generator().manual_seed(step_i))
    torch.manual_seed(100 + step_i)  # noisy_topk's noise: the same draws compiled and eager
    out = fn(idx[:, :-1])
    loss = F.cross_entropy(out.logits.flatten(0, 1), idx[:, 1:].flatten()) + out.aux_loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    return loss.detach(), grads


def compiled_equals_eager(router="topk", backend="torch", **moe) -> None:
    """Two steps compiled and eager from the same weights: same loss and gradients; one graph, no break, and the
    second step runs under the `fail_on_recompile` stance."""
    torch._dynamo.reset()
    counters.clear()
    eager = model(router, backend, **moe)
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


@pytest.mark.parametrize("router", ROUTERS)
def test_every_router_compiles_and_matches_eager(router):
    compiled_equals_eager(router, "torch", capacity_factor=1.0 if router == "expert_choice" else None)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])  # `torch`: every router above
def test_every_backend_compiles_and_matches_eager(backend):
    compiled_equals_eager("topk", backend)


@pytest.mark.parametrize("moe", [{"capacity_factor": 1.0}, {"null_experts": 1}], ids=["capacity", "null_experts"])
def test_data_dependent_selection_stays_in_the_op(moe):
    # the kept pairs' count is known only at run time: the selection runs inside the op, not as a graph break
    compiled_equals_eager("topk", "torch_loop", **moe)


def test_the_op_matches_its_backend_and_passes_torch_checks():
    g = torch.Generator().manual_seed(3)
    T, d, f, E = 10, 8, 16, 4
    x = torch.randn(T, d, generator=g, requires_grad=True)
    tok, exp = torch.arange(T).repeat(2), torch.randint(0, E, (2 * T,), generator=g)
    w = torch.rand(2 * T, generator=g, requires_grad=True)
    ws = [torch.randn(*s, generator=g, requires_grad=True) for s in ((E, d, f), (E, d, f), (E, f, d))]
    keep = exp < E - 1
    args = (x, tok, exp, w, *ws, keep, "swiglu", "torch_grouped")
    torch.library.opcheck(experts_op, args, test_utils=("test_schema", "test_faketensor",
                                                         "test_autograd_registration", "test_aot_dispatch_dynamic"))


def test_only_bf16_grouped_cuda_and_triton_are_traced():
    # float32 never reaches a traced `_grouped_mm` (whose fake kernel takes bf16 only): it goes through the op
    assert traceable("torch_grouped", torch.bfloat16, cuda=True) and traceable("torch", torch.bfloat16, cuda=True)
    assert traceable("triton", torch.float32, cuda=False)
    for backend in ("torch_grouped", "torch"):
        assert not traceable(backend, torch.float32, cuda=True)
        assert not traceable(backend, torch.float16, cuda=True)
        assert not traceable(backend, torch.bfloat16, cuda=False)
    assert not traceable("reference", torch.bfloat16, cuda=True) and not traceable("torch_loop", torch.bfloat16, True)
