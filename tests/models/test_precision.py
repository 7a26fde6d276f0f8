"""Precision parity under autocast: the expert matmuls of every backend run in the dtype the dense FFN's
nn.Linear runs in (CPU autocast follows CUDA's dtype rules: a LayerNorm hands fp32 to the FFN, nn.Linear is
autocast-eligible, torch._grouped_mm is not), while the router keeps its fp32 policy (router_fp32).
Autocast follows torch's default device, so the one-call GPU check (benchmarks/gpu/cuda_tests.py sets it to cuda)
runs these same tests under CUDA autocast."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from moebench.models.backends import BACKENDS
from moebench.models.spec import MoEConfig
from moebench.models.mlp import MLP
from moebench.models.moe import MoELayer

MATMULS = {"mm", "bmm", "addmm", "matmul", "_grouped_mm", "experts_fwd"}


class MatmulDtypes(TorchDispatchMode):
    """The floating dtypes of every matmul's tensor inputs (the Triton path is one custom op: its inputs)."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, set]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in MATMULS:
            # experts_fwd(x, token_idx, expert_idx, weight, w_up, w_gate, w_down, activation): the routing weight
            # scales the epilogue in fp32 accumulation; the GEMM operands are x and the expert weights
            ops = [args[i] for i in (0, 4, 5, 6)] if name == "experts_fwd" else args
            self.seen.append((name, {a.dtype for a in ops if isinstance(a, torch.Tensor) and a.is_floating_point()}))
        return func(*args, **(kwargs or {}))

    @property
    def dtypes(self) -> set:
        return set().union(*(d for _, d in self.seen))


def normed():
    """The FFN input as a block hands it over under autocast: a LayerNorm's output, fp32."""
    torch.manual_seed(0)
    return torch.nn.functional.layer_norm(torch.randn(2, 8, 32), (32,))


def autocast(dtype):
    return torch.autocast(torch.get_default_device().type, dtype=dtype)


def ffn_dtypes(module, call, dtype, x=None):
    """Matmul dtypes of `call(module, x)` under autocast (CPU, or the GPU check's CUDA)."""
    x = normed() if x is None else x
    with autocast(dtype):
        with MatmulDtypes() as rec:
            out = call(module, x)
    return rec, out


# bf16 tl.dot is not emulated faithfully by the Triton interpreter: triton is checked in fp16
CASES = [(b, torch.bfloat16) for b in BACKENDS if b != "triton"] + [("triton", torch.float16)]


@pytest.mark.parametrize("backend, dtype", CASES, ids=[f"{b}-{str(d)[6:]}" for b, d in CASES])
def test_experts_run_in_the_dense_ffn_dtype(backend, dtype):
    cfg = MoEConfig(num_experts=4, top_k=2, expert_d_ff=32)
    layer = MoELayer(32, cfg, "swiglu", backend)
    dense, _ = ffn_dtypes(MLP(32, 64, "swiglu"), lambda m, x: m(x), dtype)
    assert dense.dtypes == {dtype}
    x = normed()
    assign = _route(layer, x)  # the router's own (fp32) matmul is not an expert matmul: routed beforehand
    rec, y = ffn_dtypes(layer, lambda m, x: m.experts(x.reshape(-1, 32), assign), dtype, x)
    assert rec.seen and rec.dtypes == dense.dtypes, rec.seen
    assert y.dtype == dtype  # like nn.Linear's output under autocast
    y.float().sum().backward()
    assert layer.w_up.grad.dtype == torch.float32  # master weights stay fp32


def test_the_router_keeps_fp32_under_autocast():
    layer = MoELayer(32, MoEConfig(num_experts=4, top_k=2, expert_d_ff=32), "gelu", "torch")
    rec, routing = ffn_dtypes(layer, _route_full, torch.bfloat16)
    assert rec.dtypes == {torch.float32} and routing.logits.dtype == torch.float32
    off = MoELayer(32, MoEConfig(num_experts=4, top_k=2, expert_d_ff=32, router_fp32=False), "gelu", "torch")
    assert ffn_dtypes(off, _route_full, torch.bfloat16)[0].dtypes == {torch.bfloat16}


def test_without_autocast_nothing_is_cast():
    layer = MoELayer(32, MoEConfig(num_experts=4, top_k=2, expert_d_ff=32), "gelu", "torch_grouped")
    torch.manual_seed(0)
    x = torch.randn(2, 8, 32)
    with MatmulDtypes() as rec:
        y, _, _ = layer(x, torch.zeros(2, 8, dtype=torch.long))
    assert rec.dtypes == {torch.float32} and y.dtype == torch.float32


def _route(layer, x):
    from moebench.models.moe import token_choice_assignment

    with torch.no_grad():
        return token_choice_assignment(_route_full(layer, x), layer.cfg.num_experts, None)[0]


def _route_full(layer, x):
    return layer.router(x.reshape(-1, x.shape[-1]), torch.zeros(x.shape[0] * x.shape[1], dtype=torch.long), 0)


@pytest.mark.parametrize("kw", [{"score": "sigmoid"}, {"router": "balanced"}, {"bias_update_rate": 1e-3},
                                {"lb_scope": "global"}, {"lb_scope": "sequence"}],
                         ids=lambda kw: "-".join(map(str, kw.values())))
def test_routing_designs_keep_the_dtype_policy(kw):
    """The new routers and the balancing bias: routing stays fp32 under bf16 autocast, the experts run in the
    dense FFN's dtype, the bias stays an fp32 buffer, and a training step under autocast is finite."""
    layer = MoELayer(32, MoEConfig(num_experts=4, top_k=2, expert_d_ff=32, **kw), "swiglu", "torch")
    rec, routing = ffn_dtypes(layer, _route_full, torch.bfloat16)
    assert rec.dtypes == {torch.float32} and routing.probs.dtype == routing.topk_weight.dtype == torch.float32
    x = normed()
    assign = _route(layer, x)  # the router's own fp32 matmul is not an expert matmul
    rec, y = ffn_dtypes(layer, lambda m, x: m.experts(x.reshape(-1, 32), assign), torch.bfloat16, x)
    assert rec.dtypes == {torch.bfloat16} and y.dtype == torch.bfloat16
    with autocast(torch.bfloat16):
        out, aux, _ = layer(x, torch.zeros(2, 8, dtype=torch.long))
    (out.float().sum() + aux).backward()
    assert torch.isfinite(aux) and aux.dtype == torch.float32
    if kw.get("bias_update_rate"):
        from moebench.models.balancing import end_of_step

        end_of_step(layer)
        assert layer.router.expert_bias.dtype == torch.float32 and layer.router.expert_bias.abs().sum() > 0
