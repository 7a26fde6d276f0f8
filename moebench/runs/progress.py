"""The suite's progress while several runs train at once: a line per active run on a terminal (tqdm bars), plain
log lines otherwise (the same eval lines a sequential run prints). Fed from the runs' own metrics.jsonl, which
the trainer appends and flushes every step, so it needs no channel from the workers and works on any launcher
whose results directory this process can read."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from moebench import io as R


def duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Pace:
    """Steps per second since the first step this process saw, and the time left at that rate: for the run, and
    with `after` more runs of the same length queued behind it, for the suite. The first step (compilation,
    cache warm-up) is the reference point, not part of the rate."""

    def __init__(self, after: int = 0, clock: Callable[[], float] = time.monotonic):
        self.after, self.clock = after, clock
        self.start: tuple[float, int] | None = None

    def __call__(self, step: int, total: int) -> str:
        """', 2.41 step/s, ETA 1m52s (suite 9m40s)' (empty until two steps were seen)."""
        now = self.clock()
        if self.start is None:
            self.start = (now, step)
            return ""
        t0, s0 = self.start
        if now <= t0 or step <= s0:
            return ""
        rate = (step - s0) / (now - t0)
        left = (total - step) / rate
        suite = f" (suite {duration(left + self.after * total / rate)})" if self.after else ""
        return f", {rate:.2f} step/s, ETA {duration(left)}{suite}"


class MetricsTail:
    """New whole lines of a growing metrics.jsonl. Starts at the file's current end (rows of an earlier attempt
    are not news); a file rewritten shorter (a resume drops rows after its checkpoint) restarts at its end."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = self._size()

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def rows(self) -> list[dict]:
        size = self._size()
        if size < self.offset:
            self.offset = size
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(size - self.offset)
        whole = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(whole)
        out = []
        for line in whole.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


class SuiteProgress:
    """Active runs keyed by (variant, seed). `log` prints a line (tqdm.write-safe on a terminal)."""

    def __init__(self, suite: str, results_root: Path, total: int, quiet: bool, log):
        self.suite, self.root, self.quiet = suite, Path(results_root), quiet
        self.tty = sys.stderr.isatty() and not quiet
        self.active: dict[tuple, tuple[MetricsTail, object, int, int]] = {}  # tail, bar, slot, steps
        self.pace: dict[tuple, Pace] = {}
        self.free_slots: list[int] = []
        self.bar = tqdm(total=total, desc=f"suite {suite}", unit="run", position=0, dynamic_ncols=True,
                        disable=not self.tty)
        self._log = log

    def log(self, msg: str) -> None:
        if self.quiet:
            return
        if self.tty:
            tqdm.write(msg, file=sys.stdout)
            sys.stdout.flush()
        else:
            self._log(msg)

    def start(self, key: tuple, steps: int) -> None:
        slot = self.free_slots.pop(0) if self.free_slots else len(self.active) + 1
        tail = MetricsTail(R.run_dir(self.root, self.suite, *key) / R.METRICS)
        bar = tqdm(total=steps, desc=f"{key[0]} s{key[1]}", unit="step", position=slot, leave=False,
                   dynamic_ncols=True, disable=not self.tty)
        self.active[key] = (tail, bar, slot, steps)
        self.pace[key] = Pace()

    def end(self, key: tuple, counted: bool = True) -> None:
        if key in self.active:
            self.poll_one(key)
            _, bar, slot, _ = self.active.pop(key)
            self.pace.pop(key, None)
            bar.close()
            self.free_slots.append(slot)
            self.free_slots.sort()
        if counted:
            self.bar.update(1)

    def poll(self) -> None:
        for key in list(self.active):
            self.poll_one(key)

    def poll_one(self, key: tuple) -> None:
        tail, bar, _, steps = self.active[key]
        rows = tail.rows()
        train = [r for r in rows if r.get("kind") == "train"]
        if train and self.tty:
            bar.n = train[-1]["step"]
            bar.set_postfix(loss=f"{train[-1]['loss']:.3f}", tok_s=f"{train[-1]['tokens_per_s']:.0f}", refresh=False)
            bar.refresh()
        pace = self.pace[key](train[-1]["step"], steps) if train else ""
        if self.tty or self.quiet:
            return
        last = {r["step"]: r for r in train}
        for ev in (r for r in rows if r.get("kind") == "eval"):
            tr = last.get(ev["step"])
            if tr:
                self.log(f"  {key[0]} seed {key[1]}: step {ev['step']}/{steps} train {tr['loss']:.4f} "
                         f"val {ev['val_loss']:.4f} bpb {ev['val_bpb']:.4f} ({tr['tokens_per_s']:.0f} tok/s{pace})")

    def close(self) -> None:
        for key in list(self.active):
            self.end(key, counted=False)
        self.bar.close()
