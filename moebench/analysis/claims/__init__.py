"""Claim judges: each claim kind (spec in moebench.config.claims) judged on a ResultSet -> Verdict."""
from __future__ import annotations

from moebench.config.claims import ClaimBase, parse_claims

from . import kinds, multiplier  # noqa: F401 - registers the judges
from .base import FAIL, INCONCLUSIVE, JUDGES, MIN_SEEDS, PASS, Verdict, gate_reasons, tri


def judge_all(claims: list, rs) -> list[Verdict]:
    specs = [c if isinstance(c, ClaimBase) else parse_claims([c])[0] for c in claims]
    return [JUDGES[s.kind](s, rs) for s in specs]


__all__ = ["FAIL", "INCONCLUSIVE", "JUDGES", "MIN_SEEDS", "PASS", "Verdict", "gate_reasons", "judge_all", "tri"]
