"""Claim judges, one per kind (specs in moebench.config.claims): ResultSet -> Verdict with numbers, a one-line
reason and the rule applied.

Expert statistics read from summary.json "experts" (written by the trainer, models/counters.py summarize()):
  entropy        load entropy H(load) / log E in [0, 1], mean over MoE layers (1 = perfectly balanced)
  max_load_x_E   max over experts of load share x E, max over layers (1 = balanced; Shazeer et al. saw 17.8)
  dead_experts   experts whose load share < dead_threshold / E, summed over layers
  cv             coefficient of variation of the load (std / mean), mean over layers
  drop_fraction  fraction of routed pairs dropped by the capacity limit (0 when dropless)
Every other scalar there (router_entropy, z_loss, lb_loss) is carried into ResultSet.runs as experts.<key>.
"""
from __future__ import annotations

from typing import Any

from moebench.analysis import stats
from moebench.config.claims import (FlopAccounting, LoadBalance, LossBetter, Monotonic, RatioClaim,
                                    SpeedupToLoss)

from .base import FAIL, JUDGES, Verdict, no_data, tri, verdict


@JUDGES.register("speedup_to_loss")
def judge_speedup(c: SpeedupToLoss, rs) -> Verdict:
    base_final = rs.seed_values(c.baseline, "val_loss")
    if not base_final or not len(stats.mean_curve(rs, c.variant)):
        return no_data(c, rs, f"val loss of {c.baseline} or eval curve of {c.variant}")
    target = sum(base_final) / len(base_final)
    rule = (f"speedup = baseline {c.axis} at end / {c.variant}'s {c.axis} to reach the baseline's final "
            f"val loss (mean over seeds, linear interpolation between evals); PASS if >= {c.min:g} and "
            f"every seed's own speedup is too, INCONCLUSIVE if seeds straddle {c.min:g}")
    numbers: dict[str, Any] = {"target_val_loss": target, "axis": c.axis, "required_min": c.min}
    base_x = stats.final_axis_values(rs, c.baseline)
    curve = stats.mean_curve(rs, c.variant)
    reach = stats.reach_point(curve, target)
    if reach is None:
        best = float(curve["val_loss"].min())
        numbers["best_val_loss"] = best
        return verdict(c, rs, FAIL, numbers, f"{c.variant} never reached {target:.4f} (best {best:.4f})", rule)
    for ax in stats.AXES:
        numbers[f"{ax}_to_target"] = reach[ax]
        numbers[f"baseline_{ax}"] = base_x[ax]
        numbers[f"speedup_{ax}"] = base_x[ax] / reach[ax] if reach[ax] else float("inf")
    # a seed that never gets there counts as speedup 0
    per_seed = [base_x[c.axis] / r[c.axis] if r else 0.0
                for r in (stats.reach_point(s, target) for s in stats.seed_curves(rs, c.variant))]
    numbers["speedup_per_seed"] = per_seed
    s = numbers[f"speedup_{c.axis}"]
    need = c.min * (1 - 1e-9)  # a hand-exact 1.5x must not fail on float rounding
    v = tri(s >= need and min(per_seed) >= need, s < need and max(per_seed) < need)
    reason = (f"{c.axis} speedup {s:.3g}x vs required {c.min:g}x "
              f"(per seed {', '.join(f'{x:.3g}' for x in per_seed)})")
    return verdict(c, rs, v, numbers, reason, rule)


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
               "n": [len(a), len(b)], "margin": c.margin}
    better = "lower" if c.lower_is_better else "higher"
    rule = (f"improvement = {better}-is-better difference of seed means; Welch 95% CI; PASS if CI > margin "
            f"{c.margin:g}, FAIL if CI < margin, else INCONCLUSIVE")
    v = tri(imp_lo > c.margin, imp_hi < c.margin)
    reason = (f"{c.metric} {w['mean_a']:.4f} vs {w['mean_b']:.4f}: improvement {sign * w['diff']:.4f}, "
              f"95% CI [{imp_lo:.4f}, {imp_hi:.4f}] vs margin {c.margin:g}, p={w['p']:.3g}")
    return verdict(c, rs, v, numbers, reason, rule)


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
    pts = [(stats.log2(c.x[i]) if c.x else float(i), y)
           for i, v in enumerate(c.variants) for y in rs.seed_values(v, c.metric)]
    if len(pts) < 3 or len({p[0] for p in pts}) < 2:
        return no_data(c, rs, f"{c.metric} for at least two of {', '.join(c.variants)}")
    fit = stats.ols_slope(pts)
    means = [stats.mean(rs.seed_values(v, c.metric)) for v in c.variants]
    sgn = -1 if c.direction == "decreasing" else 1
    ordered = all(sgn * (b - a) > 0 for a, b in zip(means, means[1:]) if a == a and b == b)
    lo, hi = fit["ci_low"], fit["ci_high"]
    v = tri(sgn * lo > 0 and sgn * hi > 0, sgn * lo < 0 and sgn * hi < 0)
    xs = "log2(x)" if c.x else "variant index"
    rule = (f"OLS slope of {c.metric} on {xs} over all seeds; PASS if its 95% CI excludes 0 on the "
            f"{c.direction} side, FAIL if it excludes 0 on the other side, else INCONCLUSIVE")
    numbers = {"slope": fit["slope"], "ci95_slope": [lo, hi], "p_value": fit["p"], "n_points": len(pts),
               "means": dict(zip(c.variants, means)), "strictly_ordered": ordered}
    reason = (f"slope {fit['slope']:.4g} per {xs}, 95% CI [{lo:.4g}, {hi:.4g}]; means "
              f"{'strictly' if ordered else 'not strictly'} {c.direction}")
    return verdict(c, rs, v, numbers, reason, rule)


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



