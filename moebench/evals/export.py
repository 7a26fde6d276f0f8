"""`moebench export RUN_DIR --format hf --out DIR`: a finished run as a transformers model directory (config.json,
model.safetensors, generation_config.json, tokenizer files where a standard tokenizer reproduces moebench's ids).

Only exact equivalents are exported; anything else is a UserError naming the field and the closest exportable
choice (`arch: llama | mixtral` in a suite sets all of them). Dense models are Llama, MoE models Mixtral:
pre-norm RMSNorm (eps = moebench's nn.RMSNorm default, float32 machine epsilon), RoPE with theta 10000 rotating the
two halves of each head (HF's rotate_half does the same), SwiGLU, SDPA attention with 1/sqrt(head_dim) scaling,
softmax top-k routing with the k gates renormalised and no capacity limit. The weights are written in the
standard Mixtral / Llama checkpoint layout (per-expert w1/w2/w3), which transformers, vLLM and llama.cpp read.

What differs only in layout is converted:
- attention: moebench's one `kv` Linear computes [2, kv_heads, head_dim] per token: its first kv_heads*head_dim
  output rows are k_proj, the rest v_proj;
- experts: moebench holds w_gate, w_up [E, d, f] and w_down [E, f, d] for x @ w; nn.Linear weights are [out, in],
  so w1 = w_gate[e].T (the SiLU branch), w3 = w_up[e].T, w2 = w_down[e].T;
- tied embeddings: one tensor, `tie_word_embeddings: true`.
"""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from moebench import io as R
from moebench.errors import UserError
from moebench.models.spec import ModelConfig

ROPE_THETA = 10000.0  # moebench.models.transformer.rope_cache's base


@dataclass(frozen=True)
class Exported:
    arch: str  # llama | mixtral
    out: Path
    tokenizer: str | None  # the tokenizer written, or None (see note)
    note: str


def hf_problems(cfg: ModelConfig) -> list[str]:
    """Why this model has no exact transformers equivalent: one 'field: got X, ... (use Y)' message per field."""
    p = []
    if cfg.norm != "rmsnorm":
        p.append(f"norm: {cfg.norm} has no exact Llama/Mixtral equivalent (use norm: rmsnorm, or arch: llama)")
    if cfg.activation != "swiglu":
        p.append(f"activation: {cfg.activation} has no exact Llama/Mixtral equivalent (use activation: swiglu)")
    if cfg.pos != "rope":
        p.append(f"pos: {cfg.pos} (learned positions) has no exact Llama/Mixtral equivalent (use pos: rope)")
    m = cfg.moe
    if m is None:
        return p
    if m.router not in ("topk", "noisy_topk"):
        p.append(f"router: {m.router} has no exact Mixtral equivalent (use router: topk with top_k: 2, or arch: "
                 "mixtral)")
    elif m.router == "topk" and m.top_k == 1:
        p.append("top_k: 1 with router topk keeps the raw gate probability, Mixtral renormalises a single gate to "
                 "1 (use top_k: 2)")
    elif m.router == "topk" and not m.renormalize:
        p.append("renormalize: false keeps raw gate probabilities, Mixtral renormalises the k gates (use "
                 "renormalize: true)")
    # sigmoid scores with a selection bias exist in transformers only beside features moebench lacks (Glm4Moe's
    # partial rotary and grouped routing, DeepSeek-V3's MLA): refused by name until an exact mapping exists.
    # lb_scope is training-only: the exported forward is the same for every scope.
    if m.score != "softmax":
        p.append(f"score: {m.score} has no exact Mixtral equivalent (Mixtral's gates are a softmax) (use score: "
                 "softmax)")
    if m.bias_update_rate:
        p.append(f"bias_update_rate: {m.bias_update_rate:g} chooses experts with a balancing bias Mixtral's "
                 "router lacks (use bias_update_rate: 0)")
    if m.null_experts:
        p.append(f"null_experts: {m.null_experts} zero-compute experts have no Mixtral equivalent (use "
                 "null_experts: 0)")
    if m.capacity_factor is not None:
        p.append(f"capacity_factor: {m.capacity_factor:g} drops tokens, Mixtral has no capacity limit (use "
                 "capacity_factor: dropless)")
    if m.shared_experts:
        p.append(f"shared_experts: {m.shared_experts} has no Mixtral equivalent (use shared_experts: 0)")
    if m.moe_every != 1 or m.n_dense_layers:
        p.append(f"moe_every: {m.moe_every}, n_dense_layers: {m.n_dense_layers} mix dense and MoE blocks, Mixtral "
                 "has an MoE layer in every block (use moe_every: 1, n_dense_layers: 0)")
    return p


def rms_eps() -> float:
    """nn.RMSNorm(eps=None) uses the machine epsilon of its input's dtype; exports are float32."""
    return float(torch.finfo(torch.float32).eps)


def hf_config(cfg: ModelConfig, eos_id: int | None):
    """The transformers config object (LlamaConfig / MixtralConfig) of a moebench model."""
    common = dict(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim,
        hidden_act="silu", max_position_embeddings=cfg.seq_len, rms_norm_eps=rms_eps(),
        tie_word_embeddings=cfg.tie_embeddings, attention_dropout=0.0, bos_token_id=eos_id, eos_token_id=eos_id,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA}, torch_dtype="float32",
    )
    if cfg.moe is None:
        from transformers import LlamaConfig

        return LlamaConfig(intermediate_size=cfg.d_ff, attention_bias=False, mlp_bias=False, **common)
    from transformers import MixtralConfig

    m = cfg.moe
    return MixtralConfig(intermediate_size=m.expert_d_ff, num_local_experts=m.num_experts,
                         num_experts_per_tok=m.top_k, router_jitter_noise=0.0, sliding_window=None,
                         output_router_logits=False, router_aux_loss_coef=m.lb_coef, **common)


def hf_state_dict(cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """moebench parameter names and layouts -> the standard Llama / Mixtral checkpoint's (see module docstring)."""
    kvd = cfg.kv_heads * cfg.head_dim
    out = {"model.embed_tokens.weight": sd["embed.weight"], "model.norm.weight": sd["norm.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["head.weight"]
    for i in range(cfg.n_layers):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        kv = sd[src + "attn.kv.weight"]
        out.update({
            dst + "input_layernorm.weight": sd[src + "norm1.weight"],
            dst + "post_attention_layernorm.weight": sd[src + "norm2.weight"],
            dst + "self_attn.q_proj.weight": sd[src + "attn.q.weight"],
            dst + "self_attn.k_proj.weight": kv[:kvd], dst + "self_attn.v_proj.weight": kv[kvd:],
            dst + "self_attn.o_proj.weight": sd[src + "attn.o.weight"],
        })
        if cfg.moe is None:
            out.update({dst + "mlp.gate_proj.weight": sd[src + "ffn.gate.weight"],
                        dst + "mlp.up_proj.weight": sd[src + "ffn.up.weight"],
                        dst + "mlp.down_proj.weight": sd[src + "ffn.down.weight"]})
            continue
        moe = dst + "block_sparse_moe."
        out[moe + "gate.weight"] = sd[src + "ffn.router.gate.weight"]
        for e in range(cfg.moe.num_experts):
            out.update({f"{moe}experts.{e}.w1.weight": sd[src + "ffn.w_gate"][e].t(),
                        f"{moe}experts.{e}.w3.weight": sd[src + "ffn.w_up"][e].t(),
                        f"{moe}experts.{e}.w2.weight": sd[src + "ffn.w_down"][e].t()})
    return {k: v.detach().float().contiguous() for k, v in out.items()}


def _need_transformers() -> None:
    missing = [m for m in ("transformers", "tokenizers") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"export --format hf needs {' and '.join(missing)}: pip install 'moebench[export]'")


def export_hf(run_dir: Path, out: Path) -> Exported:
    """Write the transformers model directory of a finished run to `out` (whole, or not at all)."""
    from safetensors.torch import save_file

    from moebench.models.weights import load_weights

    from .hf_tokenizer import write_tokenizer
    from .load import read_run

    rd, out = Path(run_dir), Path(out)
    R.check_out_dir(out, "--out")  # a file at --out or above it: one line, before anything is read or written
    weights, run = read_run(rd)
    cfg = ModelConfig.from_dict(run["model"])
    problems = hf_problems(cfg)
    if problems:
        raise UserError(f"{rd}: no exact transformers equivalent: " + "; ".join(f"model.{m}" for m in problems))
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: exists and is not empty (export writes a fresh model directory)")
    _need_transformers()
    arch = "mixtral" if cfg.moe else "llama"
    corpus, tok_name = run["corpus"]["name"], run["corpus"]["tokenizer"]
    tmp = R.make_temp_dir(out.parent, f".{out.name}.")  # renamed to `out` when complete
    try:
        tok = write_tokenizer(tok_name, corpus, cfg.seq_len, tmp)
        hf_cfg = hf_config(cfg, tok.eos_id)
        hf_cfg.architectures = ["MixtralForCausalLM" if cfg.moe else "LlamaForCausalLM"]
        hf_cfg.save_pretrained(tmp)
        from transformers import GenerationConfig

        # no max_length: a generation config that sets it makes transformers warn on every generate() that
        # passes max_new_tokens; the context length is config.json's max_position_embeddings
        GenerationConfig(bos_token_id=tok.eos_id, eos_token_id=tok.eos_id,
                         pad_token_id=tok.eos_id).save_pretrained(tmp)
        save_file(hf_state_dict(cfg, load_weights(weights)), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "model.safetensors").chmod(0o666 & ~R.umask())  # safetensors creates it 0600, whatever the umask
        note = (f"Exported from moebench run {rd} ({run.get('suite')}/{run.get('variant')} seed {run.get('seed')}, "
                f"config hash {run.get('config_hash')}) as {arch}. {tok.note}\n")
        (tmp / "MOEBENCH_EXPORT.md").write_text(note, encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(arch, out, tok.name, note.strip())
