"""A Hugging Face dataset repository laid out in a local folder (data files + a README card with `configs:`)
loads through the `hf:` corpus path offline, fills the token cache and trains."""
import pandas as pd
import pytest
import yaml

from moebench import io as R
from moebench.cli import main
from moebench.data import corpora, load_tokens
from moebench.data.corpora import load_text
from tests.helpers import tiny

CARD = """---
configs:
- config_name: default
  default: true
  data_files:
  - split: train
    path: data/train-*.parquet
  - split: validation
    path: data/validation-*.parquet
  - split: test
    path: data/test-*.parquet
- config_name: small
  data_files:
  - split: train
    path: small/*.parquet
---
# A few KB of Penn Treebank, as a dataset repository
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubrepo") / "ptb-mini"
    (root / "data").mkdir(parents=True)  # one format per repository (datasets' rule)
    lines = load_text("ptb", "train").splitlines()
    docs = {"train": lines[:120], "validation": lines[120:160], "test": lines[160:200]}
    pd.DataFrame({"text": docs["train"]}).to_parquet(root / "data/train-00000-of-00001.parquet")
    pd.DataFrame({"text": docs["validation"]}).to_parquet(root / "data/validation-00000-of-00001.parquet")
    pd.DataFrame({"text": docs["test"]}).to_parquet(root / "data/test-00000-of-00001.parquet")
    (root / "small").mkdir()
    pd.DataFrame({"text": docs["validation"]}).to_parquet(root / "small/all.parquet")
    (root / "README.md").write_text(CARD)
    return root, docs


def test_local_dataset_repository_loads_through_hf_prefix(repo, monkeypatch):
    root, docs = repo
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_text(f"hf:{root}", "train") == "".join(d + "\n\n" for d in docs["train"])
    assert load_text(f"hf:{root}", "valid") == "".join(d + "\n\n" for d in docs["validation"])
    assert load_text(f"hf:{root}", "test") == "".join(d + "\n\n" for d in docs["test"])
    # a named config of the card; its single split is carved 90/5/5
    assert load_text(f"hf:{root}:small", "train").startswith(docs["validation"][0])
    assert not corpora.resolve(f"hf:{root}").hub


def test_editing_the_folder_changes_the_cache_key(repo, tmp_path):
    root, _ = repo
    before = corpora.corpus_fingerprint(f"hf:{root}")
    extra = root / "data" / "notes.txt"
    extra.write_text("x")
    try:
        assert corpora.corpus_fingerprint(f"hf:{root}") != before
    finally:
        extra.unlink()
    assert corpora.corpus_fingerprint(f"hf:{root}") == before


def test_local_dataset_repository_trains(repo, tmp_path, monkeypatch):
    root, docs = repo
    monkeypatch.setenv("MOEBENCH_CACHE", str(tmp_path / "cache"))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny(**{"corpus.name": f"hf:{root}", "eval.tokens": 512,
                                            "variants": {"dense": {}}})))
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                 "--quiet"]) == 0
    s = R.read_json(tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY)
    assert s["status"] == "ok" and s["final"]["test_loss"] > 0
    train = load_tokens(f"hf:{root}", "byte", "train", cache_dir=tmp_path / "cache")
    assert len(train.tokens) == len("".join(d + "\n\n" for d in docs["train"]).encode())
    assert list((tmp_path / "cache").rglob("*train*"))  # the token cache was filled
