"""Claim judges, one per kind (specs in moebench.config.claims): ResultSet -> Verdict with numbers, a one-line
reason and the rule applied.

Expert statistics read from summary.json "experts" (written by the trainer, models/counters.py expert_stats()):
  entropy        load entropy H(load) / log E in [0, 1], mean over MoE layers (1 = perfectly balanced)
  max_load_x_E   max over experts of load share x E, max over layers (1 = balanced; Shazeer et al. saw 17.8)
  dead_experts   experts whose load share < dead_threshold / E, summed over layers
  cv             coefficient of variation of the load (std / mean), mean over layers
  drop_fraction  fraction of routed pairs dropped by the capacity limit (0 when dropless)
Every other scalar there (router_entropy, z_loss, lb_loss) is carried into ResultSet.runs as experts.<key>.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from moebench.analysis import decide, power, speedup, stats
from moebench.config.claims import (FlopAccounting, LoadBalance, LossBetter, LossEquivalent, Monotonic, RatioClaim,
                                    SpeedupToLoss)

from .base import FAIL, INCONCLUSIVE, JUDGES, PASS, Verdict, no_data, tri, verdict


def _noise(rs, baseline: str, metric: str) -> dict:
    """The noise floor: seed-to-seed sd of the baseline's final metric, the unit effects are shown in."""
    return {"noise_floor_sd": stats.sd(rs.seed_values(baseline, metric)), "noise_floor_of": f"{baseline} {metric}"}


def _in_noise_units(effect: float, numbers: dict) -> float:
    sd = numbers["noise_floor_sd"]
    return effect / sd if sd == sd and sd > 0 else float("nan")


def _control(c, rs, metric: str, numbers: dict) -> str:
    """The claim's control variant (computes the same function as the baseline): its measured difference, the
    size of a difference that is known to be no effect. Returns a clause for the reason ("" without a control)."""
    if not c.control:
        return ""
    a, b = rs.seed_values(c.control, metric), rs.seed_values(c.baseline, metric)
    if not a or not b:
        return f"; control {c.control}: no data"
    w = stats.welch(a, b)
    numbers.update({"control": c.control, "control_minus_baseline": w["diff"],
                    "ci95_control_minus_baseline": [w["ci_low"], w["ci_high"]]})
    return (f"; control {c.control} - {c.baseline}: {w['diff']:+.4f} {metric}, "
            f"95% CI [{w['ci_low']:.4f}, {w['ci_high']:.4f}]")


SPEEDUP_RULE = (
    "speedup = how many times sooner {variant} reaches the target on {axis}: a log-normal accelerated-failure-time "
    "fit by maximum likelihood on every seed's time to target (nothing discarded); target = each baseline seed's "
    "{target} val loss, for a {variant} seed its same-seed partner's (same batches) or, without one, the mean "
    "baseline target; a curve reaches the target where it crosses it for the last time and stays at or below it "
    "to its last eval (interpolated between evals){best_note}; a {variant} seed still above the target at its end "
    "is right-censored there (it lowers the estimate, it vetoes nothing); 95% interval: profile likelihood of the "
    "{variant}'s log time turned into a t statistic (exactly Welch's t on log times when nothing is censored), "
    "combined with the baseline mean's standard error (Welch df). PASS if its low end >= {min:g}, FAIL if its "
    "high end < {min:g}, else INCONCLUSIVE")


@JUDGES.register("speedup_to_loss")
def judge_speedup(c: SpeedupToLoss, rs) -> Verdict:
    base, var = speedup.seed_curves(rs, c.baseline), speedup.seed_curves(rs, c.variant)
    if not base or not var:
        return no_data(c, rs, f"eval curves of {c.baseline} and {c.variant}")
    axes = [c.axis] + [ax for ax in stats.AXES if ax != c.axis]  # the others: point estimates only
    fits = speedup.fit_axes(base, var, axes, c.target, c.min)
    s = fits[0]
    need = c.min * speedup.NEED
    v = PASS if s.ci_low >= need else FAIL if s.ci_high < need else INCONCLUSIVE
    censored = [p for p in s.pairs if p.time is None]
    noise = speedup.SpeedupNoise.from_fit(s)
    numbers: dict[str, Any] = {
        "axis": c.axis, "target": c.target, "required_min": c.min, f"speedup_{c.axis}": s.estimate,
        "ci95_speedup": [s.ci_low, s.ci_high], "paired": s.obs.paired, "n": [len(base), len(var)],
        "speedup_per_seed": [p.ratio for p in s.pairs], "censored_seeds": [p.seed for p in censored],
        "target_val_loss": stats.mean(p.target for p in s.pairs), "p_one_sided": s.p_one_sided,
        "estimate_is_upper_bound": s.bounded,
        "noise": dataclasses.asdict(noise)}
    for ax, f in zip(axes[1:], fits[1:]):
        numbers[f"speedup_{ax}"] = f.estimate
    numbers.update(_noise(rs, c.baseline, "val_loss"))
    diff = stats.mean(rs.seed_values(c.baseline, "val_loss")) - stats.mean(rs.seed_values(c.variant, "val_loss"))
    numbers.update(final_val_loss_improvement=diff, effect_noise_units=_in_noise_units(diff, numbers))
    seeds = ", ".join(f"{p.ratio:.3g}{'<' if p.time is None else ''}" for p in s.pairs)
    alone = sorted({b.seed for b in base} ^ {x.seed for x in var})
    reason = (f"{c.axis} speedup {'<= ' if s.bounded else ''}{s.estimate:.3g}x, 95% CI [{s.ci_low:.3g}, "
              f"{s.ci_high:.3g}] vs required {c.min:g}x (per {c.variant} seed {seeds}"
              + (f"; {len(censored)} never reached the target: censored, '<' marks its upper bound" if censored
                 else "") + f"; {len(base)} {c.baseline} + {len(var)} {c.variant} seeds"
              + (f", without a partner (timed to the mean target): {', '.join(map(str, alone))}" if alone else "")
              + ")")
    if alone:
        numbers["unpaired_seeds"] = alone
    if s.bounded:
        reason += "; no finite likelihood maximum (too few seeds reached the target): the estimate is an upper bound"
    reason += _control(c, rs, "val_loss", numbers)
    best_note = "; the baseline's own time for `best` is where it first gets to its best" \
        if c.target == "best" else ""
    rule = SPEEDUP_RULE.format(axis=c.axis, variant=c.variant, target=c.target, best_note=best_note, min=c.min)
    return verdict(c, rs, v, numbers, reason, rule, spread="val_loss")


@JUDGES.register("loss_better")
def judge_loss_better(c: LossBetter, rs) -> Verdict:
    a, b = rs.seed_values(c.variant, c.metric), rs.seed_values(c.baseline, c.metric)
    if not a or not b:
        return no_data(c, rs, f"{c.metric} of {c.variant} and {c.baseline}")
    sign = -1.0 if c.lower_is_better else 1.0
    w = stats.welch(a, b)  # CI of mean(a) - mean(b)
    imp_lo, imp_hi = sorted((sign * w["ci_low"], sign * w["ci_high"]))
    numbers = {f"{c.variant}_mean": w["mean_a"], f"{c.baseline}_mean": w["mean_b"],
               "improvement": sign * w["diff"], "ci95_improvement": [imp_lo, imp_hi], "p_value": w["p"],
               "n": [len(a), len(b)], "margin": c.margin,
               "p_one_sided": stats.p_above(sign * w["diff"], c.margin, w.get("se", math.nan), w.get("df", math.nan)),
               **_noise(rs, c.baseline, c.metric)}
    numbers["effect_noise_units"] = _in_noise_units(sign * w["diff"], numbers)
    better = "lower" if c.lower_is_better else "higher"
    rule = (f"improvement = {better}-is-better difference of seed means; Welch 95% CI; PASS if CI > margin "
            f"{c.margin:g}, FAIL if CI < margin, else INCONCLUSIVE")
    v = decide.name(decide.loss_better(np.array([a]), np.array([b]), c.margin, c.lower_is_better)[0])
    reason = (f"{c.metric} {w['mean_a']:.4f} vs {w['mean_b']:.4f}: improvement {sign * w['diff']:.4f}, "
              f"95% CI [{imp_lo:.4f}, {imp_hi:.4f}] vs margin {c.margin:g}, p={w['p']:.3g}")
    reason += _control(c, rs, c.metric, numbers)
    return verdict(c, rs, v, numbers, reason, rule, spread=c.metric)


@JUDGES.register("loss_equivalent")
def judge_loss_equivalent(c: LossEquivalent, rs) -> Verdict:
    """Two one-sided tests (Schuirmann 1987) at 5% each: PASS when the 90% Welch CI of the difference lies
    inside (-margin, margin), which is both one-sided tests rejecting; FAIL when the 95% CI lies wholly outside
    the band; else INCONCLUSIVE. With a true difference of exactly the margin, PASS comes at most 5% of the time
    (tests/analysis/test_null_calibration.py)."""
    a, b = rs.seed_values(c.variant, c.metric), rs.seed_values(c.baseline, c.metric)
    if not a or not b:
        return no_data(c, rs, f"{c.metric} of {c.variant} and {c.baseline}")
    w90, w95 = stats.welch(a, b, level=0.90), stats.welch(a, b)
    m = c.margin
    numbers = {f"{c.variant}_mean": w90["mean_a"], f"{c.baseline}_mean": w90["mean_b"], "difference": w90["diff"],
               "ci90_difference": [w90["ci_low"], w90["ci_high"]], "ci95_difference": [w95["ci_low"], w95["ci_high"]],
               "margin": m, "n": [len(a), len(b)], **_noise(rs, c.baseline, c.metric)}
    v = decide.name(decide.loss_equivalent(np.array([a]), np.array([b]), m)[0])
    rule = (f"two one-sided tests at 5%: PASS if the 90% Welch CI of the difference is inside (-{m:g}, {m:g}), "
            f"FAIL if the 95% CI is wholly outside it, else INCONCLUSIVE")
    reason = (f"{c.metric} {w90['mean_a']:.4f} vs {w90['mean_b']:.4f}: difference {w90['diff']:.4f}, 90% CI "
              f"[{w90['ci_low']:.4f}, {w90['ci_high']:.4f}] vs margin +-{m:g}")
    return verdict(c, rs, v, numbers, reason, rule, spread=c.metric)


def judge_ratio(c: RatioClaim, rs) -> Verdict:
    sbs = stats.sidebyside_ratio(rs.sidebyside, c.variant, c.baseline) if c.kind == "throughput_ratio" else None
    if sbs is not None:
        return _judge_sidebyside(c, rs, sbs)
    a, b = rs.seed_values(c.variant, c.column), rs.seed_values(c.baseline, c.column)
    if not a or not b or min(b) <= 0:
        return no_data(c, rs, f"{c.column} of {c.variant} and {c.baseline}")
    r = stats.median(a) / stats.median(b)
    lo, hi = min(a) / max(b), max(a) / min(b)  # every seed pairing lies in [lo, hi]
    ok = lambda x: (c.min is None or x >= c.min) and (c.max is None or x <= c.max)  # noqa: E731
    v = tri(all(map(ok, (lo, r, hi))), not any(map(ok, (lo, r, hi))))
    bounds = " and ".join(s for s in (c.min is not None and f">= {c.min:g}",
                                      c.max is not None and f"<= {c.max:g}") if s)
    rule = (f"ratio = median {c.column} {c.variant} / {c.baseline}; PASS if it and every seed pairing "
            f"(range [min/max, max/min]) are {bounds}, FAIL if none are, else INCONCLUSIVE")
    numbers = {"ratio": r, "range": [lo, hi], f"{c.variant}_median": stats.median(a),
               f"{c.baseline}_median": stats.median(b)}
    return verdict(c, rs, v, numbers, f"ratio {r:.3g} (seed range {lo:.3g}-{hi:.3g}), required {bounds}", rule)


def _judge_sidebyside(c: RatioClaim, rs, sbs: dict) -> Verdict:
    """Throughput from the interleaved side-by-side timing: runs trained one after another saw different load."""
    ok = lambda x: (c.min is None or x >= c.min) and (c.max is None or x <= c.max)  # noqa: E731
    lo, hi = sbs["band"]
    v = tri(all(map(ok, (lo, sbs["ratio"], hi))), not any(map(ok, (lo, sbs["ratio"], hi))))
    bounds = " and ".join(s for s in (c.min is not None and f">= {c.min:g}",
                                      c.max is not None and f"<= {c.max:g}") if s)
    load = (rs.sidebyside or {}).get("loadavg")
    rule = (f"ratio = tokens/s {c.variant} / {c.baseline} timed side by side (training steps interleaved in one "
            f"process, {sbs['rounds']} rounds; median of the per-round paired ratios); PASS if it and the 10th-90th "
            f"percentile band of the per-round ratios are {bounds}, FAIL if none are, else INCONCLUSIVE")
    numbers = {"ratio": sbs["ratio"], "range": [lo, hi], "method": "sidebyside", "rounds": sbs["rounds"],
               "loadavg": load}
    reason = (f"ratio {sbs['ratio']:.3g} side by side (per-round band {lo:.3g}-{hi:.3g}, load average "
              f"{load[0][0]:.1f} at start), required {bounds}" if load else
              f"ratio {sbs['ratio']:.3g} side by side (per-round band {lo:.3g}-{hi:.3g}), required {bounds}")
    return verdict(c, rs, v, numbers, reason, rule)


for _kind in ("throughput_ratio", "memory_ratio", "inference_ratio"):
    JUDGES.add(_kind, judge_ratio)


@JUDGES.register("monotonic")
def judge_monotonic(c: Monotonic, rs) -> Verdict:
    # ordered by x: the strict-ordering and reversed-step checks read neighbours in x, as the slope does
    names, xs_of = power.monotonic_xs(c)
    vals = [rs.seed_values(v, c.metric) for v in names]
    pts = [(x, y) for x, ys in zip(xs_of, vals) for y in ys]
    if len(pts) < 3 or len({p[0] for p in pts}) < 2 or not all(vals):
        return no_data(c, rs, f"{c.metric} for every one of {', '.join(c.variants)}")
    fit = stats.ols_slope(pts)
    means = [stats.mean(ys) for ys in vals]
    sgn = -1 if c.direction == "decreasing" else 1
    ordered = all(sgn * (b - a) > 0 for a, b in zip(means, means[1:]))
    # an adjacent step that goes the wrong way beyond noise (Welch, Bonferroni over the k - 1 steps) refutes
    # monotonicity even when the overall slope agrees
    level = 1 - 0.05 / (len(vals) - 1)
    steps = decide.reversed_steps([np.array(x) for x in vals], c.direction == "decreasing")
    reversed_ = [f"{names[i]} -> {names[i + 1]}" for i, r in enumerate(steps) if r]
    lo, hi = fit["ci_low"], fit["ci_high"]
    v = decide.name(decide.monotonic([np.array([x]) for x in vals], xs_of, c.direction == "decreasing")[0])
    xs = "log2(x)" if c.x else "variant index"
    rule = (f"OLS slope of {c.metric} on {xs} over all seeds with its 95% CI, and the seed means in order; PASS "
            f"if the CI excludes 0 on the {c.direction} side AND the means are strictly {c.direction}; FAIL if the "
            f"CI excludes 0 on the other side or an adjacent step goes the other way beyond noise (Welch "
            f"{level:.1%} CI: Bonferroni over {len(steps)} adjacent step{'s' if len(steps) > 1 else ''}), "
            f"else INCONCLUSIVE")
    numbers = {"slope": fit["slope"], "ci95_slope": [lo, hi], "p_value": fit["p"], "n_points": len(pts),
               "means": dict(zip(names, means)), "strictly_ordered": ordered, "reversed_steps": reversed_,
               "p_one_sided": stats.p_above(sgn * fit["slope"], 0.0, fit["se"], fit["df"]),
               **_noise(rs, names[0], c.metric)}
    numbers["improvement_first_to_last"] = sgn * (means[-1] - means[0])
    numbers["effect_noise_units"] = _in_noise_units(numbers["improvement_first_to_last"], numbers)
    reason = (f"slope {fit['slope']:.4g} per {xs}, 95% CI [{lo:.4g}, {hi:.4g}]; means "
              f"{'strictly' if ordered else 'not strictly'} {c.direction}"
              + (f"; reversed beyond noise: {', '.join(reversed_)}" if reversed_ else ""))
    return verdict(c, rs, v, numbers, reason, rule, spread=c.metric)


def _balance_violations(c: LoadBalance, row) -> list[str]:
    """Violations of one seed; a missing statistic counts as one (a bound on nothing cannot be met)."""
    bounds = (("entropy", c.min_entropy, 1), ("max_load_x_E", c.max_load_x_E, -1),
              ("dead_experts", c.max_dead_experts, -1))  # sign 1: at least the bound, -1: at most
    return [f"{k} {row[f'experts.{k}']:.3g} {'<' if sign > 0 else '>'} {b:g}" for k, b, sign in bounds
            if b is not None and not sign * (row[f"experts.{k}"] - b) >= 0]


@JUDGES.register("load_balance")
def judge_load_balance(c: LoadBalance, rs) -> Verdict:
    ok = rs.ok_runs(c.variant)
    if "experts.entropy" not in ok.columns or not ok["experts.entropy"].notna().any():
        return no_data(c, rs, f"expert statistics of {c.variant} (dense, or not recorded)")
    ok = ok[ok["experts.entropy"].notna()]
    per_seed = {int(r["seed"]): _balance_violations(c, r) for _, r in ok.iterrows()}
    n_bad = sum(1 for b in per_seed.values() if b)
    v = tri(n_bad == 0, n_bad == len(per_seed))
    numbers = {k: stats.mean([float(x) for x in ok[f"experts.{k}"].dropna()])
               for k in ("entropy", "max_load_x_E", "dead_experts", "cv", "drop_fraction")}
    numbers["violations"] = {f"seed-{s}": b for s, b in sorted(per_seed.items())}
    rule = ("final expert stats per seed; PASS if every seed meets every bound, FAIL if every seed misses one, "
            "INCONCLUSIVE if seeds disagree")
    reason = (f"{len(per_seed) - n_bad}/{len(per_seed)} seeds within bounds"
              + (f"; e.g. {next(b for b in per_seed.values() if b)[0]}" if n_bad else ""))
    return verdict(c, rs, v, numbers, reason, rule)


@JUDGES.register("flop_accounting")
def judge_flop_accounting(c: FlopAccounting, rs) -> Verdict:
    ratios = {}
    for v in c.variants:
        ok = rs.ok_runs(v)
        pairs = ok[["flops_measured_forward_per_token", "forward_flops_per_token"]].dropna()
        if len(pairs):
            ratios[v] = float((pairs.iloc[:, 0] / pairs.iloc[:, 1]).median())
    if len(ratios) < len(c.variants):
        missing = [v for v in c.variants if v not in ratios]
        return no_data(c, rs, f"measured FLOPs of {', '.join(missing)}")
    bad = {v: r for v, r in ratios.items() if abs(r - 1) > c.tolerance}
    rule = (f"median over seeds of measured / analytic forward FLOPs per token; PASS if every variant is within "
            f"+-{c.tolerance:g}, else FAIL")
    worst = max(ratios, key=lambda v: abs(ratios[v] - 1))
    reason = f"{len(ratios) - len(bad)}/{len(ratios)} within +-{c.tolerance:g}; worst {worst} {ratios[worst]:.4f}"
    return verdict(c, rs, tri(not bad, bool(bad)), {"ratio": ratios}, reason, rule)



