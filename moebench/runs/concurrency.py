"""How many runs to train at once (`--jobs auto`), and how many did run at once: each trained run's summary gets
`concurrent_runs` and `load_avg_1m`, so a throughput measured beside other runs says so.

Two runs at once on a 2-core machine took 0.54-0.61x the sequential wall time on free cores but 1.04-1.39x when
another job held a core (research note cpu-perf.md): parallel runs pay only on cores that are actually free, so
the CPU rule counts cores the load average says are busy as taken.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from moebench import io as R


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask: taskset, cgroups cpusets, Slurm), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def load_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def auto_jobs(threads: int | None, gpus: int, gpus_per_run: int = 1, cores: int | None = None,
              load: float | None = None) -> int:
    """`--jobs auto`: on GPUs one run per `gpus_per_run` visible GPUs; on CPU the free cores (usable cores minus
    the 1-minute load average rounded, at least 1) divided by the run's threads (unset = every core), at least 1."""
    if gpus > 0:
        return max(1, gpus // max(1, gpus_per_run))
    cores = usable_cores() if cores is None else cores
    load = (load_1m() or 0.0) if load is None else load
    free = max(1, cores - round(load))
    return max(1, free // (threads or cores))


@dataclass(frozen=True)
class Span:
    """One run's training, as the scheduler saw it: wall-clock start and end on a host."""
    key: tuple  # (variant or variant@size, seed): RunSpec.ident, also a run_dir's (variant, seed)
    start: float
    end: float
    host: str = ""
    load_start: float | None = None
    load_end: float | None = None


def beside(spans: Sequence[Span]) -> dict[tuple, dict]:
    """For each span, the other spans on its host that overlapped it: at its start, at most, and on average
    (time-weighted over its duration). Pure: a function of the intervals alone."""
    out = {}
    for s in spans:
        others = [o for o in spans if o is not s and o.host == s.host and o.start < s.end and o.end > s.start]
        at_start = sum(1 for o in others if o.start <= s.start < o.end)
        # the overlap count changes only where another span starts or ends inside this one
        cuts = sorted({s.start, s.end, *(t for o in others for t in (o.start, o.end) if s.start < t < s.end)})
        most, area = at_start, 0.0
        for a, b in zip(cuts, cuts[1:]):
            n = sum(1 for o in others if o.start <= a and o.end >= b)
            most, area = max(most, n), area + n * (b - a)
        dur = s.end - s.start
        out[s.key] = {"at_start": at_start, "max": most, "mean": round(area / dur, 3) if dur > 0 else float(at_start)}
    return out


def record(results_root: Path, suite: str, spans: Sequence[Span], launcher: str, jobs: int | None) -> None:
    """Add `concurrent_runs` and `load_avg_1m` to the summaries of the runs these spans trained (atomic rewrite,
    as post-training measurements are added)."""
    counts = beside(spans)
    for s in spans:
        path = R.run_dir(results_root, suite, *s.key) / R.SUMMARY
        if not path.exists():
            continue
        summary = R.read_json(path)
        summary["concurrent_runs"] = {**counts[s.key], "launcher": launcher, "jobs": jobs}
        summary["load_avg_1m"] = {"start": s.load_start, "end": s.load_end}
        R.write_summary(path.parent, summary)


def span_now(key: tuple, start: float, load_start: float | None) -> Span:
    """A span that ends now, on this host."""
    return Span(key, start, time.time(), socket.gethostname(), load_start, load_1m())
