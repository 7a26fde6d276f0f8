"""Start-up cost of `moebench plan` on a CPU suite against `python -c 'import torch'`, alternately.

    python benchmarks/plan_startup.py [SUITE.yaml] [--runs 10]

Each round runs both commands once, in alternating order, as fresh processes; prints each median and their
ratio and exits 1 unless plan's median wall is under 1 s and under half of importing torch (the planner imports
no torch on a CPU suite: tests/plan/test_plan_no_torch.py). A timing, meaningful on a quiet machine only, so not
part of the test command.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", nargs="?", default="suites/quickstart.yaml", help="a suite whose device is cpu/auto")
    ap.add_argument("--runs", type=int, default=10, help="rounds of (plan, import torch), alternating order")
    args = ap.parse_args()
    plan = [sys.executable, "-m", "moebench", "plan", args.suite, "--set", "train.device=cpu"]
    torch = [sys.executable, "-c", "import torch"]
    times: dict[str, list[float]] = {"plan": [], "import torch": []}
    load = os.getloadavg()[0]
    for i in range(args.runs):
        order = (("plan", plan), ("import torch", torch)) if i % 2 == 0 else (("import torch", torch), ("plan", plan))
        for name, cmd in order:
            times[name].append(wall(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:13s} median {med[k]:.3f} s  (min {min(v):.3f}, max {max(v):.3f}, {len(v)} runs)")
    ratio = med["plan"] / med["import torch"]
    print(f"plan / import torch = {ratio:.2f}; load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    return 0 if med["plan"] < 1.0 and ratio < 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
