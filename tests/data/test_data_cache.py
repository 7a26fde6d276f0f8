import hashlib
import multiprocessing as mp
import struct
import time

import numpy as np
import pytest

from moebench.data import cache, corpora, load_tokens


def _shards(d):
    return sorted(d.glob("*.tok"))


def test_header_fields(tmp_path):
    ts = load_tokens("ptb", "byte", "valid", cache_dir=tmp_path)
    (path,) = _shards(tmp_path)
    magic, version, itemsize, n_tokens, n_bytes, vocab, digest = struct.unpack("<8sIIQQQ16s",
                                                                               path.read_bytes()[:56])
    text = corpora.load_text("ptb", "valid")
    assert (magic, version, itemsize, vocab) == (b"MOEBTOK\x00", 3, 2, 256)
    # the digest covers the header's other fields and the body: blake2b(fields with a zero digest + blake2b(body))
    fields = path.read_bytes()[:40] + b"\x00" * 16
    body = hashlib.blake2b(path.read_bytes()[64:], digest_size=16).digest()
    assert digest == hashlib.blake2b(fields + body, digest_size=16).digest()
    assert n_tokens == len(ts.tokens) == n_bytes == ts.n_bytes == len(text.encode("utf-8"))
    assert path.stat().st_size == 64 + 2 * n_tokens
    assert isinstance(ts.tokens, np.memmap) and ts.tokens.ndim == 1
    assert bytes(ts.tokens[:50].tolist()) == text.encode("utf-8")[:50]
    assert ts.bytes_per_token == 1.0


def test_large_vocab_uses_uint32(tmp_path):
    path = tmp_path / "big.tok"
    header = cache.write_shard(path, ["x"], lambda s: [0, 65535, 69999], vocab_size=70000)
    assert header.itemsize == 4
    h, toks = cache.open_shard(path)
    assert toks.dtype == np.uint32 and toks.tolist() == [0, 65535, 69999] and h.n_bytes == 1


def test_second_load_reuses_file(tmp_path, monkeypatch):
    load_tokens("ptb", "word", "test", cache_dir=tmp_path)
    (path,) = _shards(tmp_path)
    mtime = path.stat().st_mtime_ns

    def no_rebuild(*a, **k):
        raise AssertionError("shard rebuilt although a valid one was cached")

    monkeypatch.setattr(cache, "write_shard", no_rebuild)
    ts = load_tokens("ptb", "word", "test", cache_dir=tmp_path)
    assert len(ts.tokens) == 82430 and path.stat().st_mtime_ns == mtime


def test_keys_separate_splits_and_tokenizers(tmp_path):
    for tok in ("byte", "gpt2"):
        for split in ("valid", "test"):
            load_tokens("ptb", tok, split, cache_dir=tmp_path)
    assert len(_shards(tmp_path)) == 4


def test_torn_shard_is_rebuilt(tmp_path):
    n = len(load_tokens("ptb", "byte", "test", cache_dir=tmp_path).tokens)
    (path,) = _shards(tmp_path)
    with open(path, "r+b") as f:
        f.truncate(1000)
    assert cache.read_header(path) is None
    assert len(load_tokens("ptb", "byte", "test", cache_dir=tmp_path).tokens) == n


def _build_in_child(cache_dir, barrier, log, queue):
    real = cache.write_shard

    def slow_logged_write(*a, **k):
        with open(log, "a") as f:
            f.write("build\n")
        time.sleep(0.3)  # keep the other process waiting on the lock while this one builds
        return real(*a, **k)

    cache.write_shard = slow_logged_write
    barrier.wait()
    ts = load_tokens("ptb", "byte", "valid", cache_dir=cache_dir)
    queue.put(int(np.asarray(ts.tokens, dtype=np.int64).sum()))


def test_concurrent_build_gives_one_valid_file(tmp_path):
    ctx = mp.get_context("fork")
    barrier, queue, log = ctx.Barrier(2), ctx.Queue(), tmp_path / "builds.log"
    procs = [ctx.Process(target=_build_in_child, args=(tmp_path, barrier, log, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    sums = [queue.get(timeout=600) for _ in procs]  # bounds on a hang only
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    assert log.read_text().count("build") == 1
    (path,) = _shards(tmp_path)
    assert cache.read_header(path) is not None
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    expected = sum(corpora.load_text("ptb", "valid").encode("utf-8"))
    assert sums == [expected, expected]


def test_empty_split_is_a_user_error(tmp_path):
    from moebench.errors import UserError

    path = tmp_path / "one.txt"
    path.write_text("only line\n")
    with pytest.raises(UserError, match="is empty"):
        load_tokens(f"text:{path}", "byte", "train", cache_dir=tmp_path / "c")


def test_cache_body_overwritten_with_valid_ids_is_rebuilt_after_saying_so(tmp_path, capsys):
    good = load_tokens("ptb", "byte", "valid", cache_dir=tmp_path)
    want = bytes(good.tokens[:100].tolist())
    (path,) = _shards(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[64:264] = bytes([65, 0]) * 100  # 100 tokens of 'A': valid ids, wrong text
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged"):
        cache.open_shard(path)
    again = load_tokens("ptb", "byte", "valid", cache_dir=tmp_path)
    err = capsys.readouterr().err
    assert f"token cache {path} is damaged" in err and "rebuilding" in err
    assert bytes(again.tokens[:100].tolist()) == want
