"""Simulating `run --until-decided` itself: seeds arrive in rounds, every round is a look, and a claim PASSes at
the first look whose p-value crosses the rule's level. The per-look statistics are the judges' own (stats.welch and
stats.p_above as claims/kinds.py computes p_one_sided), and the decision is analysis/sequential.py's claim_state
on a Verdict built as the judge builds it, so the test peeks exactly as the CLI loop does.

Scenarios (each look uses the first n seeds of one simulated stream, as rounds add seeds to a run):
  welch     final losses of two variants, Welch's t on the difference against the margin (loss_better)
  welch_sd3 the same with the baseline's seed sd 3x the variant's (unequal variances)
  speedup   per-seed log speedups, one-sample t (n - 1 df) against log(min) (speedup_to_loss)
  speedup_t3 the same with t(3)-distributed seed noise (heavy tails)
"""
from __future__ import annotations

import math

import numpy as np

from moebench.analysis import stats
from moebench.analysis import sequential as S
from moebench.analysis.claims import FAIL, INCONCLUSIVE, PASS, Verdict

SCENARIOS = ("welch", "welch_sd3", "speedup", "speedup_t3")
LOG_SD = 0.06  # per-seed log-speedup sd measured on the switch-equal-flops preset (research/verdicts.md)


def _verdict(kind: str, p: float) -> Verdict:
    """The judge's own outcome at its fixed level (interval low end above the bar <=> one-sided p <= 2.5%)."""
    v = PASS if p <= S.ALPHA_ONE_SIDED else FAIL if p >= 1 - S.ALPHA_ONE_SIDED else INCONCLUSIVE
    return Verdict("claim", kind, ["a", "b"], v, {"p_one_sided": p})


def look_p(scenario: str, a: np.ndarray, b: np.ndarray, n: int) -> tuple[str, float]:
    if scenario.startswith("welch"):
        w = stats.welch(list(a[:n]), list(b[:n]))
        return "loss_better", stats.p_above(w["diff"], 0.0, w["se"], w["df"])
    d = a[:n]
    return "speedup_to_loss", stats.p_above(float(np.mean(d)), 0.0, float(np.std(d, ddof=1)) / math.sqrt(n), n - 1)


def draw(scenario: str, rng, n: int, effect: float) -> tuple[np.ndarray, np.ndarray]:
    """One stream of n seeds per variant; `effect` in seed sds (0: exactly at the claim's bar, the null)."""
    if scenario.startswith("welch"):
        sd_b = 3.0 if scenario == "welch_sd3" else 1.0
        return rng.normal(effect, 1.0, n), rng.normal(0.0, sd_b, n)
    noise = rng.standard_t(3, n) / math.sqrt(3) if scenario == "speedup_t3" else rng.normal(size=n)
    return (noise + effect) * LOG_SD, np.zeros(n)


def peek(scenario: str, design: S.Design, n_sim: int, seed: int = 0, effect: float = 0.0) -> dict:
    """Rates over n_sim simulated runs: PASS under the sequential rule, PASS under the naive rule (2.5% at every
    look), and the mean number of rounds the sequential rule used."""
    rng = np.random.default_rng(seed)
    seq = naive = rounds = 0
    for _ in range(n_sim):
        a, b = draw(scenario, rng, design.max_seeds, effect)
        states, naive_state, used = None, None, len(design.looks)
        for k, n in enumerate(design.looks):
            kind, p = look_p(scenario, a, b, n)
            v = _verdict(kind, p)
            if naive_state is None and v.verdict != INCONCLUSIVE:  # the naive rule stops at its first decision
                naive_state = v.verdict
            states = S.decide([v], k, design, states)
            if S.stop_reason(states, k, design) is not None and used == len(design.looks):
                used = k + 1
        seq += states["claim"].state == PASS
        naive += naive_state == PASS
        rounds += used
    return {"sequential": seq / n_sim, "naive": naive / n_sim, "rounds": rounds / n_sim}


def peek_judges(design: S.Design, n_sim: int, seed: int = 0, effects: dict | None = None) -> dict:
    """The real judges peeking as `run --until-decided` does: simulated suites (tests/analysis/nullsim.py curves)
    with max_seeds seeds, each look judging the first n seeds of every variant with the registered judges, Holm
    over the suite's three statistical claims at that look (claims.holm_family, as the report adjusts them), the
    states carried from look to look by analysis/sequential.py. Returns, per claim and for the family ("any": a
    suite with at least one PASS), the sequential and the naive (2.5% at every look, no Holm) PASS rates."""
    from moebench.analysis.claims import JUDGES, holm_family
    from moebench.config.claims import parse_claims
    from tests.analysis.nullsim import suite_records
    from tests.synth import memory_results

    def claims(i):
        a = [f"{i}.a{k}" for k in range(4)]
        pair = {"variant": a[1], "baseline": a[0]}
        return parse_claims([{"kind": "speedup_to_loss", "name": "speedup_steps", "axis": "steps", "min": 1.0,
                              **pair}, {"kind": "loss_better", "name": "loss_better", **pair},
                             {"kind": "monotonic", "name": "monotonic", "variants": a, "x": [1, 2, 4, 8]}])

    rng = np.random.default_rng(seed)
    records = [suite_records(rng, i, design.max_seeds, effects=effects) for i in range(n_sim)]
    states: dict[int, dict] = {}
    naive: dict = {}
    for k, n in enumerate(design.looks):
        rs = memory_results([r for recs in records for r in recs if r.seed < n])
        for i in range(n_sim):
            verdicts = []
            for c in claims(i):
                v = JUDGES[c.kind](c, rs)
                v.name = c.name
                if naive.get((i, c.name), INCONCLUSIVE) == INCONCLUSIVE:
                    naive[i, c.name] = v.verdict
                verdicts.append(v)
            states[i] = S.decide(holm_family(verdicts), k, design, states.get(i))
    names = sorted(states[0])
    out = {name: {"sequential": sum(states[i][name].state == PASS for i in range(n_sim)) / n_sim,
                  "naive": sum(naive[i, name] == PASS for i in range(n_sim)) / n_sim} for name in names}
    out["any"] = {"sequential": sum(any(s.state == PASS for s in states[i].values()) for i in range(n_sim)) / n_sim,
                  "naive": sum(any(naive[i, name] == PASS for name in names) for i in range(n_sim)) / n_sim}
    return out
