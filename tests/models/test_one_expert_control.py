"""The 1-expert control (MegaBlocks issue 107): a one-expert, top-1 MoE with no auxiliary losses and the dense
FFN's weights computes the dense FFN bit for bit in fp32 on the reference and CPU torch paths (a softmax over
one expert is exactly 1.0, and a gate multiply by 1.0 and a scatter-add onto zeros are exact), and within
assert_close on the Triton path. A broken MoE path shows up here before it shows up as a worse loss."""
import pytest
import torch
import torch.nn.functional as F

from moebench.models import ModelConfig, MoEConfig, Transformer
from moebench.models.mlp import MLP
from moebench.models.moe import MoELayer

ONE = dict(num_experts=1, top_k=1, lb_coef=0.0, z_coef=0.0)


def copy_dense_into(layer: MoELayer, mlp: MLP) -> None:
    with torch.no_grad():
        layer.w_up.copy_(mlp.up.weight.t().unsqueeze(0))
        layer.w_down.copy_(mlp.down.weight.t().unsqueeze(0))
        if mlp.gate is not None:
            layer.w_gate.copy_(mlp.gate.weight.t().unsqueeze(0))


def pair(d, f, activation, backend, router="topk", score="softmax"):
    torch.manual_seed(0)
    mlp = MLP(d, f, activation)
    layer = MoELayer(d, MoEConfig(expert_d_ff=f, router=router, score=score, **ONE), activation, backend)
    copy_dense_into(layer, mlp)
    return mlp, layer


@pytest.mark.parametrize("backend", ["reference", "torch_loop", "torch_grouped", "torch"])
@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
@pytest.mark.parametrize("router", ["topk", "switch"])
def test_one_expert_layer_is_the_dense_ffn_bit_for_bit(backend, activation, router):
    for d, f, rows in ((16, 48, 24), (128, 512, 300)):  # the second shape takes other GEMM blockings
        mlp, layer = pair(d, f, activation, backend, router)
        x = torch.randn(3, rows // 3, d, requires_grad=True)
        y, aux, _ = layer(x, torch.zeros(3, rows // 3, dtype=torch.long))
        want = mlp(x)
        assert torch.equal(y, want), (y - want).abs().max()
        assert torch.equal(aux, torch.zeros(()))
        g = torch.randn_like(y)
        gx, = torch.autograd.grad(y, x, g)
        assert torch.equal(gx, torch.autograd.grad(want, x, g)[0])


def test_one_expert_transformer_is_the_dense_transformer():
    """The whole model: identical weights give identical logits and loss (fp32, CPU torch path)."""
    base = dict(vocab_size=64, seq_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64, activation="swiglu")
    torch.manual_seed(0)
    dense = Transformer(ModelConfig(**base))
    moe = Transformer(ModelConfig(**base, moe=MoEConfig(expert_d_ff=64, **ONE)), "torch")
    sd = moe.state_dict()
    for k, v in dense.state_dict().items():
        if ".ffn." not in k:
            sd[k] = v
    moe.load_state_dict(sd)
    for db, mb in zip(dense.blocks, moe.blocks):
        copy_dense_into(mb.ffn, db.ffn)
    idx = torch.randint(0, 64, (2, 17))
    a, b = dense(idx[:, :-1]), moe(idx[:, :-1])
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(F.cross_entropy(a.logits.flatten(0, 1), idx[:, 1:].flatten()),
                       F.cross_entropy(b.logits.flatten(0, 1), idx[:, 1:].flatten()) + b.aux_loss)


def test_a_mismatch_is_seen():
    """The comparison is sharp: one weight off by one ulp changes the output."""
    mlp, layer = pair(16, 48, "gelu", "torch")
    with torch.no_grad():
        layer.w_down[0, 0, 0] = torch.nextafter(layer.w_down[0, 0, 0], torch.tensor(1.0))
    x = torch.randn(2, 12, 16)
    assert not torch.equal(layer(x, torch.zeros(2, 12, dtype=torch.long))[0], mlp(x))


def test_one_expert_layer_on_the_triton_path():
    """CUDA, or the interpreter on the CPU (tests/conftest.py sets TRITON_INTERPRET=1)."""
    mlp, layer = pair(16, 32, "swiglu", "triton")
    x = torch.randn(2, 8, 16)
    torch.testing.assert_close(layer(x, torch.zeros(2, 8, dtype=torch.long))[0], mlp(x))
