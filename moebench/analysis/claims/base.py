"""The machinery under the claim judges: Verdict, the judge registry and the gates every kind applies.

Gates (each makes the verdict INCONCLUSIVE and is named in the reason; the verdict the numbers alone would give is
kept in numbers["ungated_verdict"]):
  - any run of a compared variant failed or is incomplete
  - fewer than MIN_SEEDS finished seeds for a compared variant
  - a finished run saw fewer than `min_tokens_per_param` (default 1.0) training tokens per total parameter
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from moebench.registry import Registry

MIN_SEEDS = 2
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass
class Verdict:
    name: str
    kind: str
    variants: list[str]
    verdict: str
    numbers: dict = field(default_factory=dict)
    reason: str = ""
    rule: str = ""
    description: str = ""
    source: str = ""


# kind name -> judge(spec, rs) -> Verdict; the specs live in moebench.config.claims under the same names
JUDGES: Registry[Callable] = Registry("claim judge")


def tri(all_good: bool, all_bad: bool) -> str:
    return PASS if all_good else FAIL if all_bad else INCONCLUSIVE


def verdict(spec, rs, outcome: str, numbers: dict, reason: str, rule: str) -> Verdict:
    """Apply the gates on top of the kind's own outcome."""
    gates = gate_reasons(rs, spec.compared(), spec.min_tokens_per_param)
    if gates:
        numbers = {**numbers, "ungated_verdict": outcome}
        reason = "; ".join(gates) + f" (numbers alone: {outcome}: {reason})"
        outcome = INCONCLUSIVE
    return Verdict(spec.label(), spec.kind, spec.compared(), outcome, numbers, reason, rule, spec.description,
                   spec.source)


def no_data(spec, rs, what: str) -> Verdict:
    return verdict(spec, rs, INCONCLUSIVE, {}, f"no data: {what}", "needs finished runs")


def gate_reasons(rs, variants: list[str], min_tpp: float) -> list[str]:
    out, few = [], []
    for v in variants:
        runs = rs.runs[rs.runs["variant"] == v]
        if not len(runs):
            out.append(f"no runs of {v}")
            continue
        for _, r in runs[runs["status"] != "ok"].iterrows():
            why = f" at step {int(r['failure_step'])}" if pd.notna(r.get("failure_step")) else ""
            why += f": {r['failure_reason']}" if isinstance(r.get("failure_reason"), str) else ""
            out.append(f"{v}/seed-{r['seed']} {r['status']}{why}")
        ok = runs[runs["status"] == "ok"]
        if len(ok) < MIN_SEEDS:
            out.append(f"{v} has {len(ok)} finished seed(s), need {MIN_SEEDS}")
        tpp = ok["tokens_per_param"].dropna()
        if len(tpp) and tpp.min() < min_tpp:
            few.append(f"{v} {tpp.min():.3g}")
    if few:  # one clause for all variants: at small scale this gate usually hits every one of them
        out.append(f"too few tokens per parameter (< {min_tpp:g}): {', '.join(few)}")
    return out
