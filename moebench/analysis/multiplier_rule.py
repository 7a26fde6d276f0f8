"""The compute_multiplier decision as a pure function of a sweep's points, and its simulation (null calibration and
power planning) at a given noise: the claim judge (claims/multiplier.py) and the planner call the same `decide`.

decide: plateau sizes out (lawfit.plateau), the law fitted and tested (lawfit.fit_law); INCONCLUSIVE when the
law is rejected (lack-of-fit p < 0.05), cannot be tested (no degrees of freedom left) or the target loss lies
outside a fit's measured range; else PASS if the 95% interval's low end >= min, FAIL if its high end < min.

Simulation (`Design`): two variants, `baseline` following L(C) = l_inf + a (C / C_mid)^-alpha and `variant`
reaching at C the loss the baseline reaches at M x C (a true multiplier M), `seeds` seeds per cell with normal seed
noise of sd `seed_sd` and a normal deviation of sd `tau` shared by a cell's seeds (each one number, or one per
size); `extra_variants` more variants on the baseline's law (a suite's third variant shares L_inf and adds
lack-of-fit degrees of freedom).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import lawfit
from .scaling import FitError, Point

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"


@dataclass(frozen=True)
class Decision:
    outcome: str
    why: str  # "" for a decided or interval-limited verdict; else what made it INCONCLUSIVE before the interval
    plateau: lawfit.Plateau
    law: lawfit.LawFit | None
    target: float
    interval: lawfit.Interval | None


def _in_range(law: lawfit.LawFit, variant: str, loss: float) -> bool:
    cs = [c.flops for c in law.cells if c.variant == variant]
    return float(law.fit.loss(variant, max(cs))) <= loss <= float(law.fit.loss(variant, min(cs)))


def decide(points: list[Point], baseline: str, variant: str, minimum: float, loss: float | None = None,
           l_inf="shared", reference: float | None = None, why_no_reference: str = "") -> Decision:
    kept, plat = lawfit.plateau(points, reference, why_no_reference)
    try:
        law = lawfit.fit_law(kept, l_inf)
    except FitError as err:
        return Decision(INCONCLUSIVE, f"no fit: {err}", plat, None, math.nan, None)
    if baseline not in law.fit.curves or variant not in law.fit.curves:
        return Decision(INCONCLUSIVE, f"no sweep points of {variant} or {baseline} off the plateau", plat, law,
                        math.nan, None)
    target = loss if loss is not None else lawfit.default_target(law.fit, law.cells, baseline, variant)
    iv = lawfit.multiplier_interval(law, baseline, variant, loss, minimum)  # None: the target's own error in
    if law.df <= 0:
        why = f"the law cannot be tested against seed error: {len(law.cells)} cells for as many parameters"
    elif law.rejected:
        why = (f"the law does not fit: lack of fit sum z^2 = {law.q:.3g} on {law.df} df, p = {law.p_lof:.2g} "
               f"< {lawfit.LOF_ALPHA}")
    elif not all(_in_range(law, v, target) for v in (baseline, variant)):
        why = f"loss {target:.4f} lies outside a fit's measured range (would extrapolate)"
    elif not math.isfinite(iv.multiplier) or not math.isfinite(iv.se_log):
        why = f"a fitted curve never reaches loss {target:.4f}"
    else:
        why = ""
    if why:
        return Decision(INCONCLUSIVE, why, plat, law, target, iv)
    outcome = PASS if iv.lo >= minimum * (1 - 1e-9) else FAIL if iv.hi < minimum else INCONCLUSIVE
    return Decision(outcome, "", plat, law, target, iv)


@dataclass(frozen=True)
class Design:
    flops: tuple  # training compute at each size
    seeds: int = 3
    seed_sd: float | tuple = 0.02  # nats; one per size allowed
    tau: float | tuple = 0.0  # sd of a cell's deviation from the law; one per size allowed
    l_inf: float = 1.0
    a: float = 0.6  # baseline's loss above l_inf at the geometric-mean compute
    alpha: float = 0.3
    extra_variants: int = 0  # more variants on the baseline's law: they share L_inf and add lack-of-fit df


def simulate(design: Design, multiplier: float, rng: np.random.Generator) -> list[Point]:
    c_mid = float(np.exp(np.mean(np.log(design.flops))))
    sds, taus = (x if isinstance(x, tuple) else (x,) * len(design.flops) for x in (design.seed_sd, design.tau))
    out = []
    extra = tuple((f"other{i}", 1.0) for i in range(design.extra_variants))
    for name, m in (("baseline", 1.0), ("variant", multiplier)) + extra:
        for i, (c, sd, tau) in enumerate(zip(design.flops, sds, taus)):
            mean = design.l_inf + design.a * (m * c / c_mid) ** -design.alpha + rng.normal(0, tau)
            out += [Point(name, f"s{i}", s, float(c), float(mean + rng.normal(0, sd))) for s in range(design.seeds)]
    return out


def outcomes(design: Design, multiplier: float, minimum: float = 1.0, n_sim: int = 200, seed: int = 0,
             l_inf="shared") -> dict:
    """How often each outcome comes out of `decide` over n_sim simulated sweeps (fixed RNG)."""
    rng = np.random.default_rng(seed)
    counts = {PASS: 0, FAIL: 0, INCONCLUSIVE: 0, "law_rejected": 0}
    for _ in range(n_sim):
        d = decide(simulate(design, multiplier, rng), "baseline", "variant", minimum, l_inf=l_inf)
        counts[d.outcome] += 1
        counts["law_rejected"] += bool(d.law is not None and d.law.rejected)
    return counts


def pass_rate(design: Design, multiplier: float, minimum: float = 1.0, n_sim: int = 200, seed: int = 0) -> float:
    """Fraction of simulated sweeps the judge PASSes at a true `multiplier` (false PASS when it is <= minimum)."""
    return outcomes(design, multiplier, minimum, n_sim, seed)[PASS] / n_sim


def detectable_multiplier(design: Design, minimum: float = 1.0, power: float = 0.8, n_sim: int = 200,
                          seed: int = 0, upper: float = 64.0) -> float:
    """The smallest true multiplier the judge PASSes with `power` at this design's noise; inf when none up to
    `upper` does. The pass rate is not monotone far out (a variant so much better that the target loss lies
    outside its measured range is INCONCLUSIVE), so: steps of sqrt(2) up from `minimum` to the first multiplier
    that reaches `power`, then bisection on log M inside that step, the same RNG seed at every M."""
    lo = math.log(minimum)
    hi = lo + math.log(2) / 2
    while pass_rate(design, math.exp(hi), minimum, n_sim, seed) < power:
        lo, hi = hi, hi + math.log(2) / 2
        if hi > math.log(upper):
            return math.inf
    for _ in range(5):  # log M to within 1/64 of the sqrt(2) step
        mid = (lo + hi) / 2
        if pass_rate(design, math.exp(mid), minimum, n_sim, seed) >= power:
            hi = mid
        else:
            lo = mid
    return math.exp(hi)


def design_from_law(law: lawfit.LawFit, baseline: str) -> Design:
    """The measured noise and law of a fitted sweep as a Design, for pass_rate / detectable_multiplier: the
    baseline's sizes, law and fewest seeds, each size's pooled seed sd, the cell sd beyond seed error, and the
    suite's other variants (beyond baseline and variant) on the baseline's law."""
    cells = sorted((c for c in law.cells if c.variant == baseline), key=lambda c: c.flops)
    flops = tuple(c.flops for c in cells)
    curve = law.fit.curves[baseline]
    c_mid = float(np.exp(np.mean(np.log(flops))))
    a = math.exp(curve.log_a) * (c_mid / law.fit.c0) ** -curve.alpha
    return Design(flops, seeds=min(c.n for c in cells), seed_sd=tuple(math.sqrt(c.se2 * c.n) for c in cells),
                  tau=math.sqrt(law.tau2), l_inf=law.fit.l_inf, a=a, alpha=curve.alpha,
                  extra_variants=max(0, len(law.fit.curves) - 2))


def plateau_reference(rs) -> tuple[float | None, str]:
    """The validation split's unigram cross-entropy for the plateau check, and where it came from: the runs'
    summary.json (`unigram_ce_val`), else the corpus if its token shards are cached, else None and why."""
    runs = rs.runs[rs.runs["status"] == "ok"]
    vals = runs["unigram_ce_val"].dropna().astype(float) if "unigram_ce_val" in runs else []
    if len(runs) and len(vals) == len(runs):
        return float(np.median(vals)), "from the runs' summary.json"
    corpus = rs.suite.get("corpus") or {}
    if corpus.get("name") and corpus.get("tokenizer"):
        from moebench.data import cached_unigram_ce
        from moebench.errors import UserError

        try:
            ce = cached_unigram_ce(str(corpus["name"]), str(corpus["tokenizer"]))
        except UserError:  # an unwritable cache: the check is said to be unavailable instead
            ce = None
        if ce is not None:
            return ce, "computed from the cached corpus (these results predate unigram_ce_val)"
    return None, "the results carry no unigram_ce_val and the corpus is not in the token cache"
