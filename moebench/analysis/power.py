"""Power of a claim's own decision rule at the noise its seeds measured, by simulation.

Per statistical kind, a ClaimPower holds the noise the kind assumes (from the seeds in a ResultSet) and answers:
  pass_rate(effect, n_seeds)          how often the rule says PASS when the true effect is `effect`
  detectable_effect(n_seeds, power)   the smallest true effect it PASSes with that probability
  seeds_for_power(effect, power)      the fewest seeds per variant that reach that probability
The rule simulated is the judge's own (analysis/decide.py): seed values are drawn from normals with the measured
sds around means that carry the effect, and decide.<kind> says PASS or not, thousands of repetitions at once.

Common random numbers: one set of standard-normal draws per (seed count, n_sim, RNG seed) serves every effect, and
under it each kind's PASS is monotone in the effect (a larger improvement, slope or band only moves the interval
the right way), so the pass rate is a monotone step function of the effect and the bisection in
detectable_effect is deterministic. Gates (too few tokens, failed runs) and Holm's adjustment are not simulated:
the figures are those of the claim alone, as if it were the report's only statistical claim.

What each kind calls its effect:
  loss_better      the true improvement of the variant (in the metric, better-is-positive), the margin included
  monotonic        the true slope per log2(x) (or per variant index) in the claimed direction, means on a line
  loss_equivalent  the margin (+-) that two one-sided tests establish when the true difference is 0
  speedup_to_loss  the true speedup (x) on the claim's axis
  compute_multiplier  the true compute multiplier (x) of the variant over the baseline, at the sweep's fitted law
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from moebench.registry import Registry

from . import decide, multiplier_rule, scaling, speedup, stats

N_SIM = 4000  # Monte-Carlo sd of a pass rate near 80%: 0.6 points
POWER = 0.8
MAX_SEEDS = 64
_TOL = 1e-4  # the bisection stops within this fraction of the noise scale: far inside the Monte-Carlo error


@dataclass(frozen=True)
class ClaimPower:
    """Base: a kind subclasses it with its noise fields, _draws and _passes."""
    kind: str
    n_now: tuple[int, ...]  # finished seeds per compared variant, as measured
    tested: float  # the effect a power plan tests: the measured one (loss_equivalent: the claim's margin)
    null: float  # an effect the rule (almost) never PASSes at: the bisection's low end
    scale: float  # a noise-sized step: the bisection's first high end

    effect_name = "effect"

    def noise(self) -> str:
        raise NotImplementedError

    def _draws(self, n: tuple[int, ...], rng) -> list[np.ndarray]:
        """Standard-normal draws, one (n_sim, seeds) array per compared variant."""
        raise NotImplementedError

    def _passes(self, effect: float, z: list[np.ndarray]) -> float:
        raise NotImplementedError

    def _n(self, n_seeds: int | tuple[int, ...] | None) -> tuple[int, ...]:
        if n_seeds is None:
            return self.n_now
        return tuple(n_seeds) if isinstance(n_seeds, tuple) else (int(n_seeds),) * len(self.n_now)

    def draws(self, n_seeds=None, n_sim: int = N_SIM, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.standard_normal((n_sim, k)) for k in self._n(n_seeds)]

    def pass_rate(self, effect: float, n_seeds=None, n_sim: int = N_SIM, seed: int = 0) -> float:
        """PASS rate of the rule at a true `effect` with n_seeds per variant (None: as measured)."""
        return self._passes(effect, self.draws(n_seeds, n_sim, seed))

    def detectable_effect(self, n_seeds=None, power: float = POWER, n_sim: int = N_SIM, seed: int = 0) -> float:
        """The smallest true effect PASSed with probability >= power (nan where the noise is unknown, inf where no
        effect is: e.g. one seed, an unbounded interval)."""
        if not (self.scale == self.scale and self.scale > 0):
            return math.nan
        z = self.draws(n_seeds, n_sim, seed)
        lo, hi = self.null, self.null + self.scale
        for _ in range(60):  # grow the bracket until the high end has the power
            if self._passes(hi, z) >= power:
                break
            lo, hi = hi, self.null + 2 * (hi - self.null)
        else:
            return math.inf
        while hi - lo > _TOL * self.scale:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self._passes(mid, z) >= power else (mid, hi)
        return float(hi)

    def seeds_for_power(self, effect: float, power: float = POWER, max_seeds: int = MAX_SEEDS,
                        n_sim: int = N_SIM, seed: int = 0) -> int | None:
        """The fewest seeds per variant (>= 2) whose PASS rate at `effect` is >= power; None beyond max_seeds.
        Doubling then bisection over the seed count (the rate grows with seeds up to Monte-Carlo error)."""
        ok = lambda n: self.pass_rate(effect, n, n_sim, seed) >= power  # noqa: E731
        lo, hi = 1, 2
        while not ok(hi):
            if hi >= max_seeds:
                return None
            lo, hi = hi, min(2 * hi, max_seeds)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        return hi


@dataclass(frozen=True)
class LossBetterPower(ClaimPower):
    sd_variant: float
    sd_baseline: float
    margin: float
    lower_is_better: bool
    metric: str
    effect_name = "improvement"

    def noise(self) -> str:
        return (f"{self.metric} seed sd {self.sd_variant:.3g} (variant) and {self.sd_baseline:.3g} (baseline), "
                f"normal, unequal (Welch)")

    def _passes(self, effect, z):
        sign = -1.0 if self.lower_is_better else 1.0  # the variant's mean sits `effect` better than the baseline's
        a, b = sign * effect + self.sd_variant * z[0], self.sd_baseline * z[1]
        return float((decide.loss_better(a, b, self.margin, self.lower_is_better) == decide.PASS).mean())


@dataclass(frozen=True)
class EquivalencePower(ClaimPower):
    sd_variant: float
    sd_baseline: float
    metric: str
    effect_name = "margin"

    def noise(self) -> str:
        return (f"{self.metric} seed sd {self.sd_variant:.3g} (variant) and {self.sd_baseline:.3g} (baseline), "
                f"normal, true difference 0")

    def _passes(self, effect, z):
        a, b = self.sd_variant * z[0], self.sd_baseline * z[1]
        return float((decide.loss_equivalent(a, b, effect) == decide.PASS).mean())


@dataclass(frozen=True)
class MonotonicPower(ClaimPower):
    sd: float  # pooled within-variant sd: the OLS fit assumes one, and k variants estimate it far better than one
    xs: tuple[float, ...]
    decreasing: bool
    metric: str
    effect_name = "slope"

    def noise(self) -> str:
        return f"{self.metric} seed sd {self.sd:.3g} pooled over {len(self.xs)} variants, normal"

    def _passes(self, effect, z):
        sgn = -1.0 if self.decreasing else 1.0
        xbar = float(np.mean(self.xs))
        groups = [sgn * effect * (x - xbar) + self.sd * zi for x, zi in zip(self.xs, z)]
        return float((decide.monotonic(groups, list(self.xs), self.decreasing) == decide.PASS).mean())


@dataclass(frozen=True)
class SpeedupPower(ClaimPower):
    speedup_noise: speedup.SpeedupNoise
    bar: float
    axis: str
    effect_name = "speedup"

    def noise(self) -> str:
        n = self.speedup_noise
        return (f"per-seed log time to target ({self.axis}) sd {n.sd_log:.3g}, {n.censor_rate:.0%} of variant seeds "
                f"censored, log-normal AFT")

    def draws(self, n_seeds=None, n_sim: int = N_SIM, seed: int = 0) -> list[np.ndarray]:
        return [np.array([k, n_sim, seed]) for k in self._n(n_seeds)]  # the rule draws its own, from the seed

    def _passes(self, effect, z):
        (nb, n_sim, seed), (nv, _, _) = z
        return speedup.pass_rate(self.speedup_noise, effect, int(nb), int(nv), self.bar, int(n_sim), int(seed))


MULTIPLIER_SIM = 100  # simulated sweeps per rate: each is a law fit (~15 ms), so a plan stays under a minute


@dataclass(frozen=True)
class MultiplierPower(ClaimPower):
    design: multiplier_rule.Design
    bar: float
    effect_name = "multiplier"

    def noise(self) -> str:
        sd = self.design.seed_sd
        sds = ", ".join(f"{x:.3g}" for x in sd) if isinstance(sd, tuple) else f"{sd:.3g}"
        return (f"final-loss seed sd per size {sds} nats, cell sd beyond seed error {float(self.design.tau):.3g}, "
                f"{len(self.design.flops)} sizes off the plateau, the fitted law")

    def draws(self, n_seeds=None, n_sim: int = N_SIM, seed: int = 0) -> list[np.ndarray]:
        return [np.array([k, min(n_sim, MULTIPLIER_SIM), seed]) for k in self._n(n_seeds)]

    def _passes(self, effect, z):
        n, n_sim, seed = (int(x) for x in z[0])
        return multiplier_rule.pass_rate(replace(self.design, seeds=n), effect, self.bar, n_sim, seed)


# kind -> (claim spec, ResultSet) -> its ClaimPower, or None where the seeds give no noise to simulate
POWER_MODELS: Registry[Callable] = Registry("power model")


def _finite(x: float) -> bool:
    return x == x and math.isfinite(x)


@POWER_MODELS.register("loss_better")
def loss_better_power(c, rs) -> LossBetterPower | None:
    a, b = rs.seed_values(c.variant, c.metric), rs.seed_values(c.baseline, c.metric)
    sa, sb = stats.sd(a), stats.sd(b)
    if not (_finite(sa) and _finite(sb)):
        return None
    sign = -1.0 if c.lower_is_better else 1.0
    observed = sign * (stats.mean(a) - stats.mean(b))
    return LossBetterPower("loss_better", (len(a), len(b)), observed, c.margin,
                           math.hypot(sa, sb), sa, sb, c.margin, c.lower_is_better, c.metric)


@POWER_MODELS.register("loss_equivalent")
def loss_equivalent_power(c, rs) -> EquivalencePower | None:
    a, b = rs.seed_values(c.variant, c.metric), rs.seed_values(c.baseline, c.metric)
    sa, sb = stats.sd(a), stats.sd(b)
    if not (_finite(sa) and _finite(sb)):
        return None
    return EquivalencePower("loss_equivalent", (len(a), len(b)), c.margin, 0.0, math.hypot(sa, sb), sa, sb,
                            c.metric)


def monotonic_xs(c) -> tuple[list[str], list[float]]:
    """The claim's variants in x order and the x the slope is fitted on (log2 x, or the index without x)."""
    order = c.in_x_order()
    return [v for v, _ in order], [stats.log2(x) if x is not None else float(i) for i, (_, x) in enumerate(order)]


@POWER_MODELS.register("monotonic")
def monotonic_power(c, rs) -> MonotonicPower | None:
    names, xs = monotonic_xs(c)
    vals = [rs.seed_values(v, c.metric) for v in names]
    dof = sum(len(v) - 1 for v in vals if len(v) > 1)
    if dof < 1 or len(set(xs)) < 2:
        return None
    pooled = math.sqrt(sum((len(v) - 1) * stats.sd(v) ** 2 for v in vals if len(v) > 1) / dof)
    sgn = -1.0 if c.direction == "decreasing" else 1.0
    pts = [(x, y) for x, ys in zip(xs, vals) for y in ys]
    observed = sgn * stats.ols_slope(pts)["slope"] if len(pts) > 2 else 0.0
    spread = max(xs) - min(xs)
    return MonotonicPower("monotonic", tuple(len(v) for v in vals), observed, 0.0, pooled / spread,
                          pooled, tuple(xs), c.direction == "decreasing", c.metric)


@POWER_MODELS.register("speedup_to_loss")
def speedup_power(c, rs) -> SpeedupPower | None:
    base, var = speedup.seed_curves(rs, c.baseline), speedup.seed_curves(rs, c.variant)
    if len(base) < 1 or len(var) < 2:
        return None
    s, = speedup.fit_axes(base, var, [c.axis], c.target, c.min)
    noise = speedup.SpeedupNoise.from_fit(s)
    if not _finite(noise.sd_log):
        return None
    return SpeedupPower("speedup_to_loss", (len(base), len(var)), s.estimate, c.min,
                        c.min * (math.exp(max(noise.sd_log, 0.01)) - 1), noise, c.min, c.axis)


@POWER_MODELS.register("compute_multiplier")
def multiplier_power(c, rs) -> MultiplierPower | None:
    """The sweep's fitted law and measured noise (multiplier_rule.design_from_law), judged as the claim is."""
    ref, why = multiplier_rule.plateau_reference(rs)
    l_inf = (rs.suite.get("sweep") or {}).get("l_inf", "shared")
    d = multiplier_rule.decide(scaling.sweep_points(rs, c.metric), c.baseline, c.variant, c.min, c.loss, l_inf,
                               ref, why)
    if d.law is None or c.baseline not in d.law.fit.curves or d.interval is None:
        return None
    design = multiplier_rule.design_from_law(d.law, c.baseline)
    if design.seeds < 2:
        return None
    return MultiplierPower("compute_multiplier", (design.seeds, design.seeds), float(d.interval.multiplier), c.min,
                           c.min, design, c.min)


def claim_power(c, rs) -> ClaimPower | None:
    """The power model of a claim at its measured noise; None for a kind without one or without noise."""
    return POWER_MODELS[c.kind](c, rs) if c.kind in POWER_MODELS else None
