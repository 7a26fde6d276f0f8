"""Loss against training compute across a sweep's sizes, and the compute multiplier read from it.

Fit, per variant v: L_v(C) = L_inf + A_v * (C / C0)^-alpha_v, with C the run's training FLOPs (train FLOPs per
token x tokens) and C0 the geometric mean of every point's C (so A_v is the loss above L_inf at a compute the
sweep covers, and the optimiser sees numbers near 1). The residuals are log(predicted) - log(observed) under a
Huber loss (the Chinchilla fit style, Hoffmann et al. 2022), one residual per finished run (every seed).

L_inf: `shared` (default) is one irreducible loss for all the suite's variants, bounded to [0, the lowest observed
loss): it is a property of the data and tokenizer, not of the architecture, and with 3-4 sizes a free L_inf per
variant trades off against alpha (Marin's MoE iso-FLOP work found a free L_inf too optimistic). A number fixes it.

Compute multiplier ("efficiency leverage", Tian et al. 2025): M(L) = C_baseline(L) / C_variant(L), the compute
the baseline needs to reach loss L over the compute the variant needs. Uncertainty: a bootstrap over seeds (the
seeds of each (variant, size) resampled with replacement, deviations from the cell mean rescaled by
sqrt(n/(n-1)) so a resampled mean has the unbiased seed variance s^2/n even at 3 seeds), refitting every resample
from the point estimate, with a fixed RNG so a report is reproducible. In simulation (two variants, 4 sizes over
3 decades of compute, 3 seeds, seed sd 0.01 nats, true multiplier 2.0, 150 repetitions) the point estimate's
median was 1.97 and the percentile 95% interval covered the truth 91% of the time: a slightly narrow interval;
with no true effect (multiplier 1, `min: 1.0`) the compute_multiplier claim PASSed 2.7% of the time, FAILed 0%.

The claim and the report no longer use that bootstrap: a deviation shared by a (variant, size) cell's seeds is
invisible to it (with cell deviations of 1-2 seed sds it PASSed a null multiplier 12-23% of the time). They use
analysis/lawfit.py (cell means, lack-of-fit test, random effect); fit/bootstrap here stay for comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from moebench.io import split_key

HUBER_SCALE = 0.01  # log-space residual where Huber turns linear: about one seed sd at CPU scale (0.02 nats at ~2)
ALPHA_BOUNDS = (1e-3, 3.0)
N_BOOT = 500  # percentile ends from 12 resamples each; a report fits once for the section, once per claim


class FitError(ValueError):
    """The points cannot support the fit (too few sizes, a fixed L_inf above a loss): said in the report."""


@dataclass(frozen=True)
class Point:
    variant: str
    size: str
    seed: int
    flops: float  # training FLOPs of the run
    loss: float  # its final validation loss (or the claim's metric)


@dataclass(frozen=True)
class Curve:
    log_a: float  # log of the loss above L_inf at C0
    alpha: float


@dataclass(frozen=True)
class Fit:
    l_inf: float
    c0: float
    curves: dict  # variant -> Curve
    shared: bool  # L_inf fitted (shared by the variants) or fixed
    cost: float = 0.0

    def loss(self, variant: str, flops) -> np.ndarray:
        c = self.curves[variant]
        return self.l_inf + np.exp(c.log_a - c.alpha * np.log(np.asarray(flops, dtype=float) / self.c0))

    def compute(self, variant: str, loss: float) -> float:
        """The compute at which the fitted curve reaches `loss`; inf if it never does (loss <= L_inf)."""
        c = self.curves[variant]
        if loss <= self.l_inf:
            return math.inf
        return self.c0 * math.exp((c.log_a - math.log(loss - self.l_inf)) / c.alpha)


def sweep_points(rs, metric: str = "val_loss") -> list[Point]:
    """One point per finished run of a sweep (run key variant@size); runs outside a sweep are ignored."""
    out = []
    for _, r in rs.runs[rs.runs["status"] == "ok"].iterrows():
        variant, size = split_key(r["variant"])
        flops = float(r["train_flops_per_token"]) * float(r["tokens"]) if r["tokens"] == r["tokens"] else math.nan
        loss = float(r[metric]) if metric in r and r[metric] is not None else math.nan
        if size is not None and math.isfinite(flops) and flops > 0 and math.isfinite(loss) and loss > 0:
            out.append(Point(variant, size, int(r["seed"]), flops, loss))
    return out


def _check(points: list[Point], l_inf) -> list[str]:
    variants = sorted({p.variant for p in points})
    need = 3 if l_inf == "shared" else 2
    few = [f"{v} ({len({p.size for p in points if p.variant == v})})" for v in variants
           if len({p.size for p in points if p.variant == v}) < need]
    if not variants or few:
        raise FitError(f"a fit with {'a shared' if l_inf == 'shared' else 'a fixed'} L_inf needs >= {need} sizes "
                       f"with finished runs per variant; have {', '.join(few) or 'none'}")
    low = min(p.loss for p in points)
    if l_inf != "shared" and float(l_inf) >= low:
        raise FitError(f"sweep.l_inf {float(l_inf):g} is not below the lowest observed loss {low:.4g}")
    return variants


def _arrays(points: list[Point], variants: list[str], c0: float):
    idx = np.array([variants.index(p.variant) for p in points])
    x = np.log(np.array([p.flops for p in points]) / c0)
    y = np.array([p.loss for p in points])
    return idx, x, y


def _residuals(theta, idx, x, logy, n_var, fixed):
    l_inf = theta[0] if fixed is None else fixed
    ab = theta[-2 * n_var:].reshape(n_var, 2)
    pred = l_inf + np.exp(ab[idx, 0] - ab[idx, 1] * x)
    return np.log(pred) - logy


def _jacobian(theta, idx, x, logy, n_var, fixed):
    """d residual / d theta, analytic (the bootstrap refits a thousand times: finite differences cost 3x)."""
    l_inf = theta[0] if fixed is None else fixed
    ab = theta[-2 * n_var:].reshape(n_var, 2)
    e = np.exp(ab[idx, 0] - ab[idx, 1] * x)
    pred = l_inf + e
    jac = np.zeros((len(x), len(theta)))
    off = 0 if fixed is not None else 1
    if fixed is None:
        jac[:, 0] = 1.0 / pred
    rows = np.arange(len(x))
    jac[rows, off + 2 * idx] = e / pred
    jac[rows, off + 2 * idx + 1] = -x * e / pred
    return jac


def _start(idx, x, y, n_var, l_inf: float) -> np.ndarray:
    """Per-variant OLS of log(L - L_inf) on log C: a starting point near the optimum."""
    out = []
    for v in range(n_var):
        xs, ys = x[idx == v], np.log(np.maximum(y[idx == v] - l_inf, 1e-9))
        slope, icpt = np.polyfit(xs, ys, 1) if np.ptp(xs) > 0 else (0.0, float(ys.mean()))
        out += [icpt, float(np.clip(-slope, *ALPHA_BOUNDS))]
    return np.array(out)


def _solve(points, variants, c0, l_inf, starts) -> Fit:
    idx, x, y = _arrays(points, variants, c0)
    n, fixed = len(variants), (None if l_inf == "shared" else float(l_inf))
    lb = [ALPHA_BOUNDS[0] if i % 2 else -50.0 for i in range(2 * n)]
    ub = [ALPHA_BOUNDS[1] if i % 2 else 50.0 for i in range(2 * n)]
    if fixed is None:  # L_inf below every observed loss, so log(L - L_inf) exists at every point
        lb, ub = [0.0] + lb, [float(y.min()) * (1 - 1e-6)] + ub
    best = None
    for theta0 in starts:
        theta0 = np.clip(theta0, np.array(lb) + 1e-12, np.array(ub) - 1e-12)
        r = least_squares(_residuals, theta0, jac=_jacobian, bounds=(lb, ub), loss="huber", f_scale=HUBER_SCALE,
                          args=(idx, x, np.log(y), n, fixed))
        if best is None or r.cost < best.cost:
            best = r
    th = best.x
    ab = th[-2 * n:].reshape(n, 2)
    curves = {v: Curve(float(ab[i, 0]), float(ab[i, 1])) for i, v in enumerate(variants)}
    return Fit(float(th[0]) if fixed is None else fixed, c0, curves, fixed is None, float(best.cost))


def fit(points: list[Point], l_inf="shared") -> Fit:
    """The Huber fit of every variant's L(C) (module docstring); FitError when the points cannot support it."""
    variants = _check(points, l_inf)
    c0 = float(np.exp(np.mean(np.log([p.flops for p in points]))))
    idx, x, y = _arrays(points, variants, c0)
    if l_inf == "shared":  # a few L_inf starts: the fit is not convex in it
        starts = [np.concatenate([[f * y.min()], _start(idx, x, y, len(variants), f * y.min())])
                  for f in (0.0, 0.5, 0.8, 0.95)]
    else:
        starts = [_start(idx, x, y, len(variants), float(l_inf))]
    return _solve(points, variants, c0, l_inf, starts)


def _theta(f: Fit) -> np.ndarray:
    ab = [z for c in f.curves.values() for z in (c.log_a, c.alpha)]
    return np.array(([f.l_inf] if f.shared else []) + ab)


def resample(points: list[Point], rng: np.random.Generator) -> list[Point]:
    """One bootstrap resample: each (variant, size)'s seeds drawn with replacement, deviations rescaled."""
    cells: dict = {}
    for p in points:
        cells.setdefault((p.variant, p.size), []).append(p)
    out = []
    for cell in cells.values():
        n = len(cell)
        mean = sum(p.loss for p in cell) / n
        k = math.sqrt(n / (n - 1)) if n > 1 else 1.0
        for j in rng.integers(0, n, n):
            p = cell[j]
            out.append(Point(p.variant, p.size, p.seed, p.flops, mean + k * (p.loss - mean)))
    return out


def bootstrap(points: list[Point], point_fit: Fit, l_inf="shared", n_boot: int = N_BOOT,
              seed: int = 0) -> list[Fit]:
    """Refits of n_boot seed resamples (fixed RNG), each started from the point estimate."""
    rng = np.random.default_rng(seed)
    variants = list(point_fit.curves)
    start = _theta(point_fit)  # clipped into each resample's bounds (its lowest loss bounds L_inf)
    return [_solve(resample(points, rng), variants, point_fit.c0, l_inf, [start]) for _ in range(n_boot)]


def multiplier(f: Fit, baseline: str, variant: str, loss: float) -> float:
    """C_baseline(L) / C_variant(L); inf if only the variant reaches L, 0 if only the baseline, nan if neither."""
    cb, cv = f.compute(baseline, loss), f.compute(variant, loss)
    if math.isinf(cb) and math.isinf(cv):
        return math.nan
    return cb / cv if not math.isinf(cv) else 0.0


def interval(values, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval by order statistics (an inf sample stays inf; nan samples are dropped)."""
    v = np.sort(np.array([x for x in values if x == x], dtype=float))
    if not len(v):
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(v[int(math.floor(a * (len(v) - 1)))]), float(v[int(math.ceil((1 - a) * (len(v) - 1)))])


def cells(points: list[Point], variant: str) -> list[tuple[str, float, float, int]]:
    """(size, mean compute, mean loss, seeds) per size of one variant, by increasing compute."""
    by: dict = {}
    for p in points:
        if p.variant == variant:
            by.setdefault(p.size, []).append(p)
    rows = [(s, float(np.mean([p.flops for p in ps])), float(np.mean([p.loss for p in ps])), len(ps))
            for s, ps in by.items()]
    return sorted(rows, key=lambda r: r[1])


def covered(f: Fit, points: list[Point], variant: str, loss: float) -> bool:
    """Whether the variant's fit reaches `loss` inside its measured compute range (no extrapolation)."""
    cs = [p.flops for p in points if p.variant == variant]
    lo, hi = float(f.loss(variant, max(cs))), float(f.loss(variant, min(cs)))
    return lo <= loss <= hi


def interpolated_compute(rows: list[tuple[str, float, float, int]], loss: float) -> float | None:
    """The compute at which the piecewise-linear (in log C) curve through `rows` first reaches `loss`;
    None outside its measured losses."""
    for (_, c1, l1, _), (_, c2, l2, _) in zip(rows, rows[1:]):
        if min(l1, l2) <= loss <= max(l1, l2) and l1 != l2:
            t = (loss - l1) / (l2 - l1)
            return float(math.exp(math.log(c1) + t * (math.log(c2) - math.log(c1))))
    return rows[0][1] if len(rows) == 1 and rows[0][2] == loss else None


def direct_multipliers(points: list[Point], baseline: str, variant: str) -> list[dict]:
    """Per size of the variant, no fit: the baseline's compute to reach the variant's mean loss (interpolating
    the baseline's measured points in log C) over the variant's compute; None where that would extrapolate."""
    base = cells(points, baseline)
    out = []
    for size, c, loss, n in cells(points, variant):
        cb = interpolated_compute(base, loss)
        out.append({"size": size, "flops": c, "loss": loss, "seeds": n, "baseline_flops": cb,
                    "multiplier": cb / c if cb is not None else None})
    return out
