"""What each statistical verdict could have detected: the smallest true effect its own rule PASSes with 80% power
at the seed noise and seed counts it measured, by simulating that rule (analysis/power.py).

Stated at report time (judge_all), not inside the judges: a simulation of a few thousand repetitions costs 0.1-1 s
per claim, which a report spends once, while the null-calibration tests call the judges thousands of times.
"""
from __future__ import annotations

import math

from moebench.analysis import power, speedup

from .base import INCONCLUSIVE, Verdict

# kind -> the numbers key the report reads (report/facts.py), and what the INCONCLUSIVE sentence says
KEYS = {"loss_better": "detectable_difference", "monotonic": "detectable_slope", "loss_equivalent": "detectable_margin"}


def _sentence(spec, d: float) -> str:
    if spec.kind == "loss_better":
        return (f"at this noise it could detect only a difference of {d:.3g} or more (80% power of this Welch "
                f"rule, simulated at each variant's seed sd)")
    if spec.kind == "monotonic":
        per = "log2(x)" if spec.x else "variant index"
        return (f"at this noise it could detect only a slope of {d:.3g} per {per} or steeper (80% power of this "
                f"rule, strict ordering included, simulated at the pooled seed sd)")
    return (f"at this noise, with no true difference, it could confirm equivalence only within +-{d:.3g} (80% "
            f"power of these two one-sided tests, simulated at each variant's seed sd)")


def _speedup(v: Verdict) -> None:
    """An INCONCLUSIVE speedup's detectable effect: the true speedup this very rule PASSes with 80% power at the
    noise and seed counts its verdict recorded, by simulation (speedup.detectable_speedup, about a second)."""
    n = v.numbers
    if v.verdict != INCONCLUSIVE or "noise" not in n:
        return
    noise = speedup.SpeedupNoise(**n["noise"])
    d = speedup.detectable_speedup(noise, int(n["n"][0]), int(n["n"][1]), float(n["required_min"]))
    n["detectable_speedup"] = d
    v.reason += (f"; at this noise (per-seed log-time sd {noise.sd_log:.3g}, {noise.censor_rate:.0%} censored) "
                 f"it could confirm only a speedup >= {d:.3g}x (80% power, simulated with this rule)")


def state_detectable(specs: list, verdicts: list[Verdict], rs) -> list[Verdict]:
    """Run by judge_all after Holm, so a PASS that Holm made INCONCLUSIVE gets its detectable effect too."""
    for spec, v in zip(specs, verdicts):
        if spec.kind == "speedup_to_loss":
            _speedup(v)
            continue
        key = KEYS.get(spec.kind)
        if key is None or not v.numbers:  # no numbers: no data to measure noise on
            continue
        model = power.claim_power(spec, rs)
        d = model.detectable_effect() if model is not None else math.nan
        v.numbers[key] = d
        if v.verdict == INCONCLUSIVE and d == d:
            v.reason += f"; {_sentence(spec, d)}"
    return verdicts
