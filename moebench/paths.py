"""Names and folders, below io: how a string read from disk becomes a path (one component, checked), which folder
an output may go to, and the mode a new file or folder gets (the user's umask). io re-exports all of it."""
from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

from moebench.errors import UserError


def path_name(name: Any, what: str) -> str:
    """`name` (a string read from disk or given by a user) as ONE path component, or a UserError naming `what`:
    every join of such a string goes through here (or safe_join), so no file can name a path outside its folder."""
    text = name if isinstance(name, str) else None
    bad = ("not a string" if text is None else "empty" if not text
           else "'.' or '..'" if text in (".", "..")
           else "a path separator" if "/" in text or "\\" in text or (os.altsep and os.altsep in text)
           else "a control character" if any(unicodedata.category(c) == "Cc" for c in text) else None)
    if bad:
        raise UserError(f"{what}: {name!r} is not a safe file or folder name ({bad})")
    return text


def safe_join(root: Path, *names: Any, what: str) -> Path:
    """root / each name, every name a single component checked by path_name (so never absolute, never '..')."""
    return Path(root).joinpath(*(path_name(n, what) for n in names))


def safe_relpath(root: Path, rel: Any, what: str) -> Path:
    """root / rel for a relative 'a/b/c' path read from disk: each '/'-separated part checked by path_name."""
    if not isinstance(rel, str) or rel.startswith("/"):
        raise UserError(f"{what}: {rel!r} is not a relative path inside {root}")
    return safe_join(root, *rel.split("/"), what=what)


def umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc/self/status, 4.7+)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere: the classic read-by-setting, restored at once
    os.umask(old)
    return old


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A fresh directory in `parent` (to be renamed into place) with the mode a plain mkdir would give it:
    mkdtemp's 0700 would make a published site or an export unreadable to anyone else."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def check_out_dir(path: Path, flag: str) -> None:
    """UserError unless `path` is (or can be created as) a writable directory: no file at it or above it; creates
    nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a directory")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{flag} {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {probe} is not writable")
