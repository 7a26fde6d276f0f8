"""Wall time of a suite run with --jobs 1 and --jobs N, and a check that every run's final losses are identical.

    python benchmarks/parallel_runs.py [SUITE.yaml] [--jobs N] [--out DIR]

Runs `moebench run SUITE --jobs 1` and then `--jobs N` into fresh results directories under DIR (default: a temp
dir), prints both wall times, their ratio, the 1-minute load average before and after each, and exits 1 if any
run's final val/test losses differ. Not part of the test command: a timing, meaningful on a quiet machine only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(suite: str, jobs: int, out: Path) -> tuple[float, tuple, tuple]:
    cmd = [sys.executable, "-m", "moebench", "run", suite, "--results", str(out / f"r{jobs}"),
           "--reports", str(out / f"rep{jobs}"), "--jobs", str(jobs), "--quiet"]
    before = os.getloadavg()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0, before, os.getloadavg()


def finals(results: Path) -> dict:
    return {str(p.parent.relative_to(results)): json.loads(p.read_text())["final"]
            for p in sorted(results.glob("*/*/seed-*/summary.json"))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("suite", nargs="?", default="suites/quickstart.yaml")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="moebench-jobs-"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} usable cores; results under {out}")
    seq, l0, l1 = run(a.suite, 1, out)
    print(f"--jobs 1: {seq:.1f} s (load {l0[0]:.2f} -> {l1[0]:.2f})")
    par, l2, l3 = run(a.suite, a.jobs, out)
    print(f"--jobs {a.jobs}: {par:.1f} s (load {l2[0]:.2f} -> {l3[0]:.2f}); ratio {par / seq:.2f}")
    f1, f2 = finals(out / "r1"), finals(out / f"r{a.jobs}")
    same = f1 == f2 and len(f1) > 0
    print(f"final losses identical in all {len(f1)} runs: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
