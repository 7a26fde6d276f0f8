"""Speedup to a target loss from both variants' seeds: per-seed times to target (pure numpy on eval curves), the
log-normal AFT fit of moebench/analysis/aft.py, and the power of that rule by simulation.

Rules (the judge states them in every verdict):
  target          per baseline seed: its final val loss (`target: final`) or its best (`target: best`)
  time to target  where the curve crosses down through the target for the last time and stays at or below it
                  until its last eval (one noisy dip below the target is not "reaching" it), linearly
                  interpolated between evals. The baseline follows the same rule for `final` (its curve ends at
                  the target, so it always reaches it, and an overfitting baseline reaches its final loss before
                  its last step); for `best` its time is where it first gets to its best (a minimum is touched,
                  not stayed under).
  every seed      each baseline seed's time to its own target; each variant seed's time to its partner's target
                  (the baseline seed with the same seed: same batches, so the partner's loss level is the fair bar)
                  or, without a partner, to the mean of the baseline seeds' targets. No run is discarded.
  censored        a variant seed still above its target at its last eval is right-censored there: the AFT
                  likelihood takes P(time > its end), so a slow seed pulls the estimate and the low end down
                  instead of vetoing a PASS
  speedup         exp(mean baseline log time - the variant's fitted log time): "reaches the target X times
                  sooner"; its 95% interval and one-sided p as in moebench/analysis/aft.py (exactly Welch's t on
                  log times when nothing is censored). The old paired bootstrap dropped seeds without a partner
                  (baseline {0,1,2} vs variant {2,3,4} was n=1) and the old veto made PASS rarer with more seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from . import aft
from .stats import _AXIS_COL



@dataclass(frozen=True)
class SeedCurve:
    seed: int
    loss: np.ndarray  # val loss at each eval, in step order
    axes: dict  # axis name -> values at the same evals


@dataclass(frozen=True)
class Pair:
    """One variant seed's time to its target, against its partner baseline seed (base_seed None: no partner, the
    baseline's geometric-mean time to the mean target)."""
    base_seed: int | None
    seed: int
    target: float
    base_time: float
    time: float | None  # None: never reached (censored)
    end: float  # the variant's last eval on the axis

    @property
    def ratio(self) -> float:
        """The speedup of this seed; for a censored one, its upper bound."""
        return self.base_time / (self.time if self.time is not None else self.end)


@dataclass(frozen=True)
class Observations:
    """Log times to target: every baseline seed (observed) and every variant seed (censored at its end)."""
    y_base: np.ndarray
    pairs: list[Pair]
    paired: bool  # some seed is in both variants
    target_sd: float  # sd of a variant seed's log time across the baseline seeds' targets (0: not measured)

    @property
    def shared_var(self) -> float:
        """Variance the variant seeds without a partner share: they are all timed to the one mean target, whose
        noise (target_sd^2 / n_base) moves them together, so their spread cannot show it (the fit adds it)."""
        u = sum(p.base_seed is None for p in self.pairs)
        return (u / len(self.pairs)) ** 2 * self.target_sd ** 2 / len(self.y_base)

    @property
    def y_var(self) -> np.ndarray:
        return np.log([p.time if p.time is not None else p.end for p in self.pairs])

    @property
    def censored(self) -> np.ndarray:
        return np.array([p.time is None for p in self.pairs])


@dataclass(frozen=True)
class Speedup:
    estimate: float  # exp(fitted log acceleration); an upper bound when `bounded`
    ci_low: float
    ci_high: float
    p_one_sided: float  # H0: speedup <= the bar
    obs: Observations
    bounded: bool
    sd_log: float  # the variant's fitted per-seed log-time sd

    @property
    def pairs(self) -> list[Pair]:
        return self.obs.pairs


def seed_curves(rs, variant: str) -> list[SeedCurve]:
    """Each finished seed's eval curve as arrays."""
    ok = {int(s) for s in rs.run_values(variant, "seed")}
    c = rs.curve_values(variant, ("seed", "val_loss", *_AXIS_COL.values()))
    loss = c["val_loss"].astype(float)
    keep = ~np.isnan(loss)
    seeds = c["seed"][keep].astype(int)
    out = []
    for seed in np.unique(seeds):
        if int(seed) in ok:
            m = keep.copy()
            m[keep] = seeds == seed
            out.append(SeedCurve(int(seed), loss[m], {ax: c[col][m].astype(float) for ax, col in _AXIS_COL.items()}))
    return out


def _interp(axis: np.ndarray, loss: np.ndarray, i: int, target: float) -> float:
    """Axis value between evals i and i + 1 where the straight line through their losses meets the target."""
    frac = (loss[i] - target) / (loss[i] - loss[i + 1])
    return float(axis[i] + frac * (axis[i + 1] - axis[i]))


def time_to(curve: SeedCurve, target: float, axis: str, stay: bool = True) -> float | None:
    """Where the curve reaches the target on `axis` (rules in the module doc); None if it never does."""
    above, a = curve.loss > target, curve.axes[axis]
    if stay:
        if above[-1]:
            return None
        j = int(np.flatnonzero(above)[-1]) if above.any() else -1
    else:
        below = np.flatnonzero(~above)
        if not len(below):
            return None
        j = int(below[0]) - 1
    # already there at the first eval: that eval's value, an upper bound on the time (never flatters)
    return float(a[0]) if j < 0 else _interp(a, curve.loss, j, target)


def _target(c: SeedCurve, target: str) -> float:
    return float(c.loss[-1]) if target == "final" else float(c.loss.min())


def observe(base: list[SeedCurve], var: list[SeedCurve], axis: str, target: str) -> Observations:
    """Every seed's time to target on `axis` (rules in the module doc)."""
    bt = {b.seed: (_target(b, target), time_to(b, _target(b, target), axis, stay=target == "final")) for b in base}
    y_base = np.log([t for _, t in bt.values()])
    mean_target, mean_time = float(np.mean([t for t, _ in bt.values()])), float(np.exp(y_base.mean()))
    pairs, spread = [], []
    for v in var:
        tgt, btime = bt.get(v.seed, (mean_target, mean_time))
        pairs.append(Pair(v.seed if v.seed in bt else None, v.seed, tgt, btime, time_to(v, tgt, axis),
                          float(v.axes[axis][-1])))
        if v.seed not in bt and len(bt) > 1:  # this seed's log time to each baseline seed's target: their spread
            ts = [time_to(v, t, axis) for t, _ in bt.values()]
            ts = np.log([t for t in ts if t is not None])
            if len(ts) > 1:
                spread.append(float(np.var(ts, ddof=1)))
    unpaired = any(p.base_seed is None for p in pairs)
    if unpaired and len(bt) > 1 and not spread and len(pairs) > 1:  # no seed reaches two targets: the variant's
        spread = [float(np.var(np.log([p.time or p.end for p in pairs]), ddof=1))]  # own spread stands in
    return Observations(y_base, pairs, any(p.base_seed is not None for p in pairs),
                        float(np.sqrt(np.mean(spread))) if spread else 0.0)


def fit_axes(base: list[SeedCurve], var: list[SeedCurve], axes: list[str], target: str,
             bar: float) -> list[Speedup]:
    """The speedup on each axis, fitted in one vectorised call (every axis has the same seeds)."""
    obs = [observe(base, var, ax, target) for ax in axes]
    if len(obs[0].y_base) < 1 or len(obs[0].pairs) < 2:  # one variant seed: no spread, nothing is excluded
        return [Speedup(float(np.exp(o.y_base.mean() - o.y_var.mean())), 0.0, math.inf, 1.0, o, bool(o.censored.any()),
                        math.nan) for o in obs]
    f = aft.fit(np.stack([o.y_base for o in obs]), np.stack([o.y_var for o in obs]),
                np.stack([o.censored for o in obs]), math.log(bar), np.array([o.shared_var for o in obs]))
    return [Speedup(math.exp(f.log_acc[i]), math.exp(f.low[i]), math.exp(f.high[i]), float(f.p_one_sided[i]), o,
                    bool(f.bounded[i]), float(f.sigma_v[i])) for i, o in enumerate(obs)]


@dataclass(frozen=True)
class SpeedupNoise:
    """The noise a speedup claim is judged under, per seed on the log-time scale: what pass_rate simulates.

    sd_log       the variant's seed-to-seed sd of log time to target (the AFT fit's, censoring included)
    censor_rate  fraction of variant seeds that never reach the target (measured)
    paired       True: every variant seed is timed to its partner's target (the target's noise is inside
                 sd_log); False: every one is timed to the mean baseline target, whose noise (target_sd^2 /
                 n_base) they share: simulated as one shift per suite, and estimated as the judge does
    sd_log_base  the baseline's seed-to-seed sd of log time (about 0 for `target: final` on steps/tokens/flops:
                 every baseline seed reaches its own final loss at its last eval)
    end_log      log(variant's last eval / baseline time): where a simulated variant seed is censored. None: place
                 the censoring point so that censor_rate of the variant seeds are censored at the true speedup
    """
    sd_log: float
    censor_rate: float
    paired: bool
    sd_log_base: float = 0.0
    end_log: float | None = None
    target_sd: float = 0.0  # sd of a variant seed's log time across the baseline seeds' targets

    @classmethod
    def from_results(cls, base_curves: list[SeedCurve], var_curves: list[SeedCurve], axis: str,
                     target: str = "final") -> "SpeedupNoise":
        """The measured noise of a pair of variants' seed curves (needs 2 variant seeds)."""
        s, = fit_axes(base_curves, var_curves, [axis], target, 1.0)
        return cls.from_fit(s)

    @classmethod
    def from_fit(cls, s: Speedup) -> "SpeedupNoise":
        o = s.obs
        sd = s.sd_log if s.sd_log == s.sd_log else float(np.std(o.y_var, ddof=1)) if len(o.pairs) > 1 else 0.0
        sd_b = float(np.std(o.y_base, ddof=1)) if len(o.y_base) > 1 else 0.0
        ends = np.log([p.end for p in o.pairs])
        paired = all(p.base_seed is not None for p in o.pairs)  # a mixed set is simulated as unpaired
        return cls(float(sd), float(o.censored.mean()), paired, sd_b, float(ends.mean() - o.y_base.mean()),
                   o.target_sd)


NEED = 1 - 1e-9  # a hand-exact bar must not fail on float rounding: PASS needs the low end >= bar * NEED


def pass_rate(noise: SpeedupNoise, true_speedup: float, n_base: int, n_var: int, bar: float, n_sim: int,
              seed: int = 0) -> float:
    """Fraction of n_sim simulated suites the speedup rule PASSes when the variant is truly `true_speedup` times
    faster: log times drawn at the noise's sds, variant seeds censored at the noise's end (fixed RNG)."""
    rng = np.random.default_rng(seed)
    zb, zv, zt = _draws(rng, n_sim, n_base, n_var)
    return float(np.mean(_passes(noise, zb, zv, zt, true_speedup, bar)))


def _draws(rng, n_sim: int, n_base: int, n_var: int) -> tuple:
    """Standard normal seed noise of both variants, and (shared target shift, chi-square estimate of its
    variance) per suite."""
    zb, zv = rng.standard_normal((n_sim, n_base)), rng.standard_normal((n_sim, n_var))
    chi = rng.chisquare(max(n_base - 1, 1), n_sim) / max(n_base - 1, 1)
    return zb, zv, (rng.standard_normal(n_sim), chi)


def _passes(noise: SpeedupNoise, zb: np.ndarray, zv: np.ndarray, zt: tuple, true_speedup: float,
            bar: float) -> np.ndarray:
    """Which simulated suites the rule PASSes: the same aft.fit the judge runs."""
    n_base = zb.shape[1]
    yb = noise.sd_log_base * zb
    yv = noise.sd_log * zv - math.log(true_speedup)
    shared = 0.0
    if not noise.paired and noise.target_sd > 0 and n_base > 1:
        yv = yv + (noise.target_sd / math.sqrt(n_base)) * zt[0][:, None]
        shared = noise.target_sd ** 2 * zt[1] / n_base
    if noise.end_log is not None:
        c = noise.end_log
    elif noise.censor_rate > 0:
        c = -math.log(true_speedup) + noise.sd_log * float(special.ndtri(1 - noise.censor_rate))
    else:
        c = math.inf
    if yv.shape[1] < 2:
        return np.zeros(len(yv), bool)
    cens = yv > c
    f = aft.fit(yb, np.where(cens, c, yv), cens, math.log(bar), shared)
    return f.low >= math.log(bar * NEED)


def detectable_speedup(noise: SpeedupNoise, n_base: int, n_var: int, bar: float, power: float = 0.8,
                       n_sim: int = 1000, seed: int = 0) -> float:
    """The smallest true speedup this rule PASSes with `power` at this noise and these seed counts: bisection on
    the simulated pass rate (common random numbers, so the rate rises with the speedup). inf when even a 10^6x
    speedup would not PASS often enough (e.g. one variant seed)."""
    if n_var < 2:
        return math.inf
    draws = _draws(np.random.default_rng(seed), n_sim, n_base, n_var)

    def rate(log_s: float) -> float:
        return float(np.mean(_passes(noise, *draws, math.exp(log_s), bar)))

    lo, hi = math.log(bar), math.log(bar) + 1.0
    while rate(hi) < power:
        lo, hi = hi, hi + 2 * (hi - math.log(bar))
        if hi > math.log(1e6):
            return math.inf
    for _ in range(14):  # 2^-14 of the bracket: far below the Monte-Carlo error of n_sim suites
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rate(mid) < power else (lo, mid)
    return math.exp(hi)
