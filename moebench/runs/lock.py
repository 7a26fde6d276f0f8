"""One writer per results directory: `moebench run` holds an flock on results/<suite>/.lock for its whole life, and
`moebench eval` (which rewrites a run's summary and manifest) holds the same lock while it evaluates, so two evals
of one run, or an eval and a `run --force` retraining it, never interleave their writes.

The lock is the kernel's (fcntl.flock): a crashed or killed holder releases it with its file descriptor, so a
lock is never stale. The file's text (pid, host, start time) only names the holder in the refusal message.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from moebench.errors import UserError

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if not fields:
        return "process"
    return (f"{fields.get('cmd', 'run')} (pid {fields.get('pid', '?')} on {fields.get('host', '?')} "
            f"since {fields.get('since', '?')})")


def run_lock_dir(rd: Path) -> Path:
    """The folder whose lock guards a run directory: its results/<suite>/ (the lock `moebench run` holds), or the
    run directory itself when it does not sit in one (a copied run)."""
    suite_dir = Path(rd).parent.parent
    return suite_dir if (suite_dir / "suite.yaml").is_file() else Path(rd)


@contextmanager
def suite_lock(suite_dir: Path, wait: bool = False, poll_s: float = 0.5, log=print, cmd: str = "run"):
    """Hold results/<suite>/.lock; UserError naming the holder if another process has it (unless `wait`).
    `cmd`: the command holding it, named to whoever finds it busy."""
    suite_dir = Path(suite_dir)
    suite_dir.mkdir(parents=True, exist_ok=True)
    path = suite_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise UserError(f"{suite_dir} is in use by another moebench {_holder(path)}; wait for it to "
                                    "finish, pass --wait, or use another --results directory") from None
                if not said:
                    log(f"waiting for {suite_dir}: in use by another moebench {_holder(path)}")
                    said = True
                time.sleep(poll_s)
        since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"cmd={cmd} pid={os.getpid()} host={socket.gethostname()} since={since}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock; the file stays (removing it would race with a waiter's open)
