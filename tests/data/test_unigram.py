"""The unigram cross-entropy the scaling fit's plateau check reads (moebench.data.unigram_cross_entropy)."""
import math

import numpy as np
import pytest

from moebench import data
from moebench.data import TokenSplit


def split(tokens, vocab=4):
    return TokenSplit(tokens=np.array(tokens, dtype=np.uint16), n_bytes=len(tokens), vocab_size=vocab)


def test_add_one_smoothed_unigram_cross_entropy_by_hand():
    # train counts 3, 1, 0, 0 over a vocabulary of 4: add-one gives 4/8, 2/8, 1/8, 1/8
    ce = data.unigram_cross_entropy(split([0, 0, 0, 1]), split([0, 1, 2, 3]))
    assert ce == pytest.approx(-(math.log(4 / 8) + math.log(2 / 8) + 2 * math.log(1 / 8)) / 4)


def test_counting_in_chunks_changes_nothing(monkeypatch):
    rng = np.random.default_rng(0)
    train, valid = split(rng.integers(0, 50, 10_000), 50), split(rng.integers(0, 50, 3_000), 50)
    whole = data.unigram_cross_entropy(train, valid)
    monkeypatch.setattr(data, "BINCOUNT_CHUNK", 333)
    assert data.unigram_cross_entropy(train, valid) == pytest.approx(whole, rel=1e-12)


def test_nothing_cached_gives_none(tmp_path):
    assert data.cached_unigram_ce("ptb", "byte", cache_dir=tmp_path) is None
    assert data.cached_unigram_ce("ptb", "word", cache_dir=tmp_path) is None
