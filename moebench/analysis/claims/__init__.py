"""Claim judges: each claim kind (spec in moebench.config.claims) judged on a ResultSet -> Verdict."""
from __future__ import annotations

from moebench.analysis import stats
from moebench.config.claims import ClaimBase, parse_claims

from . import kinds, multiplier  # noqa: F401 - registers the judges
from .base import FAIL, INCONCLUSIVE, JUDGES, MIN_SEEDS, PASS, Verdict, gate_reasons, tri
from .detectable import state_detectable


# the statistical kinds whose false PASS the report controls as one family (the mechanistic ones stay outside)
FAMILY = ("speedup_to_loss", "loss_better", "monotonic", "compute_multiplier")
ALPHA_ONE_SIDED = 0.025  # PASS reads the low end of a two-sided 95% interval


def judge_all(claims: list, rs) -> list[Verdict]:
    specs = [c if isinstance(c, ClaimBase) else parse_claims([c])[0] for c in claims]
    return state_detectable(specs, holm_family([JUDGES[s.kind](s, rs) for s in specs]), rs)


def holm_family(verdicts: list[Verdict]) -> list[Verdict]:
    """Holm over the one-sided p-values of a report's statistical claims: each verdict carries p_one_sided (raw)
    and p_holm (adjusted); a PASS whose adjusted p exceeds ALPHA_ONE_SIDED becomes INCONCLUSIVE, saying why."""
    fam = [v for v in verdicts if v.kind in FAMILY and "p_one_sided" in v.numbers]
    for v, adj in zip(fam, stats.holm([float(v.numbers["p_one_sided"]) for v in fam])):
        v.numbers["p_holm"] = adj
        v.numbers["holm_family_size"] = len(fam)
        if v.verdict == PASS and adj > ALPHA_ONE_SIDED:
            v.numbers["verdict_before_holm"] = PASS
            v.verdict = INCONCLUSIVE
            v.reason += (f"; PASS alone (one-sided p={v.numbers['p_one_sided']:.3g}) but not after Holm over the "
                         f"report's {len(fam)} statistical claims (adjusted p={adj:.3g} > {ALPHA_ONE_SIDED})")
    return verdicts


__all__ = ["FAIL", "INCONCLUSIVE", "JUDGES", "MIN_SEEDS", "PASS", "Verdict", "gate_reasons", "holm_family", "judge_all", "tri"]
