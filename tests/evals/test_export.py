"""`moebench export --format hf`: the exported Llama / Mixtral computes moebench's logits in transformers, its
tokenizer gives moebench's ids, lm-eval's `hf` model scores ptb_ppl as moebench's own evaluation does, and a
model without an exact equivalent is a one-line error naming the field."""
import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from moebench import io as R
from moebench.cli import main
from moebench.data import get_tokenizer, load_tokens
from moebench.data.corpora import load_text
from moebench.evals.export import hf_problems
from moebench.evals.harness import run_lm_eval
from moebench.evals.hf_tokenizer import write_tokenizer
from moebench.evals.load import load_trained
from moebench.models.spec import ModelConfig, MoEConfig
from tests.helpers import tiny

# GQA, both tied and untied embeddings, top-2 routing over 4 experts
SUITE = tiny(**{"base": {"d_model": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_ff": 64, "arch": "llama"},
                "variants": {"dense": {}, "moe": {"arch": "mixtral", "num_experts": 4, "expert_d_ff": "auto",
                                                  "tie_embeddings": False}}})
TRICKY = ["héllo wörld ✓ 日本語\n", "Ċ and ĠĠ are bytes here", "a <|endoftext|> b", "  two  spaces\n\n",
          "N'T 's 1,000"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    assert main(["run", str(root / "suite.yaml"), "--results", str(root / "res"), "--reports", str(root / "rep"),
                 "--quiet"]) == 0
    out = {}
    for v in ("dense", "moe"):
        rd = root / "res/tiny" / v / "seed-0"
        assert main(["export", str(rd), "--format", "hf", "--out", str(root / f"hf-{v}")]) == 0
        out[v] = (rd, root / f"hf-{v}")
    return out


@pytest.mark.parametrize("variant,arch", [("dense", "LlamaForCausalLM"), ("moe", "MixtralForCausalLM")])
def test_exported_logits_equal_moebench_logits(exported, variant, arch):
    rd, out = exported[variant]
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["architectures"] == [arch]
    # a max_length here would make transformers warn on every generate(max_new_tokens=...)
    assert "max_length" not in json.loads((out / "generation_config.json").read_text())
    ours, *_ = load_trained(rd, "cpu")
    hf, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # every tensor mapped, nothing left over
    hf.eval()
    valid = load_tokens("ptb", "byte", "valid").tokens
    x = torch.from_numpy(valid[: 4 * 32].astype("int64")).view(4, 32)
    with torch.no_grad():
        a, b = ours(x).logits, hf(x).logits
    assert (a - b).abs().max().item() < 1e-4


def test_exported_byte_tokenizer_gives_moebench_ids(exported):
    _, out = exported["dense"]
    hf, ours = AutoTokenizer.from_pretrained(out), get_tokenizer("ptb", "byte")
    for text in TRICKY + [load_text("ptb", "test")[:5000]]:
        assert hf(text)["input_ids"] == ours.encode(text) == list(text.encode("utf-8"))
        assert hf.decode(ours.encode(text)) == text
    assert hf.eos_token_id == hf.bos_token_id == ours.eos_id == 10


def test_gpt2_tokenizer_files_give_moebench_ids(tmp_path):
    files = write_tokenizer("gpt2", "ptb", 64, tmp_path)
    hf, ours = AutoTokenizer.from_pretrained(tmp_path), get_tokenizer("ptb", "gpt2")
    assert files.eos_id == hf.eos_token_id == ours.eos_id == 50256 and len(hf) == ours.vocab_size
    for text in TRICKY + [load_text("ptb", "test")[:20000]]:
        assert hf(text)["input_ids"] == ours.encode(text), text[:40]


def test_word_tokenizer_exports_the_model_alone_with_a_note(tmp_path):
    files = write_tokenizer("word", "ptb", 64, tmp_path)
    assert files.name is None and "no standard equivalent" in files.note and not any(tmp_path.iterdir())


def test_lm_eval_hf_model_scores_the_export_like_moebench(exported):
    from lm_eval.models.huggingface import HFLM

    rd, out = exported["moe"]
    ours = run_lm_eval(str(rd), ["ptb_ppl"], limit=2)["ptb_ppl"]
    hf = run_lm_eval(HFLM(pretrained=str(out), device="cpu", dtype="float32", batch_size=8), ["ptb_ppl"],
                     limit=2)["ptb_ppl"]
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert hf[metric] == pytest.approx(ours[metric], rel=1e-3), metric


def test_a_model_without_exact_equivalent_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(tiny(**{"variants": {"dense": {}}, "train.steps": 2,
                                                                "train.warmup_steps": 0, "eval.interval": 2})))
    assert main(["run", str(tmp_path / "suite.yaml"), "--results", str(tmp_path / "res"), "--reports",
                 str(tmp_path / "rep"), "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "hf"
    assert main(["export", str(tmp_path / "res/tiny/dense/seed-0"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "model.norm: layernorm" in err and "use norm: rmsnorm" in err and "use activation: swiglu" in err
    assert not out.exists()


def test_export_refuses_a_non_empty_out_and_a_non_run(exported, tmp_path, capsys):
    rd, _ = exported["dense"]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert main(["export", str(rd), "--out", str(tmp_path / "x")]) == 2
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "not a finished moebench run" in err
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine" and not (tmp_path / "y").exists()


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_export_onto_a_file_is_a_one_line_error(exported, tmp_path, capsys, where):
    rd, _ = exported["dense"]
    (tmp_path / "f").write_text("mine")
    out = tmp_path / "f" if where == "a file" else tmp_path / "f" / "model"
    assert main(["export", str(rd), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and str(tmp_path / "f") in err
    assert (tmp_path / "f").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_the_export_follows_the_umask(exported):
    _, out = exported["dense"]
    want = {(True, 0o777 & ~R.umask())} | {(False, 0o666 & ~R.umask())}
    assert {(p.is_dir(), p.stat().st_mode & 0o777) for p in [out, *out.rglob("*")]} == want


BASE = dict(vocab_size=256, seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32, activation="swiglu",
            norm="rmsnorm")


@pytest.mark.parametrize("moe,field", [
    (dict(router="switch", top_k=1), "router: switch"),
    (dict(router="hash"), "router: hash"),
    (dict(router="expert_choice"), "router: expert_choice"),
    (dict(top_k=1), "top_k: 1"),
    (dict(renormalize=False), "renormalize: false"),
    (dict(capacity_factor=1.25), "capacity_factor: 1.25"),
    (dict(shared_experts=1), "shared_experts: 1"),
    (dict(moe_every=2), "moe_every: 2"),
    (dict(n_dense_layers=1), "n_dense_layers: 1"),
    (dict(score="sigmoid"), "score: sigmoid"),
    (dict(bias_update_rate=1e-3), "bias_update_rate: 0.001"),
    (dict(router="balanced"), "router: balanced"),
    (dict(null_experts=2), "null_experts: 2"),
])
def test_moe_features_without_a_mixtral_equivalent_are_named(moe, field):
    cfg = ModelConfig(**BASE, moe=MoEConfig(**{"num_experts": 4, "top_k": 2, "expert_d_ff": 8, **moe}))
    problems = hf_problems(cfg)
    assert len(problems) == 1 and field in problems[0] and "(use " in problems[0]


def test_exportable_configs_have_no_problems():
    assert hf_problems(ModelConfig(**BASE)) == []
    assert hf_problems(ModelConfig(**BASE, moe=MoEConfig(num_experts=4, top_k=2, expert_d_ff=8))) == []
    # noisy top-k at inference: softmax over the k largest logits = renormalised top-k probabilities, any k
    assert hf_problems(ModelConfig(**BASE, moe=MoEConfig(num_experts=4, top_k=1, expert_d_ff=8,
                                                         router="noisy_topk"))) == []
    # the balancing loss's scope changes training only, not the forward that is exported
    assert hf_problems(ModelConfig(**BASE, moe=MoEConfig(num_experts=4, top_k=2, expert_d_ff=8,
                                                         lb_scope="global"))) == []
    assert "pos: learned" in hf_problems(ModelConfig(**{**BASE, "pos": "learned"}))[0]


def test_rope_and_rmsnorm_match_transformers_conventions():
    """The details the exact export rests on, checked directly: moebench's RoPE rotates the two halves of each
    head as Llama's rotate_half does (theta 10000), and nn.RMSNorm's default eps is what config.json records."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb

    from moebench.evals.export import ROPE_THETA, rms_eps
    from moebench.models.transformer import apply_rope, rope_cache

    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 16, 8), torch.randn(2, 2, 16, 8)
    cos, sin = rope_cache(16, 8, "cpu", ROPE_THETA)
    rot = LlamaRotaryEmbedding(LlamaConfig(hidden_size=32, num_attention_heads=4, head_dim=8,
                                           max_position_embeddings=16,
                                           rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA}))
    hc, hs = rot(q, torch.arange(16)[None])
    hq, hk = apply_rotary_pos_emb(q, k, hc, hs)
    assert torch.allclose(apply_rope(q, cos, sin), hq, atol=1e-6) and torch.allclose(apply_rope(k, cos, sin), hk,
                                                                                     atol=1e-6)
    ours = torch.nn.RMSNorm(32)
    assert ours.eps is None  # so torch uses finfo(float32).eps, which the export writes as rms_norm_eps
    theirs = LlamaRMSNorm(32, eps=rms_eps())
    x = torch.randn(4, 32) * 1e-4  # small activations, where eps matters
    assert torch.allclose(ours(x), theirs(x), rtol=1e-6, atol=0)


def test_export_without_transformers_names_the_extra(exported, tmp_path, capsys, monkeypatch):
    import importlib.util

    from moebench.evals import export

    real = importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda n, *a: None if n == "transformers" else real(n, *a))
    rd, _ = exported["dense"]
    assert main(["export", str(rd), "--out", str(tmp_path / "hf")]) == 2
    assert "needs transformers: pip install 'moebench[export]'" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()
