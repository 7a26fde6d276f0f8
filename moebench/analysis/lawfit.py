"""The scaling law fitted to cell means, tested against the seed errors, with lack of fit carried into the compute
multiplier's interval. A (variant, size) cell is the seeds of one variant at one size.

Why not the seed bootstrap of analysis/scaling.py: a deviation that belongs to a whole cell (the law is only an
approximation, a size is mid-escape from the initial plateau, a learning rate suits one size better) is the same
in every seed of the cell, so resampling seeds cannot see it; with cell deviations as large as the seed sd the seed
bootstrap PASSed a null multiplier about 1 time in 5 (tests/analysis/test_lawfit.py measures it).

Model: cell mean ybar_vs = L_v(C_vs) + u_vs + e_vs, with L_v(C) = L_inf + A_v (C/C0)^-alpha_v (L_inf shared by the
variants or fixed), e_vs ~ N(0, s2_s / n_vs) the seed error (s2_s: the seed variance pooled over the variants at
size s; a cell's own 2-degree-of-freedom variance at 3 seeds would make every z a t_2, whose square has no mean)
and u_vs ~ N(0, tau2) the cell's deviation from the law (a random effect).

  - Lack of fit: Q = sum over cells of (ybar - fitted)^2 / (s2_s / n) at the weighted least-squares fit (weights
    n / s2_s); under the law Q ~ chi2 on df = cells - parameters. Its p-value reads Q / df against F(df, nu), nu the
    pooled seed-variance degrees of freedom, because the seed errors are themselves estimated (the classical
    lack-of-fit F test, Draper & Smith ch. 2).
  - tau2: the moment (DerSimonian-Laird) estimate max(0, (Q - df) / (tr W - tr((J'WJ)^-1 J'W^2 J))) from the
    same fit, J the Jacobian of the fitted cell means; the law is refitted with weights 1 / (s2_s / n + tau2).
  - Interval of log M = log C_baseline(L) - log C_variant(L) (target L included when it is read from the fit): the
    delta method on that refit's covariance, scaled by max(1, Q* / df) (Knapp & Hartung 2003: Q* the weighted
    residual sum at the refit), with a t quantile on min(df, the seed part's Satterthwaite df) degrees of freedom;
    95% two-sided, PASS reading its low end (2.5% one-sided). Null calibration: tests/analysis/test_lawfit.py and benchmarks/calibrate_multiplier.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st
from scipy.optimize import least_squares

from .scaling import ALPHA_BOUNDS, Fit, FitError, Curve, Point

PLATEAU_MARGIN = 0.05  # nats below the unigram cross-entropy a size's mean must reach to count as off the plateau
LOF_ALPHA = 0.05  # the law is rejected when the lack-of-fit p-value is below this
STARTS = 1  # optimiser runs from the best grid starts (tests compare with more)


@dataclass(frozen=True)
class Cell:
    variant: str
    size: str
    flops: float  # mean training FLOPs of its runs
    mean: float  # mean final loss over its seeds
    n: int  # seeds
    var: float  # the cell's own seed variance (nan at 1 seed)
    se2: float  # squared standard error of the mean: the size's pooled seed variance / n


@dataclass(frozen=True)
class Plateau:
    reference: float | None  # the validation split's unigram cross-entropy (nats/token); None: unavailable
    excluded: tuple  # sizes left out of the fit
    cells: tuple  # (variant, size, mean loss) of every cell not PLATEAU_MARGIN below the reference
    note: str  # what was checked, in words


@dataclass(frozen=True)
class LawFit:
    fit: Fit  # the law with weights 1 / (seed error + tau2): what the multiplier reads
    cells: tuple  # the Cells it was fitted to
    cov: np.ndarray  # covariance of theta (Knapp-Hartung scaled)
    q: float  # lack-of-fit statistic: sum of squared z at the seed-error-weighted fit
    df: int  # cells - parameters
    nu: int  # degrees of freedom of the pooled seed variances
    p_lof: float  # P(F(df, nu) >= q / df); nan when df = 0
    tau2: float  # the cell-deviation variance estimate
    z: tuple  # (variant, size, z) per cell at the seed-error-weighted fit
    sens: np.ndarray  # d theta / d cell means at the refit: (J'WJ)^-1 J'W
    se2: np.ndarray  # per cell: squared seed standard error
    nu_cell: np.ndarray  # per cell: degrees of freedom of its size's pooled seed variance
    kh: float  # the Knapp-Hartung factor max(1, Q* / df) the covariance carries

    @property
    def rejected(self) -> bool:
        return self.df > 0 and self.p_lof < LOF_ALPHA


def cell_table(points: list[Point]) -> list[Cell]:
    """One Cell per (variant, size); seed variance pooled over the variants at each size."""
    by: dict = {}
    for p in points:
        by.setdefault((p.variant, p.size), []).append(p)
    ss: dict = {}
    for (v, s), ps in by.items():
        y = np.array([p.loss for p in ps])
        a = ss.setdefault(s, [0.0, 0])
        a[0] += float(((y - y.mean()) ** 2).sum())
        a[1] += len(y) - 1
    out = []
    for (v, s), ps in sorted(by.items()):
        y = np.array([p.loss for p in ps])
        pooled = ss[s][0] / ss[s][1] if ss[s][1] else math.nan
        out.append(Cell(v, s, float(np.mean([p.flops for p in ps])), float(y.mean()), len(y),
                        float(y.var(ddof=1)) if len(y) > 1 else math.nan, pooled / len(y)))
    return out


def pure_error_df(points: list[Point]) -> int:
    return sum(_size_df(points).values())


def _size_df(points: list[Point]) -> dict:
    """size -> degrees of freedom of its pooled seed variance (seeds - 1, summed over the variants)."""
    n: dict = {}
    for p in points:
        n[(p.variant, p.size)] = n.get((p.variant, p.size), 0) + 1
    out: dict = {}
    for (_, s), k in n.items():
        out[s] = out.get(s, 0) + k - 1
    return out


def plateau(points: list[Point], reference: float | None, why_missing: str = "") -> tuple[list[Point], Plateau]:
    """Leave out every size where some variant's mean loss is not PLATEAU_MARGIN below the unigram cross-entropy:
    such runs have not left the initial plateau and carry no scaling information."""
    if reference is None:
        return points, Plateau(None, (), (), f"plateau check unavailable: {why_missing or 'no unigram reference'}")
    on = tuple((c.variant, c.size, c.mean) for c in cell_table(points) if c.mean > reference - PLATEAU_MARGIN)
    sizes = tuple(sorted({s for _, s, _ in on}))
    note = (f"a size is left out when a variant's mean final loss there is not {PLATEAU_MARGIN} nats below the "
            f"validation split's unigram cross-entropy {reference:.4f} (nats/token; add-one smoothed unigram "
            f"of the training split): " + (f"left out {', '.join(sizes)}" if sizes else "every size is off it"))
    return [p for p in points if p.size not in sizes], Plateau(reference, sizes, on, note)


def _design(cells, variants):
    idx = np.array([variants.index(c.variant) for c in cells])
    return idx, np.array([c.flops for c in cells]), np.array([c.mean for c in cells])


def _pred_jac(theta, idx, x, n_var, fixed):
    l_inf = theta[0] if fixed is None else fixed
    ab = theta[-2 * n_var:].reshape(n_var, 2)
    e = np.exp(ab[idx, 0] - ab[idx, 1] * x)
    jac = np.zeros((len(x), len(theta)))
    off = 0 if fixed is not None else 1
    if fixed is None:
        jac[:, 0] = 1.0
    rows = np.arange(len(x))
    jac[rows, off + 2 * idx] = e
    jac[rows, off + 2 * idx + 1] = -x * e
    return l_inf + e, jac


def _wls(theta0, idx, x, y, w, n_var, fixed, lb, ub):
    sw = np.sqrt(w)

    def res(th):
        return sw * (_pred_jac(th, idx, x, n_var, fixed)[0] - y)

    def jac(th):
        return sw[:, None] * _pred_jac(th, idx, x, n_var, fixed)[1]

    theta0 = np.clip(theta0, lb + 1e-12, ub - 1e-12)
    return least_squares(res, theta0, jac=jac, bounds=(lb, ub), method="trf").x


def _starts(idx, x, y, w, n_var, fixed, keep: int = 1):
    """Starting points: per L_inf on a grid, each variant's weighted line of log(L - L_inf) on log C (weights
    w (L - L_inf)^2: the delta method's); the `keep` with the smallest weighted squared error (one optimiser run
    each: the fit is not convex in L_inf, and a grid is cheaper than many optimiser runs)."""
    lows = [fixed] if fixed is not None else list(y.min() * np.linspace(0.0, 0.97, 12))
    out = []
    for l_inf in lows:
        ab = []
        for v in range(n_var):
            m = idx == v
            d = np.maximum(y[m] - l_inf, 1e-9)
            xs, ys, ws = x[m], np.log(d), w[m] * d * d
            slope, icpt = np.polyfit(xs, ys, 1, w=np.sqrt(ws)) if np.ptp(xs) > 0 else (0.0, float(ys.mean()))
            ab += [icpt, float(np.clip(-slope, *ALPHA_BOUNDS))]
        th = np.array(([] if fixed is not None else [l_inf]) + ab)
        out.append((float((w * (_pred_jac(th, idx, x, n_var, fixed)[0] - y) ** 2).sum()), len(out), th))
    return [th for _, _, th in sorted(out, key=lambda t: t[:2])[:keep]]


def fit_law(points: list[Point], l_inf="shared") -> LawFit:
    """The lack-of-fit test and the random-effect refit (module docstring); FitError when the cells cannot
    support a fit (too few sizes, a fixed L_inf above a loss, a size with one seed per variant)."""
    cells = cell_table(points)
    size_df = _size_df(points)
    variants = sorted({c.variant for c in cells})
    need = 3 if l_inf == "shared" else 2
    few = [v for v in variants if sum(c.variant == v for c in cells) < need]
    if not variants:
        raise FitError("no finished runs off the plateau")
    if few:
        raise FitError(f"a fit with {'a shared' if l_inf == 'shared' else 'a fixed'} L_inf needs >= {need} sizes "
                       f"off the plateau per variant; {', '.join(few)} has fewer")
    bad = sorted({c.size for c in cells if not c.se2 > 0})
    if bad:
        raise FitError(f"no seed spread at size {', '.join(bad)} (one seed per variant, or identical seeds): the "
                       f"law cannot be tested against seed error")
    fixed = None if l_inf == "shared" else float(l_inf)
    c0 = float(np.exp(np.mean(np.log([c.flops for c in cells]))))
    idx, flops, y = _design(cells, variants)
    if fixed is not None and fixed >= y.min():
        raise FitError(f"sweep.l_inf {fixed:g} is not below the lowest cell mean {y.min():.4g}")
    x, n_var = np.log(flops / c0), len(variants)
    lb = np.array(([] if fixed is not None else [0.0]) + [ALPHA_BOUNDS[0] if i % 2 else -50.0 for i in range(2 * n_var)])
    ub = np.array(([] if fixed is not None else [float(y.min()) * (1 - 1e-6)])
                  + [ALPHA_BOUNDS[1] if i % 2 else 50.0 for i in range(2 * n_var)])
    se2 = np.array([c.se2 for c in cells])
    w = 1.0 / se2
    fits = [_wls(t, idx, x, y, w, n_var, fixed, lb, ub) for t in _starts(idx, x, y, w, n_var, fixed, STARTS)]
    theta = min(fits, key=lambda th: float((w * (_pred_jac(th, idx, x, n_var, fixed)[0] - y) ** 2).sum()))
    pred, jac = _pred_jac(theta, idx, x, n_var, fixed)
    z = (y - pred) / np.sqrt(se2)
    q, df, nu = float((z ** 2).sum()), len(cells) - len(theta), pure_error_df(points)
    nu_cell = np.array([size_df[c.size] for c in cells])
    # each z is a t on its size's pooled seed df: mapped to the normal scale before summing (else t_4 tails)
    zn = st.norm.isf(np.clip(st.t.sf(np.abs(z), nu_cell), 1e-300, 0.5))
    p = float(st.chi2.sf(float((zn ** 2).sum()), df)) if df > 0 else math.nan
    tau2 = 0.0
    if df > 0 and q > df:
        info_inv = np.linalg.pinv(jac.T @ (w[:, None] * jac))
        denom = float(w.sum() - np.trace(info_inv @ (jac.T @ ((w ** 2)[:, None] * jac))))
        tau2 = max(0.0, (q - df) / denom) if denom > 0 else 0.0
    w2 = 1.0 / (se2 + tau2)
    if tau2 > 0:
        theta = _wls(theta, idx, x, y, w2, n_var, fixed, lb, ub)
        pred, jac = _pred_jac(theta, idx, x, n_var, fixed)
    q_star = float((w2 * (y - pred) ** 2).sum())
    kh = max(1.0, q_star / df) if df > 0 else 1.0
    info_inv = np.linalg.pinv(jac.T @ (w2[:, None] * jac))
    cov, sens = info_inv * kh, info_inv @ (jac.T * w2[None, :])
    ab = theta[-2 * n_var:].reshape(n_var, 2)
    law = Fit(float(theta[0]) if fixed is None else fixed, c0,
              {v: Curve(float(ab[i, 0]), float(ab[i, 1])) for i, v in enumerate(variants)}, fixed is None, q_star)
    return LawFit(law, tuple(cells), cov, q, df, nu, p, tau2,
                  tuple((c.variant, c.size, float(zi)) for c, zi in zip(cells, z)), sens, se2, nu_cell, kh)


def theta_of(f: Fit) -> np.ndarray:
    ab = [z for c in f.curves.values() for z in (c.log_a, c.alpha)]
    return np.array(([f.l_inf] if f.shared else []) + ab)


def with_theta(f: Fit, theta: np.ndarray) -> Fit:
    ab = theta[-2 * len(f.curves):].reshape(len(f.curves), 2)
    return Fit(float(theta[0]) if f.shared else f.l_inf, f.c0,
               {v: Curve(float(ab[i, 0]), float(ab[i, 1])) for i, v in enumerate(f.curves)}, f.shared, f.cost)


def default_target(f: Fit, cells, baseline: str, variant: str) -> float:
    """The higher of the two fitted losses at each variant's largest compute (both fits reach it in range)."""
    return max(float(f.loss(v, max(c.flops for c in cells if c.variant == v))) for v in (baseline, variant))


def log_multiplier(f: Fit, cells, baseline: str, variant: str, loss: float | None) -> float:
    """log C_baseline(L) - log C_variant(L); nan where either curve never reaches L."""
    target = loss if loss is not None else default_target(f, cells, baseline, variant)
    if target <= f.l_inf:
        return math.nan
    lg = math.log(target - f.l_inf)
    cb, cv = f.curves[baseline], f.curves[variant]
    return (cb.log_a - lg) / cb.alpha - (cv.log_a - lg) / cv.alpha


@dataclass(frozen=True)
class Interval:
    multiplier: float
    lo: float
    hi: float
    se_log: float  # standard error of log M
    df: float  # of the t quantile (Satterthwaite)
    p_below: float  # one-sided P(M < min) from the same t: <= 0.025 exactly when lo >= min


def multiplier_interval(lf: LawFit, baseline: str, variant: str, loss: float | None, minimum: float,
                        level: float = 0.95) -> Interval:
    """Delta-method interval of the multiplier (module docstring), the target loss's own uncertainty included."""
    theta = theta_of(lf.fit)
    g0 = log_multiplier(lf.fit, lf.cells, baseline, variant, loss)
    if not math.isfinite(g0):
        return Interval(math.nan, math.nan, math.nan, math.nan, lf.df, math.nan)
    grad = np.zeros(len(theta))
    for i in range(len(theta)):
        h = 1e-6 * max(1.0, abs(theta[i]))
        up, dn = theta.copy(), theta.copy()
        up[i] += h
        dn[i] -= h
        a = log_multiplier(with_theta(lf.fit, up), lf.cells, baseline, variant, loss)
        b = log_multiplier(with_theta(lf.fit, dn), lf.cells, baseline, variant, loss)
        grad[i] = (a - b) / (2 * h)
    se = float(math.sqrt(max(0.0, grad @ lf.cov @ grad)))
    # the lack-of-fit df bound it (Knapp & Hartung: tau2 is estimated from those residuals, and a tau2 estimated
    # as 0 from 1-3 df does not show there is none); fewer when the seed variances carry fewer (Satterthwaite).
    # Using the seed df alone whenever tau2 came out 0 PASSed 5% of null sweeps at 3 sizes (df 1)
    df = min(float(max(lf.df, 1)), satterthwaite(lf, grad))
    t = float(st.t.ppf(0.5 + level / 2, df))
    p = float(st.t.cdf((math.log(minimum) - g0) / se, df)) if se > 0 else float(g0 < math.log(minimum))
    return Interval(math.exp(g0), math.exp(g0 - t * se), math.exp(g0 + t * se), se, df, p)


def satterthwaite(lf: LawFit, grad: np.ndarray) -> float:
    """Degrees of freedom of var(log M) when it is seed error alone: each size's part carries that size's pooled
    seed df (Satterthwaite 1946); at least 1."""
    c2 = (grad @ lf.sens) ** 2
    parts, den = [], 0.0
    for nu in sorted(set(lf.nu_cell.tolist())):
        v = float((c2 * lf.se2)[lf.nu_cell == nu].sum())
        parts.append(v)
        den += v * v / nu if nu > 0 else math.inf
    total = sum(parts)
    return max(1.0, total * total / den) if den > 0 else math.inf
