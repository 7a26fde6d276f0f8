"""Pure statistics shared by claims and the report: seed means, t intervals, Welch, OLS and detectable effects (the
speedup's time-to-target model lives in aft.py and speedup.py)."""
from __future__ import annotations

import math
import statistics

import numpy as np
from scipy import special
from scipy import stats as st

AXES = ("steps", "tokens", "flops", "wall")
_AXIS_COL = {"steps": "step", "tokens": "tokens", "flops": "flops", "wall": "wall"}


def t_quantile(q: float, df: float) -> float:
    """Student t quantile (scipy.special.stdtrit: the ufunc behind st.t.ppf, without its per-call overhead)."""
    return float(special.stdtrit(df, q))


def mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else float("nan")


def median(xs) -> float:
    return float(np.median(list(xs))) if len(list(xs)) else float("nan")


def log2(x: float) -> float:
    return math.log2(x)


def mean_ci(xs) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval (nan with one value: one seed gives no spread)."""
    xs = [float(x) for x in xs if x == x]
    if not xs:
        return float("nan"), float("nan")
    if len(xs) < 2:
        return xs[0], float("nan")
    sd = float(np.std(xs, ddof=1))
    return mean(xs), float(t_quantile(0.975, len(xs) - 1) * sd / math.sqrt(len(xs)))


def sd(xs) -> float:
    """Sample standard deviation (nan with fewer than two values)."""
    xs = [float(x) for x in xs if x == x]
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else float("nan")


def detectable(se: float, df: float, power: float = 0.8) -> float:
    """Smallest true effect a two-sided 95% test with this standard error detects with `power` (the usual
    (t_0.975 + t_power) x se approximation): what an INCONCLUSIVE verdict could have seen."""
    if not (se == se and df == df and df > 0):
        return float("nan")
    return float((t_quantile(0.975, df) + t_quantile(power, df)) * se)


def mde_two_sample(a: list[float], b: list[float]) -> float:
    """Minimum detectable difference of means at 80% power from the pooled sd of a and b (df = na + nb - 2)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return float("nan")
    pooled = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    return detectable(math.sqrt(pooled * (1 / na + 1 / nb)), na + nb - 2)


def welch(a: list[float], b: list[float], level: float = 0.95) -> dict:
    """Welch's t-test of mean(a) - mean(b) with its `level` CI (Welch-Satterthwaite degrees of freedom)."""
    ma, mb = mean(a), mean(b)
    diff = ma - mb
    if len(a) < 2 or len(b) < 2:  # no variance estimate: the interval is unbounded, so nothing is excluded
        return {"mean_a": ma, "mean_b": mb, "diff": diff, "ci_low": -math.inf, "ci_high": math.inf, "p": math.nan}
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # identical seeds (e.g. deterministic scores): the difference is exact
        return {"mean_a": ma, "mean_b": mb, "diff": diff, "ci_low": diff, "ci_high": diff,
                "p": 0.0 if diff else 1.0}
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = float(t_quantile(0.5 + level / 2, df)) * se
    p = float(2 * special.stdtr(df, -abs(diff) / se))  # two-sided Welch p (st.ttest_ind's, without its overhead)
    return {"mean_a": ma, "mean_b": mb, "diff": diff, "ci_low": diff - h, "ci_high": diff + h, "p": p, "df": df,
            "se": se}


def p_above(effect: float, bar: float, se: float, df: float) -> float:
    """One-sided p for H0: true effect <= bar, from a t statistic (1.0 where there is no spread to test with)."""
    if not (se == se and df == df and df > 0 and se > 0 and math.isfinite(se)):
        # no spread: the effect is exact (a hand-exact bar met on float rounding counts as met)
        return 0.0 if se == 0 and effect >= bar - 1e-9 * max(1.0, abs(bar)) else 1.0
    return float(special.stdtr(df, -(effect - bar) / se))


def holm(ps: list[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (family-wise error control over the list)."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, run = [1.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = run
    return out


def ols_slope(pts: list[tuple[float, float]]) -> dict:
    x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    r = st.linregress(x, y)
    dof = len(pts) - 2
    h = float(t_quantile(0.975, dof)) * float(r.stderr) if dof > 0 else math.inf
    return {"slope": float(r.slope), "ci_low": float(r.slope) - h, "ci_high": float(r.slope) + h,
            "p": float(r.pvalue), "se": float(r.stderr), "df": dof}


def sidebyside_ratio(sbs: dict, variant: str, baseline: str) -> dict | None:
    """tokens/s of `variant` / `baseline` from a side-by-side record (training/sidebyside.py): the median over
    rounds of each round's paired ratio (baseline step time / variant step time, timed back to back), and the
    10th-90th percentile band of those ratios (the noise band).

    Why the paired median and not the ratio of the two medians: a load change between rounds moves both halves
    of a pair alike, so pairing cancels it. Measured on the 2-core machine under load (NOTES-15.md): over
    back-to-back CI-suite runs the paired median's sd was 2.2% against 3.8% for the ratio of medians (n=11)."""
    t = (sbs or {}).get("step_time_s") or {}
    if variant not in t or baseline not in t or not t[variant] or not t[baseline]:
        return None
    a, b = t[variant], t[baseline]
    paired = sorted(y / x for x, y in zip(a, b) if x > 0)
    if not paired:
        return None
    pick = lambda q: paired[min(len(paired) - 1, int(q * len(paired)))]  # noqa: E731
    return {"ratio": statistics.median(paired), "band": [pick(0.1), pick(0.9)],
            "ratio_of_medians": statistics.median(b) / statistics.median(a), "rounds": len(paired)}
