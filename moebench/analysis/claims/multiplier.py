"""The compute_multiplier judge: a sweep's fitted loss-vs-compute curves (analysis/scaling.py) read at one loss.

PASS if the bootstrap 95% interval of C_baseline(L) / C_variant(L) lies at or above `min`, FAIL if it lies below,
else INCONCLUSIVE with the interval (what these seeds and sizes can resolve). The loss must be one both fitted
curves reach inside their measured compute range: a multiplier read off an extrapolation is INCONCLUSIVE.
"""
from __future__ import annotations

from moebench.analysis import scaling
from moebench.config.claims import ComputeMultiplier
from moebench.io import split_key

from .base import INCONCLUSIVE, JUDGES, Verdict, gate_reasons, tri


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


def _direct(points, c: ComputeMultiplier) -> tuple[list, str]:
    rows = scaling.direct_multipliers(points, c.baseline, c.variant)
    text = ", ".join(f"{r['size']} {r['multiplier']:.3g}x" if r["multiplier"] is not None else f"{r['size']} n/a"
                     for r in rows)
    return rows, text


@JUDGES.register("compute_multiplier")
def judge_compute_multiplier(c: ComputeMultiplier, rs) -> Verdict:
    l_inf = (rs.suite.get("sweep") or {}).get("l_inf", "shared")
    rule = (f"fit L(C) = L_inf + A C^-alpha per variant ({'shared' if l_inf == 'shared' else 'fixed'} L_inf, Huber "
            f"in log space) on every finished seed of every size; multiplier = C_{c.baseline}(L) / C_{c.variant}(L) "
            f"at L = {'%g' % c.loss if c.loss else 'the higher of the two fitted losses at their largest size'}; "
            f"bootstrap over seeds "
            f"({c.n_boot} resamples, fixed RNG), 95% interval; PASS if its lower end >= {c.min:g}, FAIL if its upper "
            f"end < {c.min:g}, else INCONCLUSIVE; L must lie inside both fits' measured range")
    points = scaling.sweep_points(rs, c.metric)
    try:
        fit = scaling.fit(points, l_inf)
    except scaling.FitError as err:
        return _verdict(c, rs, INCONCLUSIVE, {}, f"no fit: {err}", rule)
    if c.variant not in fit.curves or c.baseline not in fit.curves:
        return _verdict(c, rs, INCONCLUSIVE, {}, f"no sweep points of {c.variant} or {c.baseline}", rule)
    # default: the baseline's loss at its largest size, or the variant's there when higher (a variant worse
    # than the baseline never reaches the baseline's best loss inside its range, so that reading would extrapolate)
    target = c.loss or max(float(fit.loss(v, max(p.flops for p in points if p.variant == v)))
                           for v in (c.baseline, c.variant))
    direct, direct_text = _direct(points, c)
    numbers = {"target_loss": target, "l_inf": fit.l_inf, "l_inf_mode": "shared" if fit.shared else "fixed",
               "alpha": {v: fit.curves[v].alpha for v in (c.variant, c.baseline)}, "required_min": c.min,
               "direct_per_size": direct}
    outside = [v for v in (c.variant, c.baseline) if not scaling.covered(fit, points, v, target)]
    if outside:
        return _verdict(c, rs, INCONCLUSIVE, numbers, f"loss {target:.4f} lies outside the measured range of "
                        f"{', '.join(outside)}'s fit (would extrapolate); measured per size: {direct_text}", rule)
    m = scaling.multiplier(fit, c.baseline, c.variant, target)
    samples = [scaling.multiplier(b, c.baseline, c.variant, target)
               for b in scaling.bootstrap(points, fit, l_inf, c.n_boot)]
    lo, hi = scaling.interval(samples)
    undefined = sum(1 for x in samples if x != x)
    below = sum(1 for x in samples if not x >= c.min * (1 - 1e-9))  # nan (undefined) counts against a PASS
    numbers.update({"multiplier": m, "ci95": [lo, hi], "n_boot": c.n_boot, "undefined_resamples": undefined,
                    "p_one_sided": (below + 1) / (len(samples) + 1)})
    outcome = tri(lo >= c.min * (1 - 1e-9), hi < c.min)
    reason = (f"compute multiplier {m:.3g}x at loss {target:.4f}, 95% CI [{lo:.3g}, {hi:.3g}] vs required "
              f"{c.min:g}; measured per size (no fit): {direct_text}")
    if outcome == INCONCLUSIVE:
        reason += f"; these seeds and sizes resolve the multiplier only to within [{lo:.3g}, {hi:.3g}]"
    if undefined > 0.025 * len(samples):  # resamples where neither curve reaches L: the interval is not trusted
        outcome = INCONCLUSIVE
        reason += f"; {undefined}/{len(samples)} resamples reach L with neither curve"
    return _verdict(c, rs, outcome, numbers, reason, rule)
