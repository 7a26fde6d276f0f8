"""The machinery under the claim judges: Verdict, the judge registry and the gates every kind applies.

Gates (each makes the verdict INCONCLUSIVE and is named in the reason; the verdict the numbers alone would give is
kept in numbers["ungated_verdict"]):
  - any run of a compared variant failed or is incomplete
  - fewer than MIN_SEEDS finished seeds for a compared variant
  - a finished run saw fewer than `min_tokens_per_param` (default 1.0) training tokens per total parameter
  - a finished run trained more than `max_epochs` (default 4) passes over its corpus (repeated data)
  - a quality claim's variant has finished seeds whose values are all identical (zero spread would make any
    difference exact: a seed that randomises nothing is a bug, not evidence)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
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


SEEDS_IDENTICAL = "seeds identical: a seed that randomises nothing is a bug, not evidence"


def verdict(spec, rs, outcome: str, numbers: dict, reason: str, rule: str, spread: str | None = None) -> Verdict:
    """Apply the gates on top of the kind's own outcome; `spread` names the column whose seed spread the kind's
    statistics rely on (identical seeds there make the verdict INCONCLUSIVE)."""
    gates = gate_reasons(rs, spec.compared(), spec.min_tokens_per_param, spec.max_epochs)
    same = identical_seeds(rs, spec.compared(), spread) if spread else []
    if same:
        gates.append(f"{SEEDS_IDENTICAL} ({', '.join(same)} {spread})")
    if gates:
        numbers = {**numbers, "ungated_verdict": outcome}
        reason = "; ".join(gates) + f" (numbers alone: {outcome}: {reason})"
        outcome = INCONCLUSIVE
    return Verdict(spec.label(), spec.kind, spec.compared(), outcome, numbers, reason, rule, spec.description,
                   spec.source)


def no_data(spec, rs, what: str) -> Verdict:
    return verdict(spec, rs, INCONCLUSIVE, {}, f"no data: {what}", "needs finished runs")


def identical_seeds(rs, variants: list[str], column: str) -> list[str]:
    """Variants with two or more finished seeds whose `column` values are all equal."""
    out = []
    for v in variants:
        xs = rs.seed_values(v, column)
        if len(xs) > 1 and max(xs) == min(xs):
            out.append(v)
    return out


def gate_reasons(rs, variants: list[str], min_tpp: float, max_epochs: float | None = None) -> list[str]:
    out, few, reps = [], [], []
    for v in variants:
        status = rs.run_values(v, "status", ok=False)
        if not len(status):
            out.append(f"no runs of {v}")
            continue
        seeds, fstep, freason = (rs.run_values(v, k, ok=False) for k in ("seed", "failure_step", "failure_reason"))
        for i in np.flatnonzero(status != "ok"):
            why = f" at step {int(fstep[i])}" if pd.notna(fstep[i]) else ""
            why += f": {freason[i]}" if isinstance(freason[i], str) else ""
            out.append(f"{v}/seed-{seeds[i]} {status[i]}{why}")
        n_ok = int((status == "ok").sum())
        if n_ok < MIN_SEEDS:
            out.append(f"{v} has {n_ok} finished seed(s), need {MIN_SEEDS}")
        tpp = rs.seed_values(v, "tokens_per_param")
        if tpp and min(tpp) < min_tpp:
            few.append(f"{v} {min(tpp):.3g}")
        ep = rs.seed_values(v, "epochs")
        if max_epochs is not None and ep and max(ep) > max_epochs:
            reps.append(f"{v} {max(ep):.3g}")
    if reps:
        out.append(f"data repeated: more than max_epochs {max_epochs:g} passes over the corpus: {', '.join(reps)} "
                   f"(beyond ~4 epochs repeated tokens are worth less than fresh ones, Muennighoff et al. 2023)")
    if few:  # one clause for all variants: at small scale this gate usually hits every one of them
        out.append(f"too few tokens per parameter (< {min_tpp:g}): {', '.join(few)}")
    return out
