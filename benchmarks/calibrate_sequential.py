"""Calibration of `run --until-decided` (analysis/sequential.py) by simulating the peeking itself, 1,000 simulated
runs per scenario on a fixed RNG: false PASS with no true effect (the claim exactly at its bar) under the
group-sequential rule and under the naive rule (2.5% at every look), power and mean rounds for true effects, for
the default rounds (2, 4, ..., 10 seeds), a look after every seed (2..10) and an odd start (3, 5, 7, 9), and the
registered judges on simulated curves. Statistics per scenario: tests/analysis/seqsim.py.

    python benchmarks/calibrate_sequential.py [--sims 1000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moebench.analysis import sequential as S  # noqa: E402
from tests.analysis.seqsim import SCENARIOS, peek, peek_judges  # noqa: E402

DESIGNS = {"2,4,..,10": S.design(2, 2, 10), "2,3,..,10": S.design(2, 1, 10), "3,5,7,9": S.design(3, 2, 9)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=1000)
    n = ap.parse_args().sims
    t0 = time.time()
    for name, d in DESIGNS.items():
        levels = ", ".join(f"{d.nominal(k):.2g}" for k in range(len(d.looks)))
        print(f"\nlooks at {name} seeds; nominal one-sided levels {levels}")
        print(f"{'scenario':<12} {'false PASS seq':>14} {'naive':>7} {'power 1sd':>10} {'rounds':>7} "
              f"{'power 2sd':>10} {'rounds':>7}")
        for sc in SCENARIOS:
            null = peek(sc, d, n, seed=1)
            p1, p2 = peek(sc, d, n, seed=2, effect=1.0), peek(sc, d, n, seed=3, effect=2.0)
            print(f"{sc:<12} {null['sequential']:>14.1%} {null['naive']:>7.1%} {p1['sequential']:>10.1%} "
                  f"{p1['rounds']:>7.2f} {p2['sequential']:>10.1%} {p2['rounds']:>7.2f}")
    d = DESIGNS["2,4,..,10"]
    print(f"\nregistered judges on simulated curves (tests/analysis/nullsim.py), looks at 2,4,..,10 seeds, Holm over "
          f"the 3 claims at every look, {n} suites ('any': a suite with at least one PASS, the family-wise rate)")
    null = peek_judges(d, n, seed=4)
    power = peek_judges(d, n, seed=5, effects={"a1": 2.0, "a2": 4.0, "a3": 6.0})
    for claim in null:
        print(f"  {claim:<14} false PASS seq {null[claim]['sequential']:.1%}, naive {null[claim]['naive']:.1%}; "
              f"power at 2 seed sds: seq {power[claim]['sequential']:.1%}, naive {power[claim]['naive']:.1%}")
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
