"""The machinery under claims.py: Verdict, the claim-kind registry, the base model and the gates every kind applies.

Gates (each makes the verdict INCONCLUSIVE and is named in the reason; the verdict the numbers alone would give is
kept in numbers["ungated_verdict"]):
  - any run of a compared variant failed or is incomplete
  - fewer than MIN_SEEDS finished seeds for a compared variant
  - a finished run saw fewer than `min_tokens_per_param` (default 1.0) training tokens per total parameter
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

MIN_SEEDS = 2
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
CLAIM_KINDS: dict[str, type["ClaimBase"]] = {}
_METRICS = ("val_loss", "val_ppl", "val_bpb", "test_loss", "test_ppl", "test_bpb")


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


def claim_kind(name: str) -> Callable[[type], type]:
    def register(cls: type) -> type:
        declared = cls.model_fields["kind"].annotation
        if getattr(declared, "__args__", None) != (name,):
            raise TypeError(f"{cls.__name__}.kind must be Literal[{name!r}] to register as {name!r}")
        if name in CLAIM_KINDS:
            raise TypeError(f"claim kind {name!r} registered twice")
        CLAIM_KINDS[name] = cls
        return cls
    return register


def check_metric_name(m: str) -> str:
    parts = m.split(".")
    if m in _METRICS or (len(parts) == 3 and parts[0] == "lm_eval" and all(parts)):
        return m
    raise ValueError(f"metric must be one of {', '.join(_METRICS)} or lm_eval.<task>.<metric>, got {m!r}")


class ClaimBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Optional[str] = None
    description: str = ""
    source: str = ""  # citation, e.g. "Fedus et al. 2021, Fig. 4"
    min_tokens_per_param: float = Field(1.0, ge=0)

    def compared(self) -> list[str]:
        return [v for v in (getattr(self, "variant", None), getattr(self, "baseline", None)) if v]

    def label(self) -> str:
        vs = self.compared()
        return self.name or f"{self.kind}: " + " vs ".join(vs)

    def no_data(self, rs, what: str) -> Verdict:
        return self.verdict(rs, INCONCLUSIVE, {}, f"no data: {what}", "needs finished runs")

    def verdict(self, rs, verdict: str, numbers: dict, reason: str, rule: str) -> Verdict:
        """Apply the gates on top of the kind's own verdict."""
        gates = gate_reasons(rs, self.compared(), self.min_tokens_per_param)
        if gates:
            numbers = {**numbers, "ungated_verdict": verdict}
            reason = "; ".join(gates) + f" (numbers alone: {verdict}: {reason})"
            verdict = INCONCLUSIVE
        return Verdict(self.label(), self.kind, self.compared(), verdict, numbers, reason, rule,
                       self.description, self.source)


class PairClaim(ClaimBase):
    variant: str
    baseline: str


class MetricClaim(ClaimBase):
    metric: str = "val_loss"

    @field_validator("metric")
    @classmethod
    def check_metric(cls, m: str) -> str:
        return check_metric_name(m)


def tri(all_good: bool, all_bad: bool) -> str:
    return PASS if all_good else FAIL if all_bad else INCONCLUSIVE


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
