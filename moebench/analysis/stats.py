"""Pure statistics shared by claims and the report: seed means, t intervals, Welch, OLS, curve interpolation."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
from scipy import stats as st

AXES = ("steps", "tokens", "flops", "wall")
_AXIS_COL = {"steps": "step", "tokens": "tokens", "flops": "flops", "wall": "wall"}


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
    return mean(xs), float(st.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs)))


def welch(a: list[float], b: list[float]) -> dict:
    """Welch's t-test of mean(a) - mean(b) with its 95% CI (Welch-Satterthwaite degrees of freedom)."""
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
    h = float(st.t.ppf(0.975, df)) * se
    p = float(st.ttest_ind(a, b, equal_var=False).pvalue)
    return {"mean_a": ma, "mean_b": mb, "diff": diff, "ci_low": diff - h, "ci_high": diff + h, "p": p, "df": df}


def ols_slope(pts: list[tuple[float, float]]) -> dict:
    x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    r = st.linregress(x, y)
    dof = len(pts) - 2
    h = float(st.t.ppf(0.975, dof)) * float(r.stderr) if dof > 0 else math.inf
    return {"slope": float(r.slope), "ci_low": float(r.slope) - h, "ci_high": float(r.slope) + h,
            "p": float(r.pvalue)}


def _ok_seeds(rs, variant: str) -> list[int]:
    return [int(s) for s in rs.ok_runs(variant)["seed"]]


def seed_curves(rs, variant: str) -> list[pd.DataFrame]:
    c = rs.curves
    return [c[(c["variant"] == variant) & (c["seed"] == s)].dropna(subset=["val_loss"]).sort_values("step")
            for s in _ok_seeds(rs, variant)]


def mean_curve(rs, variant: str) -> pd.DataFrame:
    """Mean over finished seeds at each eval step that every one of them reached (a partial step would bias it)."""
    curves = [c for c in seed_curves(rs, variant) if len(c)]
    if not curves:
        return pd.DataFrame(columns=["step", "tokens", "flops", "wall", "val_loss"])
    both = pd.concat(curves)
    g = both.groupby("step")
    keep = g["seed"].nunique() == len(curves)
    m = g[["tokens", "flops", "wall", "val_loss"]].mean()[keep]
    return m.reset_index().sort_values("step").reset_index(drop=True)


def reach_point(curve: pd.DataFrame, target: float) -> dict | None:
    """Each axis's value where the curve first gets to <= target, interpolated linearly between eval points."""
    rows = list(curve.itertuples(index=False))
    for i, r in enumerate(rows):
        if r.val_loss <= target:
            if i == 0:  # already there at the first eval: report that point, an upper bound (never flatters)
                return {ax: float(getattr(r, _AXIS_COL[ax])) for ax in AXES}
            p = rows[i - 1]
            frac = (p.val_loss - target) / (p.val_loss - r.val_loss)
            a, b = ({ax: float(getattr(row, _AXIS_COL[ax])) for ax in AXES} for row in (p, r))
            return {ax: a[ax] + frac * (b[ax] - a[ax]) for ax in AXES}
    return None


def final_axis_values(rs, variant: str) -> dict:
    """Where a run ends on each axis, mean over finished seeds; wall is training time (the curves' clock)."""
    ok = rs.ok_runs(variant)
    tr = rs.train[rs.train["variant"] == variant]
    walls = []
    for _, r in ok.iterrows():
        w = tr[tr["seed"] == r["seed"]]["wall"].dropna()
        walls.append(float(w.max()) if len(w) else float(r["wall_time_s"]))
    return {"steps": mean(ok["steps"].astype(float)), "tokens": mean(ok["tokens"].astype(float)),
            "flops": mean((ok["tokens"] * ok["train_flops_per_token"]).astype(float)), "wall": mean(walls)}


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
