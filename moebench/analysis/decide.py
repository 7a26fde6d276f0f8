"""The decision rules of the statistical claim kinds as pure functions on arrays of seed values.

Each rule takes arrays whose last axis is the seeds and whose leading axes are independent repetitions, and
returns verdict codes (PASS / FAIL / INCONCLUSIVE below) of the leading shape. The judge (claims/kinds.py) calls a
rule with one repetition, its measured seeds; the power simulation (analysis/power.py) calls the very same rule
with thousands of simulated repetitions. So a stated detectable effect is the power of the rule that decides, not
of an approximation of it (a pooled-sd normal shortcut overstated loss_better's power, 61% for a stated 80%, and
ignored monotonic's strict-ordering requirement, 23%).
"""
from __future__ import annotations

import numpy as np
from scipy import special

PASS, INCONCLUSIVE, FAIL = 1, 0, -1
NAMES = {PASS: "PASS", INCONCLUSIVE: "INCONCLUSIVE", FAIL: "FAIL"}


def name(code) -> str:
    return NAMES[int(code)]


def _tq(q: float, df):
    return special.stdtrit(df, q)


def welch_ci(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mean(a) - mean(b) and its Welch `level` interval, per repetition (as stats.welch: unbounded with a single
    seed on either side, exact when neither side has spread)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a.mean(-1) - b.mean(-1)
    na, nb = a.shape[-1], b.shape[-1]
    if na < 2 or nb < 2:  # no variance estimate: nothing is excluded
        return diff, np.full_like(diff, -np.inf), np.full_like(diff, np.inf)
    va, vb = a.var(-1, ddof=1) / na, b.var(-1, ddof=1) / nb
    se = np.sqrt(va + vb)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
        h = np.where(se > 0, _tq(0.5 + level / 2, df) * se, 0.0)
    return diff, diff - h, diff + h


def tri(good, bad) -> np.ndarray:
    return np.where(good, PASS, np.where(bad, FAIL, INCONCLUSIVE))


def loss_better(a: np.ndarray, b: np.ndarray, margin: float, lower_is_better: bool) -> np.ndarray:
    """Improvement of a (variant) over b (baseline), Welch 95% CI: PASS if it lies above the margin, FAIL if
    below, else INCONCLUSIVE."""
    _, lo, hi = welch_ci(a, b)
    imp_lo, imp_hi = (-hi, -lo) if lower_is_better else (lo, hi)
    return tri(imp_lo > margin, imp_hi < margin)


def loss_equivalent(a: np.ndarray, b: np.ndarray, margin: float) -> np.ndarray:
    """Two one-sided tests at 5% each: PASS if the 90% Welch CI is inside (-margin, margin), FAIL if the 95% CI is
    wholly outside it."""
    _, lo90, hi90 = welch_ci(a, b, 0.90)
    _, lo95, hi95 = welch_ci(a, b, 0.95)
    return tri((-margin < lo90) & (hi90 < margin), (lo95 > margin) | (hi95 < -margin))


def ols(xs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slope of y on xs (one x per column of y) and its 95% CI, per repetition (as stats.ols_slope)."""
    x = np.asarray(xs, float)
    dx = x - x.mean()
    sxx = float((dx ** 2).sum())
    slope = (y * dx).sum(-1) / sxx
    resid = y - y.mean(-1, keepdims=True) - slope[..., None] * dx
    dof = len(x) - 2
    if dof < 1:
        return slope, np.full_like(slope, -np.inf), np.full_like(slope, np.inf)
    h = float(_tq(0.975, dof)) * np.sqrt((resid ** 2).sum(-1) / dof / sxx)
    return slope, slope - h, slope + h


def monotonic(groups: list[np.ndarray], xs: list[float], decreasing: bool) -> np.ndarray:
    """groups: each variant's seeds in x order; xs their x (log2 x or the index). PASS if the OLS slope's 95% CI
    excludes 0 on the claimed side AND the seed means are strictly ordered; FAIL if the CI excludes 0 on the other
    side or an adjacent step goes the other way beyond noise (Welch, Bonferroni over the k - 1 steps)."""
    sgn = -1.0 if decreasing else 1.0
    y = np.concatenate([np.asarray(g, float) for g in groups], axis=-1)
    x = np.concatenate([np.full(np.shape(g)[-1], float(xi)) for g, xi in zip(groups, xs)])
    _, lo, hi = ols(x, y)
    means = [np.asarray(g, float).mean(-1) for g in groups]
    ordered = np.all([sgn * (m1 - m0) > 0 for m0, m1 in zip(means, means[1:])], axis=0)
    level = 1 - 0.05 / (len(groups) - 1)
    reversed_ = np.zeros(np.shape(lo), bool)
    for g0, g1 in zip(groups, groups[1:]):
        _, slo, shi = welch_ci(g1, g0, level)  # CI of mean(next) - mean(previous)
        reversed_ |= np.maximum(sgn * slo, sgn * shi) < 0
    trend = (sgn * lo > 0) & (sgn * hi > 0)
    against = (sgn * lo < 0) & (sgn * hi < 0)
    return tri(trend & ordered, against | reversed_)


def reversed_steps(groups: list[np.ndarray], decreasing: bool) -> list[bool]:
    """Per adjacent step of one repetition, whether it goes the other way beyond noise (the FAIL clause above)."""
    sgn = -1.0 if decreasing else 1.0
    level = 1 - 0.05 / (len(groups) - 1)
    out = []
    for g0, g1 in zip(groups, groups[1:]):
        _, slo, shi = welch_ci(np.asarray(g1, float), np.asarray(g0, float), level)
        out.append(bool(max(sgn * float(slo), sgn * float(shi)) < 0))
    return out
