"""Calibration of the speedup_to_loss rule at 1,000 simulations per scenario (the test suite runs 200):

  1. null on simulated curves (tests/analysis/nullsim.py): a1 exactly `min` = 1.5x faster, trained for 0.85-1.15
     / 1.5 of a0's steps (a third to a half of its seeds never reach the target), 2, 3 and 5 seeds, and seed sets
     that only partly overlap; judged by the registered judge. False PASS must stay <= 5% (nominal 2.5%).
  2. null on log-normal times (speedup.pass_rate: the same fit), censoring 0-40%, baseline spread, unpaired.
  3. power: a true 2x against the 1.5x bar with slow seeds censored, at 3, 10 and 30 seeds (times) and 3, 8 seeds
     (curves): it must rise with seeds (the old rule's "one censored seed forbids PASS" made it fall).
  4. the detectable speedup's simulated power (should be 75-85%) and the time to compute it.
  5. time per fit: one judge call (4 axes in one vectorised fit), and per simulated data set.

Run: .venv/bin/python benchmarks/calibrate_speedup.py [--sims 1000]. Prints one line per scenario.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moebench.analysis import speedup  # noqa: E402
from moebench.analysis.claims import JUDGES  # noqa: E402
from moebench.config.claims import parse_claims  # noqa: E402
from tests.analysis.nullsim import simulate  # noqa: E402

BAR = 1.5


def curve_rates(n_sims: int, n_seeds: int, true_speedup: float, ends: tuple, seed: int,
                seeds: dict | None = None) -> tuple[float, float, float]:
    """PASS fraction, censored fraction of variant seeds, seconds per judge call."""
    rs = simulate(np.random.default_rng(seed), n_sims, n_seeds, speedup=(true_speedup, ends), seeds=seeds)
    passes = cens = total = 0
    t = time.perf_counter()
    for i in range(n_sims):
        c, = parse_claims([{"kind": "speedup_to_loss", "variant": f"{i}.a1", "baseline": f"{i}.a0", "min": BAR}])
        v = JUDGES[c.kind](c, rs)
        passes += v.verdict == "PASS"
        cens += len(v.numbers["censored_seeds"])
        total += len(v.numbers["speedup_per_seed"])
    return passes / n_sims, cens / total, (time.perf_counter() - t) / n_sims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sims", type=int, default=1000)
    n = ap.parse_args().sims
    print(f"# {n} simulations per scenario; load average {os.getloadavg()[0]:.1f} at start")
    print("## 1. null on curves: true speedup = bar 1.5, variant seeds censored")
    for k, seeds in ((2, None), (3, None), (5, None), (3, {"a0": [0, 1, 2], "a1": [2, 3, 4]}),
                     (3, {"a0": [0, 1], "a1": [0, 1, 2, 3, 4]}), (3, {"a0": [0, 1], "a1": [5, 6, 7]})):
        p, c, dt = curve_rates(n, k, BAR, (0.85, 1.15), seed=1000 + k + 10 * bool(seeds), seeds=seeds)
        print(f"seeds {seeds or k}: false PASS {p:.1%} (+-{1.96 * math.sqrt(0.025 * 0.975 / n):.1%} around 2.5%), "
              f"{c:.0%} of variant seeds censored, {dt * 1e3:.1f} ms per judge call")
    print("## 2. null on log-normal times (speedup.pass_rate)")
    noises = {"sd 0.2, none censored": speedup.SpeedupNoise(0.2, 0.0, True),
              "sd 0.2, 20% censored": speedup.SpeedupNoise(0.2, 0.2, True),
              "sd 0.3, 40% censored": speedup.SpeedupNoise(0.3, 0.4, True),
              "sd 0.3, 40% censored, baseline sd 0.1": speedup.SpeedupNoise(0.3, 0.4, True, 0.1),
              "unpaired, sd 0.25, target sd 0.2, 30% censored": speedup.SpeedupNoise(0.25, 0.3, False, 0.05, None,
                                                                                      0.2)}
    for name, noise in noises.items():
        rates = [speedup.pass_rate(noise, BAR, k, k, BAR, n, seed=k) for k in (2, 3, 5)]
        uneq = [speedup.pass_rate(noise, BAR, a, b, BAR, n, seed=a * 10 + b) for a, b in ((2, 5), (5, 2))]
        print(f"{name}: false PASS at 2/3/5 seeds {' / '.join(f'{r:.1%}' for r in rates)}; "
              f"2 vs 5 {uneq[0]:.1%}, 5 vs 2 {uneq[1]:.1%}")
    print("## 3. power: true 2x vs bar 1.5, slow seeds censored")
    noise = speedup.SpeedupNoise(0.4, 0.0, True, 0.0, 0.0)
    print("times, sd 0.4, censored beyond the baseline's time: "
          + ", ".join(f"{k} seeds {speedup.pass_rate(noise, 2.0, k, k, BAR, n, seed=k):.1%}" for k in (3, 10, 30)))
    for k in (3, 8):
        p, c, _ = curve_rates(n, k, 2.0, (1.1, 1.3), seed=2000 + k)
        print(f"curves, {k} seeds: PASS {p:.1%} ({c:.0%} of variant seeds censored)")
    print("## 4. detectable speedup (3 vs 3 seeds unless said) and its simulated power")
    for name, noise in {"sd 0.15, ends at baseline / 1.3": speedup.SpeedupNoise(0.15, 0.0, True, 0.0,
                                                                                 -math.log(1.3)),
                        "sd 0.3, censored beyond the baseline's time": speedup.SpeedupNoise(0.3, 0.0, True, 0.0, 0.0),
                        "unpaired, sd 0.25, target sd 0.2": speedup.SpeedupNoise(0.25, 0.0, False, 0.1, 0.0, 0.2),
                        "sd 0.3, variant trains 1/3 of the baseline's time": speedup.SpeedupNoise(0.3, 0.0, True, 0.0,
                                                                                                  -math.log(3)),
                        "sd 0.3, variant trains 1/1.6, 5 seeds": speedup.SpeedupNoise(0.3, 0.0, True, 0.0,
                                                                                      -math.log(1.6)),
                        }.items():
        k = 5 if "5 seeds" in name else 3
        t = time.perf_counter()
        d = speedup.detectable_speedup(noise, k, k, BAR)
        dt = time.perf_counter() - t
        p = speedup.pass_rate(noise, d, k, k, BAR, n, seed=777)
        print(f"{name}: detectable {d:.3g}x in {dt:.2f} s, simulated power there {p:.1%}")
    print("## 5. fit time per simulated data set (vectorised), 5 seeds, 40% censored")
    t = time.perf_counter()
    speedup.pass_rate(speedup.SpeedupNoise(0.3, 0.4, True), BAR, 5, 5, BAR, n, seed=0)
    print(f"{(time.perf_counter() - t) / n * 1e3:.2f} ms per data set")


if __name__ == "__main__":
    main()
