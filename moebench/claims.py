"""Claim kinds (a registry) judged on a ResultSet -> Verdicts with numbers, a one-line reason and the rule applied.

Add a kind: a pydantic model subclassing ClaimBase (or PairClaim / MetricClaim) with `kind: Literal["name"]`,
decorated `@claim_kind("name")`, with a method `judge(self, rs) -> Verdict` (so `Cls.judge(spec, rs)` is the
`judge(spec, rs)` of the design). ClaimSpec is built from the registry when this module is imported.

Expert statistics read from summary.json "experts" (written by the trainer, models/stats.py summarize()):
  entropy        load entropy H(load) / log E in [0, 1], mean over MoE layers (1 = perfectly balanced)
  max_load_x_E   max over experts of load share x E, max over layers (1 = balanced; Shazeer et al. saw 17.8)
  dead_experts   experts whose load share < dead_threshold / E, summed over layers
  cv             coefficient of variation of the load (std / mean), mean over layers
  drop_fraction  fraction of routed pairs dropped by the capacity limit (0 when dropless)
  layers         [{"load": [share of expert 0, ...]}, ...], one per MoE layer (the report's heatmaps)
Every other scalar there (router_entropy, z_loss, lb_loss) is carried into ResultSet.runs as experts.<key>.

Gates (claim_base.py), applied to every kind on top of its own rule; each makes the verdict INCONCLUSIVE and is
named in the reason: a compared run failed or is incomplete; fewer than 2 finished seeds of a compared variant;
a finished run saw fewer than `min_tokens_per_param` (default 1.0) training tokens per total parameter.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import Field, ValidationError, model_validator

from .claim_base import (  # noqa: F401 - re-exported: claims.py is the public face of claims
    CLAIM_KINDS, FAIL, INCONCLUSIVE, MIN_SEEDS, PASS, ClaimBase, MetricClaim, PairClaim, Verdict, claim_kind,
    gate_reasons, tri)
from .errors import SuiteValidationError, did_you_mean
from .report import stats


@claim_kind("speedup_to_loss")
class SpeedupToLoss(PairClaim):
    kind: Literal["speedup_to_loss"]
    axis: Literal["steps", "tokens", "flops", "wall"] = "flops"
    min: float = Field(gt=0)

    def judge(self, rs) -> Verdict:
        base_final = rs.seed_values(self.baseline, "val_loss")
        if not base_final or not len(stats.mean_curve(rs, self.variant)):
            return self.no_data(rs, f"val loss of {self.baseline} or eval curve of {self.variant}")
        target = sum(base_final) / len(base_final)
        rule = (f"speedup = baseline {self.axis} at end / {self.variant}'s {self.axis} to reach the baseline's final "
                f"val loss (mean over seeds, linear interpolation between evals); PASS if >= {self.min:g} and "
                f"every seed's own speedup is too, INCONCLUSIVE if seeds straddle {self.min:g}")
        numbers: dict[str, Any] = {"target_val_loss": target, "axis": self.axis, "required_min": self.min}
        base_x = stats.final_axis_values(rs, self.baseline)
        curve = stats.mean_curve(rs, self.variant)
        reach = stats.reach_point(curve, target)
        if reach is None:
            best = float(curve["val_loss"].min())
            numbers["best_val_loss"] = best
            return self.verdict(rs, FAIL, numbers, f"{self.variant} never reached {target:.4f} (best {best:.4f})",
                                rule)
        for ax in stats.AXES:
            numbers[f"{ax}_to_target"] = reach[ax]
            numbers[f"baseline_{ax}"] = base_x[ax]
            numbers[f"speedup_{ax}"] = base_x[ax] / reach[ax] if reach[ax] else float("inf")
        # a seed that never gets there counts as speedup 0
        per_seed = [base_x[self.axis] / r[self.axis] if r else 0.0
                    for r in (stats.reach_point(c, target) for c in stats.seed_curves(rs, self.variant))]
        numbers["speedup_per_seed"] = per_seed
        s = numbers[f"speedup_{self.axis}"]
        need = self.min * (1 - 1e-9)  # a hand-exact 1.5x must not fail on float rounding
        v = tri(s >= need and min(per_seed) >= need, s < need and max(per_seed) < need)
        reason = (f"{self.axis} speedup {s:.3g}x vs required {self.min:g}x "
                  f"(per seed {', '.join(f'{x:.3g}' for x in per_seed)})")
        return self.verdict(rs, v, numbers, reason, rule)


@claim_kind("loss_better")
class LossBetter(PairClaim, MetricClaim):
    kind: Literal["loss_better"]
    lower_is_better: bool = True
    margin: float = 0.0

    def judge(self, rs) -> Verdict:
        a, b = rs.seed_values(self.variant, self.metric), rs.seed_values(self.baseline, self.metric)
        if not a or not b:
            return self.no_data(rs, f"{self.metric} of {self.variant} and {self.baseline}")
        sign = -1.0 if self.lower_is_better else 1.0
        w = stats.welch(a, b)  # CI of mean(a) - mean(b)
        imp_lo, imp_hi = sorted((sign * w["ci_low"], sign * w["ci_high"]))
        numbers = {f"{self.variant}_mean": w["mean_a"], f"{self.baseline}_mean": w["mean_b"],
                   "improvement": sign * w["diff"], "ci95_improvement": [imp_lo, imp_hi], "p_value": w["p"],
                   "n": [len(a), len(b)], "margin": self.margin}
        better = "lower" if self.lower_is_better else "higher"
        rule = (f"improvement = {better}-is-better difference of seed means; Welch 95% CI; PASS if CI > margin "
                f"{self.margin:g}, FAIL if CI < margin, else INCONCLUSIVE")
        v = tri(imp_lo > self.margin, imp_hi < self.margin)
        reason = (f"{self.metric} {w['mean_a']:.4f} vs {w['mean_b']:.4f}: improvement {sign * w['diff']:.4f}, "
                  f"95% CI [{imp_lo:.4f}, {imp_hi:.4f}] vs margin {self.margin:g}, p={w['p']:.3g}")
        return self.verdict(rs, v, numbers, reason, rule)


class _RatioClaim(PairClaim):
    min: Optional[float] = None
    max: Optional[float] = None
    column: ClassVar[str] = ""

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("give min and/or max")
        return self

    def judge(self, rs) -> Verdict:
        a, b = rs.seed_values(self.variant, self.column), rs.seed_values(self.baseline, self.column)
        if not a or not b or min(b) <= 0:
            return self.no_data(rs, f"{self.column} of {self.variant} and {self.baseline}")
        r = stats.median(a) / stats.median(b)
        lo, hi = min(a) / max(b), max(a) / min(b)  # every seed pairing lies in [lo, hi]
        ok = lambda x: (self.min is None or x >= self.min) and (self.max is None or x <= self.max)  # noqa: E731
        v = tri(all(map(ok, (lo, r, hi))), not any(map(ok, (lo, r, hi))))
        bounds = " and ".join(s for s in (self.min is not None and f">= {self.min:g}",
                                          self.max is not None and f"<= {self.max:g}") if s)
        rule = (f"ratio = median {self.column} {self.variant} / {self.baseline}; PASS if it and every seed pairing "
                f"(range [min/max, max/min]) are {bounds}, FAIL if none are, else INCONCLUSIVE")
        numbers = {"ratio": r, "range": [lo, hi], f"{self.variant}_median": stats.median(a),
                   f"{self.baseline}_median": stats.median(b)}
        return self.verdict(rs, v, numbers, f"ratio {r:.3g} (seed range {lo:.3g}-{hi:.3g}), required {bounds}",
                            rule)


@claim_kind("throughput_ratio")
class ThroughputRatio(_RatioClaim):
    kind: Literal["throughput_ratio"]
    column: ClassVar[str] = "tokens_per_s_median"


@claim_kind("memory_ratio")
class MemoryRatio(_RatioClaim):
    kind: Literal["memory_ratio"]
    column: ClassVar[str] = "peak_memory_bytes"


@claim_kind("monotonic")
class Monotonic(MetricClaim):
    kind: Literal["monotonic"]
    variants: list[str] = Field(min_length=2)
    x: Optional[list[float]] = None  # e.g. expert counts; the fit is on log2(x), else on the list index
    direction: Literal["decreasing", "increasing"] = "decreasing"

    @model_validator(mode="after")
    def _x_matches(self):
        if self.x is not None and (len(self.x) != len(self.variants) or min(self.x) <= 0):
            raise ValueError("x needs one positive value per variant")
        return self

    def compared(self) -> list[str]:
        return list(self.variants)

    def label(self) -> str:
        return self.name or f"monotonic: {' -> '.join(self.variants)}"

    def judge(self, rs) -> Verdict:
        pts = [(stats.log2(self.x[i]) if self.x else float(i), y)
               for i, v in enumerate(self.variants) for y in rs.seed_values(v, self.metric)]
        if len(pts) < 3 or len({p[0] for p in pts}) < 2:
            return self.no_data(rs, f"{self.metric} for at least two of {', '.join(self.variants)}")
        fit = stats.ols_slope(pts)
        means = [stats.mean(rs.seed_values(v, self.metric)) for v in self.variants]
        sgn = -1 if self.direction == "decreasing" else 1
        ordered = all(sgn * (b - a) > 0 for a, b in zip(means, means[1:]) if a == a and b == b)
        lo, hi = fit["ci_low"], fit["ci_high"]
        v = tri(sgn * lo > 0 and sgn * hi > 0, sgn * lo < 0 and sgn * hi < 0)
        xs = "log2(x)" if self.x else "variant index"
        rule = (f"OLS slope of {self.metric} on {xs} over all seeds; PASS if its 95% CI excludes 0 on the "
                f"{self.direction} side, FAIL if it excludes 0 on the other side, else INCONCLUSIVE")
        numbers = {"slope": fit["slope"], "ci95_slope": [lo, hi], "p_value": fit["p"], "n_points": len(pts),
                   "means": dict(zip(self.variants, means)), "strictly_ordered": ordered}
        reason = (f"slope {fit['slope']:.4g} per {xs}, 95% CI [{lo:.4g}, {hi:.4g}]; means "
                  f"{'strictly' if ordered else 'not strictly'} {self.direction}")
        return self.verdict(rs, v, numbers, reason, rule)


@claim_kind("load_balance")
class LoadBalance(ClaimBase):
    kind: Literal["load_balance"]
    variant: str
    min_entropy: Optional[float] = Field(None, ge=0, le=1)
    max_load_x_E: Optional[float] = Field(None, ge=1)
    max_dead_experts: int = Field(0, ge=0)

    def _checks(self, row) -> list[str]:
        """Violations of one seed; a missing statistic counts as one (a bound on nothing cannot be met)."""
        bounds = (("entropy", self.min_entropy, 1), ("max_load_x_E", self.max_load_x_E, -1),
                  ("dead_experts", self.max_dead_experts, -1))  # sign 1: at least the bound, -1: at most
        return [f"{k} {row[f'experts.{k}']:.3g} {'<' if sign > 0 else '>'} {b:g}" for k, b, sign in bounds
                if b is not None and not sign * (row[f"experts.{k}"] - b) >= 0]

    def judge(self, rs) -> Verdict:
        ok = rs.ok_runs(self.variant)
        if "experts.entropy" not in ok.columns or not ok["experts.entropy"].notna().any():
            return self.no_data(rs, f"expert statistics of {self.variant} (dense, or not recorded)")
        ok = ok[ok["experts.entropy"].notna()]
        per_seed = {int(r["seed"]): self._checks(r) for _, r in ok.iterrows()}
        n_bad = sum(1 for b in per_seed.values() if b)
        v = tri(n_bad == 0, n_bad == len(per_seed))
        numbers = {k: stats.mean([float(x) for x in ok[f"experts.{k}"].dropna()])
                   for k in ("entropy", "max_load_x_E", "dead_experts", "cv", "drop_fraction")}
        numbers["violations"] = {f"seed-{s}": b for s, b in sorted(per_seed.items())}
        rule = ("final expert stats per seed; PASS if every seed meets every bound, FAIL if every seed misses one, "
                "INCONCLUSIVE if seeds disagree")
        reason = (f"{len(per_seed) - n_bad}/{len(per_seed)} seeds within bounds"
                  + (f"; e.g. {next(b for b in per_seed.values() if b)[0]}" if n_bad else ""))
        return self.verdict(rs, v, numbers, reason, rule)


@claim_kind("inference_ratio")
class InferenceRatio(_RatioClaim):
    """Forward speed of two trained models at one batch size (suite `inference:` section), variant / baseline."""

    kind: Literal["inference_ratio"]
    batch_size: int = Field(ge=1)
    metric: Literal["tokens_per_s", "latency_ms"] = "tokens_per_s"

    @property
    def column(self) -> str:
        return f"inference.{self.metric}.b{self.batch_size}"


@claim_kind("flop_accounting")
class FlopAccounting(ClaimBase):
    """Analytic forward FLOPs/token (flops.py) within `tolerance` of FlopCounterMode's count of a real forward."""

    kind: Literal["flop_accounting"]
    variants: list[str] = Field(min_length=1)
    tolerance: float = Field(0.05, gt=0)
    min_tokens_per_param: float = Field(0.0, ge=0)  # counting FLOPs needs no training

    def compared(self) -> list[str]:
        return list(self.variants)

    def judge(self, rs) -> Verdict:
        ratios = {}
        for v in self.variants:
            ok = rs.ok_runs(v)
            pairs = ok[["flops_measured_forward_per_token", "forward_flops_per_token"]].dropna()
            if len(pairs):
                ratios[v] = float((pairs.iloc[:, 0] / pairs.iloc[:, 1]).median())
        if len(ratios) < len(self.variants):
            missing = [v for v in self.variants if v not in ratios]
            return self.no_data(rs, f"measured FLOPs of {', '.join(missing)}")
        bad = {v: r for v, r in ratios.items() if abs(r - 1) > self.tolerance}
        rule = (f"median over seeds of measured / analytic forward FLOPs per token; PASS if every variant is within "
                f"+-{self.tolerance:g}, else FAIL")
        worst = max(ratios, key=lambda v: abs(ratios[v] - 1))
        reason = (f"{len(ratios) - len(bad)}/{len(ratios)} within +-{self.tolerance:g}; worst {worst} "
                  f"{ratios[worst]:.4f}")
        return self.verdict(rs, tri(not bad, bool(bad)), {"ratio": ratios}, reason, rule)


ClaimSpec = Annotated[Union[tuple(CLAIM_KINDS.values())], Field(discriminator="kind")]


def _check_one(i: int, raw, variant_names, problems: list[str]):
    p = f"claims.{i}"
    cls = CLAIM_KINDS.get(raw.get("kind")) if isinstance(raw, dict) else None
    if cls is None:
        kind = raw.get("kind") if isinstance(raw, dict) else None
        problems.append(f"{p}.kind: unknown claim kind {kind!r}{did_you_mean(kind, CLAIM_KINDS)}; choose from "
                        f"{sorted(CLAIM_KINDS)}" if isinstance(raw, dict) else f"{p}: must be a mapping")
        return None
    try:
        spec = cls.model_validate(raw)
    except ValidationError as e:
        for err in e.errors():
            path = ".".join([p, *(str(x) for x in err["loc"])])
            key = err["loc"][-1] if err["loc"] else ""
            msg = {"extra_forbidden": f"unknown key{did_you_mean(key, cls.model_fields)}", "missing": "required"}.get(
                err["type"], err["msg"].removeprefix("Value error, "))
            problems.append(f"{path}: {msg}")
        return None
    if variant_names is not None:
        refs = [(f"{p}.{k}", getattr(spec, k, None)) for k in ("variant", "baseline")]
        refs += [(f"{p}.variants.{j}", v) for j, v in enumerate(getattr(spec, "variants", None) or [])]
        problems += [f"{w}: no variant named {v!r}{did_you_mean(v, variant_names)}" for w, v in refs
                     if v is not None and v not in variant_names]
    return spec


def validate_claims(claims: list, variant_names: list[str] | None, problems: list[str]) -> list:
    """Parse claim dicts, appending one "claims.<i>.<field>: message" per problem; variant names are checked too."""
    specs = [_check_one(i, c, variant_names, problems) for i, c in enumerate(claims or [])]
    return [s for s in specs if s is not None]


def parse_claims(raw: list, variant_names: list[str] | None = None) -> list:
    problems: list[str] = []
    specs = validate_claims(raw, variant_names, problems)
    if problems:
        raise SuiteValidationError(problems)
    return specs


def judge_all(claims: list, rs) -> list[Verdict]:
    specs = [c if isinstance(c, ClaimBase) else parse_claims([c])[0] for c in claims]
    return [CLAIM_KINDS[s.kind].judge(s, rs) for s in specs]
