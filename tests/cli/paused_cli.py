"""The real CLI, except that a run stops itself (SIGSTOP) before training step N+1 when MOEBENCH_TEST_PAUSE is
"VARIANT[,VARIANT...]:N", so a test can signal or kill it at a known point without racing it:

    MOEBENCH_TEST_PAUSE=moe:5 python tests/cli/paused_cli.py run SUITE ...

The test waits for what the other side does (its files, its stopped state, a pending signal), never for time.
--jobs workers are spawned and import this file as their __main__, so the patch below reaches them too.
moebench itself never reads the variable.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
PATIENCE_S = 300  # only a bound on a bug: every wait below ends as soon as the other side has acted


def install() -> None:
    spec = os.environ.get("MOEBENCH_TEST_PAUSE")
    if not spec:
        return
    names, step = spec.rsplit(":", 1)
    variants = set(names.split(","))
    from moebench.training.trainer import Trainer

    real = Trainer.train_step

    def train_step(self, *a, **k):
        if self.spec.variant in variants and self.step == int(step):
            os.kill(os.getpid(), signal.SIGSTOP)  # checkpoints and metrics of steps <= N are on disk
        return real(self, *a, **k)

    Trainer.train_step = train_step


def state(pid: int) -> str | None:
    """The process state letter (R, S, T, Z, ...) from /proc, None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pending(pid: int, signum: int) -> bool:
    """Whether `signum` waits, undelivered, for `pid` (a stopped process keeps it until SIGCONT)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except OSError:
        return False
    mask = int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
    return bool(mask >> (signum - 1) & 1)


def wait_for(cond, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    """The spawned worker processes of `pid` (Linux /proc), not multiprocessing's resource tracker."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(int(stat.parent.name))
    return out


install()

if __name__ == "__main__":
    from moebench.cli import main

    sys.exit(main(sys.argv[1:]))
