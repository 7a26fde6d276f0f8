"""Final weights as safetensors: tied embeddings saved once and restored, old model.pt still read (weights only),
and a pickle that would run code is refused."""
import pickle

import pytest
import torch
import yaml
from safetensors import safe_open

from moebench import io as R
from moebench.evals.load import load_trained
from moebench.models.spec import ModelConfig, MoEConfig
from moebench.models.transformer import Transformer
from moebench.models.weights import load_weights, weights_bytes

MOE = MoEConfig(num_experts=4, top_k=2, expert_d_ff=16)


def model(tie=True, moe=None):
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=256, seq_len=16, d_model=16, n_layers=2, n_heads=2, d_ff=32,
                                   tie_embeddings=tie, moe=moe))


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_keeps_every_tensor_and_ties(tmp_path, tie):
    m = model(tie, MOE)
    path = tmp_path / R.FINAL_MODEL
    path.write_bytes(weights_bytes(m.state_dict()))
    with safe_open(str(path), framework="pt") as f:
        saved = set(f.keys())
    assert ("head.weight" in saved) == (not tie)  # a tied head is one tensor on disk
    back = load_weights(path)
    assert set(back) == set(m.state_dict())
    for k, v in m.state_dict().items():
        assert torch.equal(back[k], v), k
    m2 = model(tie, MOE)
    for p in m2.parameters():
        torch.nn.init.zeros_(p)
    m2.load_state_dict(back)
    x = torch.randint(0, 256, (2, 16))
    assert torch.equal(m2(x).logits, m(x).logits)
    if tie:
        assert m2.head.weight.data_ptr() == m2.embed.weight.data_ptr()


def _run_dir(tmp_path, m):
    rd = tmp_path / "run"
    rd.mkdir()
    run = {"model": m.cfg.to_dict(), "corpus": {"name": "ptb", "tokenizer": "byte"}}
    (rd / R.CONFIG).write_text(yaml.safe_dump(run))
    return rd


def test_old_run_directories_with_model_pt_still_load(tmp_path):
    m = model()
    rd = _run_dir(tmp_path, m)
    torch.save(m.state_dict(), rd / R.LEGACY_FINAL_MODEL)
    loaded, *_ = load_trained(rd, "cpu")
    x = torch.randint(0, 256, (1, 16))
    assert torch.equal(loaded(x).logits, m.eval()(x).logits)


class _Exploit:
    def __reduce__(self):
        return (print, ("this ran code",))


def test_a_model_pt_that_would_run_code_is_refused(tmp_path):
    rd = _run_dir(tmp_path, model())
    (rd / R.LEGACY_FINAL_MODEL).write_bytes(pickle.dumps({"embed.weight": _Exploit()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        load_trained(rd, "cpu")
