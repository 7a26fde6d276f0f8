"""The compute_multiplier judge: a sweep's fitted loss-vs-compute law (analysis/lawfit.py) read at one loss, by the
decision of analysis/multiplier_rule.py (the planner simulates the same function).

Sizes still on the initial plateau are left out; the law is tested against the seed errors (lack of fit) and
INCONCLUSIVE when it is rejected, with the multiplier measured at each size without a fit; else PASS if the 95%
interval of C_baseline(L) / C_variant(L) (cell deviations from the law carried in as a random effect) lies at or
above `min`, FAIL if below, INCONCLUSIVE otherwise. The loss must lie inside both fits' measured range.
"""
from __future__ import annotations

import math

from moebench.analysis import lawfit, multiplier_rule, scaling
from moebench.config.claims import ComputeMultiplier
from moebench.io import split_key

from .base import INCONCLUSIVE, JUDGES, Verdict, gate_reasons


def _verdict(c: ComputeMultiplier, rs, outcome: str, numbers: dict, reason: str, rule: str) -> Verdict:
    """base.verdict's gates, applied to every size's runs of the two variants (run keys variant@size)."""
    keys = sorted(k for k in rs.runs["variant"].unique() if split_key(k)[0] in (c.variant, c.baseline)
                  and split_key(k)[1] is not None)
    gates = gate_reasons(rs, keys, c.min_tokens_per_param) if keys else ["no sweep runs of the compared variants"]
    if gates:
        numbers = {**numbers, "ungated_verdict": outcome}
        reason = "; ".join(gates) + f" (numbers alone: {outcome}: {reason})"
        outcome = INCONCLUSIVE
    return Verdict(c.label(), c.kind, c.compared(), outcome, numbers, reason, rule, c.description, c.source)


def direct_text(rows: list) -> str:
    return ", ".join(f"{r['size']} {r['multiplier']:.3g}x" if r["multiplier"] is not None else f"{r['size']} n/a"
                     for r in rows)


def rule_text(c: ComputeMultiplier, l_inf) -> str:
    return (f"sizes where a variant's mean final loss is not {lawfit.PLATEAU_MARGIN} nats below the validation "
            f"split's unigram cross-entropy are left out (initial plateau); fit L(C) = L_inf + A C^-alpha per variant "
            f"({'shared' if l_inf == 'shared' else 'fixed'} L_inf) to the (variant, size) cell means by weighted "
            f"least squares; lack of fit: sum over cells of squared z (residual / seed standard error, seed variance "
            f"pooled over variants per size) on cells - parameters df, law rejected at p < {lawfit.LOF_ALPHA} -> "
            f"INCONCLUSIVE with the per-size measured multipliers; multiplier = C_{c.baseline}(L) / C_{c.variant}(L) at "
            f"L = {'%g' % c.loss if c.loss else 'the higher of the two fitted losses at their largest size'}; 95% "
            f"interval by the delta method with a (variant, size) random effect for deviations from the law "
            f"(DerSimonian-Laird variance, Knapp-Hartung scaling, t quantile); PASS if its lower end >= {c.min:g}, FAIL "
            f"if its upper end < {c.min:g}, else INCONCLUSIVE; L must lie inside both fits' measured range")


@JUDGES.register("compute_multiplier")
def judge_compute_multiplier(c: ComputeMultiplier, rs) -> Verdict:
    l_inf = (rs.suite.get("sweep") or {}).get("l_inf", "shared")
    rule = rule_text(c, l_inf)
    points = scaling.sweep_points(rs, c.metric)
    ref, source = multiplier_rule.plateau_reference(rs) if c.metric.endswith("loss") else (None, "")
    if not c.metric.endswith("loss"):  # the unigram reference is in nats/token, not bits/byte
        source = f"the unigram reference is in nats/token and the claim's metric is {c.metric}"
    d = multiplier_rule.decide(points, c.baseline, c.variant, c.min, c.loss, l_inf, ref, source)
    kept = [p for p in points if p.size not in d.plateau.excluded]
    direct = scaling.direct_multipliers(kept, c.baseline, c.variant)
    plat = {"reference_unigram_ce": ref, "reference_source": source if ref is not None else None,
            "excluded_sizes": list(d.plateau.excluded), "note": d.plateau.note,
            "cells_on_plateau": [{"variant": v, "size": s, "loss": m} for v, s, m in d.plateau.cells]}
    numbers = {"required_min": c.min, "plateau": plat, "direct_per_size": direct}
    lead = f"{d.plateau.note}; " if d.plateau.excluded or ref is None else ""
    if d.law is None:
        return _verdict(c, rs, INCONCLUSIVE, numbers, lead + d.why, rule)
    law, iv = d.law, d.interval
    numbers.update({
        "target_loss": d.target, "l_inf": law.fit.l_inf, "l_inf_mode": "shared" if law.fit.shared else "fixed",
        "alpha": {v: law.fit.curves[v].alpha for v in (c.variant, c.baseline) if v in law.fit.curves},
        "lack_of_fit": {"sum_z2": law.q, "df": law.df, "p": law.p_lof, "rejected": law.rejected,
                        "seed_df": law.nu, "cell_sd": math.sqrt(law.tau2),
                        "z": [{"variant": v, "size": s, "z": z} for v, s, z in law.z]}})
    if iv is not None and math.isfinite(iv.multiplier):
        numbers.update({"multiplier": iv.multiplier, "ci95": [iv.lo, iv.hi], "interval_df": iv.df,
                        "p_one_sided": iv.p_below})
    fit_text = (f"lack of fit sum z^2 = {law.q:.3g} on {law.df} df (p = {law.p_lof:.2g}), cell sd beyond seed error "
                f"{math.sqrt(law.tau2):.3g}")
    measured = f"measured per size (no fit): {direct_text(direct)}"
    if d.why:
        return _verdict(c, rs, INCONCLUSIVE, numbers, f"{lead}{d.why}; {fit_text}; {measured}", rule)
    reason = (f"{lead}compute multiplier {iv.multiplier:.3g}x at loss {d.target:.4f}, 95% CI [{iv.lo:.3g}, "
              f"{iv.hi:.3g}] vs required {c.min:g}; {fit_text}; {measured}")
    if d.outcome == INCONCLUSIVE:
        reason += f"; these seeds and sizes resolve the multiplier only to within [{iv.lo:.3g}, {iv.hi:.3g}]"
    return _verdict(c, rs, d.outcome, numbers, reason, rule)
