"""Token shards: one file per (corpus, split, tokenizer), memory-mapped for training.

File layout (little-endian): a 64-byte header, then n_tokens tokens of the header's dtype.
    magic b"MOEBTOK\\0" | u32 version | u32 itemsize (2 = uint16, 4 = uint32) | u64 n_tokens | u64 n_bytes
    (UTF-8 bytes of the split text) | u64 vocab_size | 16-byte BLAKE2b digest | zero padding
The digest covers the header's fields before it and the token body (version 3; version 2 hashed the body alone, so
a bit flip in n_bytes or vocab_size went unnoticed). A shard that fails any check (a torn or truncated file, a
flipped magic or size, a body or header field that no longer matches its digest, even with valid ids) is a derived
file: it is rebuilt from the corpus after one line on stderr naming it, never used and never silently replaced.
The check hashes each file once per process (about 10 ms for PTB's 5 MB train split).
Files are built into a temp file in the cache dir and renamed into place, under an flock on "<file>.lock" so two
processes asking at once build once; without flock (non-POSIX) both build and the last rename wins, equally valid.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from moebench.errors import UserError
from moebench.io import atomic_open

try:
    import fcntl
except ImportError:  # non-POSIX: tolerate the race instead of locking
    fcntl = None

MAGIC = b"MOEBTOK\x00"
VERSION = 3  # 2: the header carries a digest of the body; 3: of the header's other fields too
HEADER = struct.Struct("<8sIIQQQ16s")
HEADER_SIZE = 64
ENCODE_BLOCK_CHARS = 1 << 22  # chunks are encoded in ~4 MB blocks, split only at chunk (row) boundaries


def cache_root(cache_dir: Optional[os.PathLike] = None) -> Path:
    root = Path(cache_dir or os.environ.get("MOEBENCH_CACHE") or Path.home() / ".cache" / "moebench").expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError, PermissionError) as e:
        where = "cache directory" if cache_dir else "MOEBENCH_CACHE (token cache directory)"
        why = "not a directory" if not isinstance(e, PermissionError) else "not writable"
        raise UserError(f"{where} {root}: {why}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UserError(f"MOEBENCH_CACHE (token cache directory) {root}: not writable")
    return root


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")[:48] or "corpus"


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


@dataclass(frozen=True)
class ShardHeader:
    version: int
    itemsize: int
    n_tokens: int
    n_bytes: int
    vocab_size: int
    digest: bytes = b"\x00" * 16

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, self.version, self.itemsize, self.n_tokens, self.n_bytes, self.vocab_size,
                           self.digest).ljust(HEADER_SIZE, b"\x00")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint16) if self.itemsize == 2 else np.dtype(np.uint32)


def shard_path(root: Path, corpus: str, corpus_fp: str, split: str, tok_name: str, tok_fp: str) -> Path:
    ident = json.dumps([VERSION, corpus, corpus_fp, split, tok_name, tok_fp])
    key = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:20]
    return root / f"{safe_name(corpus)}-{split}-{tok_name}-{key}.tok"


def read_header(path: Path) -> Optional[ShardHeader]:
    """The header if `path` is a complete shard of this format, else None (missing, torn, foreign)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER.size)
        size = os.path.getsize(path)
    except OSError:
        return None
    if len(raw) != HEADER.size:
        return None
    magic, version, itemsize, n_tokens, n_bytes, vocab, digest = HEADER.unpack(raw)
    if magic != MAGIC or version != VERSION or itemsize not in (2, 4) or size != HEADER_SIZE + n_tokens * itemsize:
        return None
    return ShardHeader(version, itemsize, n_tokens, n_bytes, vocab, digest)


def _seal(header: ShardHeader, body_digest: bytes) -> bytes:
    """The header's digest: of its other fields and of the body's own BLAKE2b digest (so it covers both, and the
    body is hashed once, while it is written)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(HEADER.pack(MAGIC, header.version, header.itemsize, header.n_tokens, header.n_bytes, header.vocab_size,
                         b"\x00" * 16))
    h.update(body_digest)
    return h.digest()


@functools.lru_cache(maxsize=256)
def _body_digest(path: str, size: int, mtime_ns: int, inode: int) -> bytes:
    # keyed by the file's identity and stamp: hashed once per process per file version, not per load
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        f.seek(HEADER_SIZE)
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.digest()


def body_ok(path: Path, header: ShardHeader) -> bool:
    st = os.stat(path)
    return _seal(header, _body_digest(str(path), st.st_size, st.st_mtime_ns, st.st_ino)) == header.digest


def open_shard(path: Path) -> tuple[ShardHeader, np.ndarray]:
    header = read_header(path)
    if header is None:
        raise ValueError(f"not a valid token shard: {path}")
    if not body_ok(path, header):
        raise ValueError(f"token cache {path} is damaged: its contents do not match the checksum in its header")
    if header.n_tokens == 0:  # mmap cannot map zero bytes
        return header, np.zeros(0, dtype=header.dtype)
    tokens = np.memmap(path, dtype=header.dtype, mode="r", offset=HEADER_SIZE, shape=(header.n_tokens,))
    return header, tokens


def _blocks(chunks: Iterable[str]) -> Iterable[str]:
    buf, size = [], 0
    for c in chunks:
        buf.append(c)
        size += len(c)
        if size >= ENCODE_BLOCK_CHARS:
            yield "".join(buf)
            buf, size = [], 0
    if buf:
        yield "".join(buf)


def write_shard(path: Path, chunks: Iterable[str], encode: Callable[[str], list[int]], vocab_size: int) -> ShardHeader:
    """Encode `chunks` into a shard at `path` atomically: readers see no file or a complete one."""
    dtype = dtype_for(vocab_size)
    with atomic_open(path) as f:
        f.write(b"\x00" * HEADER_SIZE)
        n_tokens = n_bytes = 0
        body = hashlib.blake2b(digest_size=16)
        for block in _blocks(chunks):
            ids = np.asarray(encode(block), dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
                raise ValueError(f"token id outside [0, {vocab_size}) while building {path.name}")
            data = ids.astype(dtype).tobytes()
            f.write(data)
            body.update(data)
            n_tokens += int(ids.size)
            n_bytes += len(block.encode("utf-8"))
        header = ShardHeader(VERSION, dtype.itemsize, n_tokens, n_bytes, vocab_size)
        header = ShardHeader(VERSION, dtype.itemsize, n_tokens, n_bytes, vocab_size, _seal(header, body.digest()))
        f.seek(0)
        f.write(header.pack())
    return header


def _valid(path: Path) -> bool:
    header = read_header(path)
    return header is not None and body_ok(path, header)


def ensure_shard(path: Path, build: Callable[[Path], object]) -> bool:
    """Build `path` with build(path) unless a valid shard is already there. True if this call built it.
    A shard whose body fails its checksum is rebuilt, and a line on stderr says so."""
    if _valid(path):
        return False
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+b") as lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        # Another process may have finished the build while we waited for the lock.
        if _valid(path):
            return False
        if path.exists():  # never a half-written build (those are temp files renamed whole): damage
            why = ("its contents do not match the checksum in its header" if read_header(path) is not None
                   else "not a complete token shard: truncated, or its header damaged")
            print(f"moebench: token cache {path} is damaged ({why}); rebuilding it from the corpus",
                  file=sys.stderr, flush=True)
        build(path)
        return True
