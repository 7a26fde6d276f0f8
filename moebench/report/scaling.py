"""The report's scaling section (suites with a `sweep:` only): loss against training FLOPs with each variant's
points and fitted curve, the compute multiplier against loss, the fit's parameters with bootstrap intervals, and
the residuals per size. Fits and intervals come from moebench.analysis.scaling (one bootstrap, fixed RNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from moebench.analysis import scaling  # noqa: E402

from .plots import _palette, _save  # noqa: E402
from .tables import Table, fmt, si  # noqa: E402

GRID = 60  # points along each fitted curve


def suite_baseline(suite: dict) -> str | None:
    """The suite's baseline from its resolved YAML: match.baseline, else the first dense variant."""
    variants = suite.get("variants") or {}
    named = (suite.get("match") or {}).get("baseline")
    return named or next((n for n, v in variants.items() if (v or {}).get("kind") == "dense"), None)


def _ci(samples) -> str:
    lo, hi = scaling.interval(samples)
    return f"[{fmt(lo)}, {fmt(hi)}]"


def params_table(fit: scaling.Fit, boots: list, points: list) -> Table:
    rows = []
    for v, c in fit.curves.items():
        pts = [p for p in points if p.variant == v]
        res = np.log(fit.loss(v, [p.flops for p in pts])) - np.log([p.loss for p in pts])
        l_inf = f"{fmt(fit.l_inf)} {_ci([b.l_inf for b in boots])}" if fit.shared else f"{fmt(fit.l_inf)} (fixed)"
        rows.append([v, l_inf,
                     f"{fmt(float(np.exp(c.log_a)))} {_ci([float(np.exp(b.curves[v].log_a)) for b in boots])}",
                     f"{fmt(c.alpha)} {_ci([b.curves[v].alpha for b in boots])}",
                     fmt(float(np.sqrt(np.mean(res ** 2)))), str(len({p.size for p in pts})), str(len(pts))])
    return (["variant", "L_inf [95% CI]", f"A = loss above L_inf at C0 = {si(fit.c0, 'FLOPs')} [95% CI]",
             "alpha [95% CI]", "RMS log residual", "sizes", "runs"], rows)


def residuals_table(fit: scaling.Fit, points: list, baseline: str | None) -> Table:
    rows = []
    for v in fit.curves:
        direct = ({r["size"]: r for r in scaling.direct_multipliers(points, baseline, v)}
                  if baseline and v != baseline else {})
        for size, c, loss, n in scaling.cells(points, v):
            pred = float(fit.loss(v, c))
            d = direct.get(size, {}).get("multiplier")
            fitted = "-"
            if direct:
                fitted = fmt(scaling.multiplier(fit, baseline, v, loss), 3)
                fitted += "" if scaling.covered(fit, points, baseline, loss) else " (extrapolated)"
            rows.append([v, size, si(c, "FLOPs"), str(n), fmt(loss), fmt(pred), f"{loss - pred:+.4f}",
                         fmt(d, 3) if direct else "-", fitted])
    return (["variant", "size", "training FLOPs (mean)", "seeds", "val loss (mean)", "fitted", "residual",
             f"multiplier vs {baseline}, measured (interpolated, no fit)", "multiplier from the fits at that loss"],
            rows)


def _band(boots, variant: str, grid) -> tuple[np.ndarray, np.ndarray]:
    curves = np.array([b.loss(variant, grid) for b in boots])
    return np.percentile(curves, 2.5, axis=0), np.percentile(curves, 97.5, axis=0)


def loss_plot(fit, boots, points, out_dir: Path) -> str:
    pal = _palette(list(fit.curves))
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for v in fit.curves:
        pts = [p for p in points if p.variant == v]
        cs = [p.flops for p in pts]
        grid = np.geomspace(min(cs), max(cs), GRID)
        ax.scatter(cs, [p.loss for p in pts], color=pal[v], s=14, zorder=3, label=f"{v} (runs)")
        ax.plot(grid, fit.loss(v, grid), color=pal[v], label=f"{v} fit, alpha {fit.curves[v].alpha:.3g}")
        lo, hi = _band(boots, v, grid)
        ax.fill_between(grid, lo, hi, color=pal[v], alpha=0.2, lw=0)
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs", ylabel="final val loss",
           title=f"Loss vs compute: L = L_inf + A C^-alpha, L_inf {fit.l_inf:.3g} "
                 f"({'shared' if fit.shared else 'fixed'}); bands: bootstrap 95%")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "scaling_loss_vs_flops.png")


def multiplier_plot(fit, boots, points, baseline: str, out_dir: Path) -> str | None:
    others = [v for v in fit.curves if v != baseline]
    if baseline not in fit.curves or not others:
        return None
    pal = _palette(list(fit.curves))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in others:
        # losses both fits reach inside their measured compute: the multiplier is read there only
        ends = [float(fit.loss(u, c)) for u in (v, baseline)
                for c in (min(p.flops for p in points if p.variant == u),
                          max(p.flops for p in points if p.variant == u))]
        lo_l, hi_l = max(ends[1], ends[3]), min(ends[0], ends[2])
        if lo_l < hi_l:
            grid = np.linspace(lo_l, hi_l, GRID)
            ax.plot(grid, [scaling.multiplier(fit, baseline, v, x) for x in grid], color=pal[v], label=f"{v} (fit)")
            # order statistics, as the claim's interval: a resample that never reaches L gives inf or nan
            band = np.array([scaling.interval([scaling.multiplier(b, baseline, v, x) for b in boots]) for x in grid])
            ax.fill_between(grid, band[:, 0], np.minimum(band[:, 1], 1e6), color=pal[v], alpha=0.2, lw=0)
        direct = [r for r in scaling.direct_multipliers(points, baseline, v) if r["multiplier"] is not None]
        ax.scatter([r["loss"] for r in direct], [r["multiplier"] for r in direct], color=pal[v], marker="D", s=24,
                   zorder=3, label=f"{v} measured per size (no fit)")
    ax.axhline(1.0, color="black", lw=1, ls="--")
    ax.set(xlabel="val loss", ylabel=f"compute multiplier vs {baseline} (log scale)", yscale="log",
           title=f"C_{baseline}(L) / C_variant(L): how many times more compute {baseline} needs for loss L")
    ax.title.set_fontsize(9)
    ax.invert_xaxis()  # lower loss (more compute) to the right
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "scaling_multiplier_vs_loss.png")


def scaling_blocks(rs, img_dir: Path) -> list:
    """Report blocks of the scaling section; [] for a suite without a sweep."""
    sweep = rs.suite.get("sweep")
    if not sweep:
        return []
    head = [("h2", "Scaling sweep: loss vs compute")]
    points = scaling.sweep_points(rs)
    l_inf = sweep.get("l_inf", "shared")
    try:
        fit = scaling.fit(points, l_inf)
    except scaling.FitError as err:
        return head + [("p", f"No fit: {err}.")]
    boots = scaling.bootstrap(points, fit, l_inf)
    baseline = suite_baseline(rs.suite)
    blocks = head + [("p", (
        f"Per variant, final validation loss against training FLOPs (train FLOPs/token x tokens) of every finished "
        f"seed at every size, fitted as L(C) = L_inf + A (C/C0)^-alpha with a Huber loss on log residuals; L_inf is "
        + ("one value shared by all variants, bounded to [0, the lowest loss)" if fit.shared
           else "fixed by sweep.l_inf")
        + f". Intervals: {len(boots)} bootstrap resamples of the seeds of each (variant, size), fixed RNG. "
        f"The compute multiplier C_{baseline}(L) / C_variant(L) is how many times more training compute {baseline} "
        f"needs to reach loss L; the measured column interpolates {baseline}'s points (in log C) with no fit, so the "
        f"fit can be checked by eye; n/a where that would extrapolate.")),
        ("h3", "Fit parameters"), ("table", params_table(fit, boots, points)),
        ("h3", "Per size: fit residuals and compute multipliers"), ("table", residuals_table(fit, points, baseline)),
        ("h3", "Loss vs training FLOPs"), ("img", "Loss vs training FLOPs", loss_plot(fit, boots, points, img_dir))]
    mplot = multiplier_plot(fit, boots, points, baseline, img_dir) if baseline else None
    if mplot:
        blocks += [("h3", "Compute multiplier vs loss"), ("img", "Compute multiplier vs loss", mplot)]
    return blocks
