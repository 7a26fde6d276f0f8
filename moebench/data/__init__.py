"""Data layer: corpora -> tokenizers -> cached token shards. The trainer imports exactly these names.

Bits per byte (computed by the trainer): loss_nats * n_tokens / (n_bytes * ln 2), n_bytes from TokenSplit.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from moebench.data import cache, corpora, tokenizers
from moebench.data.corpora import DEFAULT_CORPUS, SPLITS, corpus_names
from moebench.data.tokenizers import tokenizer_names
from moebench.errors import UserError

__all__ = [
    "TokenSplit", "load_tokens", "get_tokenizer", "vocab_size", "corpus_names", "tokenizer_names",
    "check_corpus_spec", "DEFAULT_CORPUS", "SPLITS", "unigram_cross_entropy", "cached_unigram_ce",
]
BINCOUNT_CHUNK = 1 << 24  # tokens per bincount: a 10B-token shard is counted without a 10B-long int64 copy


@dataclass
class TokenSplit:
    tokens: np.ndarray  # 1-D read-only memmap (uint16 or uint32)
    n_bytes: int  # UTF-8 bytes of the split's text
    vocab_size: int

    @property
    def bytes_per_token(self) -> float:
        return self.n_bytes / len(self.tokens)


@functools.lru_cache(maxsize=32)
def _tokenizer(corpus: str, tokenizer: str, root: str, corpus_fp: str):
    # corpus_fp is part of the key only so that an edited local file gets a fresh word vocabulary.
    return tokenizers.make_tokenizer(tokenizer, corpus, Path(root))


def get_tokenizer(corpus: str, tokenizer: str, cache_dir: Optional[os.PathLike] = None):
    """The tokenizer for `corpus` (the word tokenizer builds/caches its vocabulary from the corpus train split)."""
    tokenizers.TOKENIZERS[tokenizer]  # an unknown name is the user's error, with a did-you-mean
    return _tokenizer(corpus, tokenizer, str(cache.cache_root(cache_dir)), corpora.corpus_fingerprint(corpus))


def vocab_size(corpus: str, tokenizer: str, cache_dir: Optional[os.PathLike] = None) -> int:
    return get_tokenizer(corpus, tokenizer, cache_dir).vocab_size


def load_tokens(corpus: str, tokenizer: str, split: str, cache_dir: Optional[os.PathLike] = None) -> TokenSplit:
    """Tokens of one split, built once into the cache and memory-mapped afterwards."""
    corpora.check_split(split)
    tok = get_tokenizer(corpus, tokenizer, cache_dir)
    root = cache.cache_root(cache_dir)
    path = cache.shard_path(root, corpus, corpora.corpus_fingerprint(corpus), split, tok.name, tok.fingerprint)
    cache.ensure_shard(path, lambda p: cache.write_shard(p, corpora.iter_text(corpus, split), tok.encode,
                                                          tok.vocab_size))
    header, tokens = cache.open_shard(path)
    if header.n_tokens == 0:
        raise UserError(f"corpus {corpus!r} split {split!r} is empty: give it more text (a single local file "
                        "is split 90/5/5 by rows into train/valid/test)")
    return TokenSplit(tokens=tokens, n_bytes=header.n_bytes, vocab_size=header.vocab_size)


def _counts(tokens: np.ndarray, vocab: int) -> np.ndarray:
    out = np.zeros(vocab, dtype=np.int64)
    for i in range(0, len(tokens), BINCOUNT_CHUNK):
        out += np.bincount(np.asarray(tokens[i:i + BINCOUNT_CHUNK]), minlength=vocab)[:vocab]
    return out


def unigram_cross_entropy(train: TokenSplit, valid: TokenSplit) -> float:
    """Nats per token of `valid` under `train`'s unigram distribution, add-one (Laplace) smoothed over the
    vocabulary: the loss of a model that has learned token frequencies and nothing else, i.e. the initial plateau a
    language model sits on before it uses context (the scaling fit leaves sizes still there out)."""
    vocab = max(train.vocab_size, valid.vocab_size)
    counts = _counts(train.tokens, vocab).astype(np.float64)
    logp = np.log((counts + 1.0) / (counts.sum() + vocab))
    seen = _counts(valid.tokens, vocab)
    return float(-(seen * logp).sum() / seen.sum())


def cached_unigram_ce(corpus: str, tokenizer: str, cache_dir: Optional[os.PathLike] = None) -> Optional[float]:
    """unigram_cross_entropy of the valid split under the train split, if both token shards (and a word
    tokenizer's vocabulary) are already in the cache; None otherwise: this builds and downloads nothing."""
    if check_corpus_spec(corpus, tokenizer):
        return None
    root = cache.cache_root(cache_dir)
    if tokenizer == "word" and not tokenizers.word_vocab_path(corpus, root).exists():
        return None
    tok = get_tokenizer(corpus, tokenizer, cache_dir)
    splits = []
    for split in ("train", "valid"):
        path = cache.shard_path(root, corpus, corpora.corpus_fingerprint(corpus), split, tok.name, tok.fingerprint)
        header = cache.read_header(path)
        if header is None or not cache.body_ok(path, header) or header.n_tokens == 0:
            return None
        _, tokens = cache.open_shard(path)
        splits.append(TokenSplit(tokens=tokens, n_bytes=header.n_bytes, vocab_size=header.vocab_size))
    return unigram_cross_entropy(*splits)


def check_corpus_spec(corpus: str, tokenizer: str) -> list[str]:
    """Problems with a (corpus, tokenizer) pair, as messages; downloads and raises nothing."""
    problems = corpora.corpus_problems(corpus)
    if tokenizer not in tokenizers.TOKENIZERS:
        problems.append(tokenizers.TOKENIZERS.unknown(tokenizer))
    return problems
