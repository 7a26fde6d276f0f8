import json

import pytest

from moebench.data import get_tokenizer, tokenizer_names, vocab_size
from moebench.data.corpora import load_text


@pytest.fixture(scope="module")
def ptb_valid():
    return load_text("ptb", "valid")


def test_registry_lists_builtins():
    assert {"byte", "word", "gpt2"} <= set(tokenizer_names())


def test_byte_round_trip(tmp_path):
    tok = get_tokenizer("ptb", "byte", cache_dir=tmp_path)
    text = "naïve café — 東京\n"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and max(ids) < 256 == tok.vocab_size
    assert tok.decode(ids) == text


def test_word_tokenizer_on_ptb(tmp_path, ptb_valid):
    tok = get_tokenizer("ptb", "word", cache_dir=tmp_path)
    # Mikolov's PTB: 10k vocabulary including <unk> and <eos>; valid has 70,390 words + 3,370 line ends.
    assert tok.vocab_size == 10000 == vocab_size("ptb", "word", cache_dir=tmp_path)
    ids = tok.encode(ptb_valid)
    assert len(ids) == 73760
    assert ids.count(tok.eos_id) == 3370
    expected = "".join(" ".join(line.split()) + "\n" for line in ptb_valid.splitlines())
    assert tok.decode(ids) == expected
    assert tok.encode(tok.decode(ids)) == ids
    assert tok.encode("the zyzzyva\n") == [tok.index["the"], tok.index["<unk>"], tok.eos_id]


def test_word_vocab_is_cached_on_disk(tmp_path):
    get_tokenizer("ptb", "word", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("vocab-word-ptb-*.json"))) == 1


@pytest.mark.parametrize("edit", ["swap two words", "not JSON"])
def test_an_edited_word_vocabulary_is_named_and_rebuilt(tmp_path, capsys, edit):
    from moebench.data import tokenizers

    tok = tokenizers.make_tokenizer("word", "ptb", tmp_path)
    (path,) = tmp_path.glob("vocab-word-ptb-*.json")
    rec = json.loads(path.read_text())
    if edit == "swap two words":  # still a valid vocabulary: only the recorded checksum tells
        rec["words"][2], rec["words"][3] = rec["words"][3], rec["words"][2]
        path.write_text(json.dumps(rec))
    else:
        path.write_text(path.read_text()[:100])
    capsys.readouterr()
    again = tokenizers.make_tokenizer("word", "ptb", tmp_path)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "damaged" in err and "rebuilding" in err
    assert again.words == tok.words and json.loads(path.read_text())["words"] == list(tok.words)


def test_gpt2_offline(tmp_path, ptb_valid):
    tok = get_tokenizer("ptb", "gpt2", cache_dir=tmp_path)
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.vocab_size == 50257 and tok.eos_id == 50256
    assert tok.decode(tok.encode(ptb_valid)) == ptb_valid
    # The literal marker in corpus text is ordinary text, never the control token.
    assert 50256 not in tok.encode("a <|endoftext|> b")
