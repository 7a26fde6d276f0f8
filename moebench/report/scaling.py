"""The report's scaling section (suites with a `sweep:` only): the plateau check, the lack-of-fit test of the law,
loss against training FLOPs with each variant's points and fitted curve, the compute multiplier against loss, the
fit's parameters and the per-size z and multipliers. Fit and intervals: moebench.analysis.lawfit (the law fitted
to cell means, cell deviations as a random effect, delta-method intervals), the same the compute_multiplier claim
reads."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats as st  # noqa: E402

from moebench.analysis import lawfit, multiplier_rule, scaling  # noqa: E402

from .plots import _palette, _save  # noqa: E402
from .tables import Table, fmt, si  # noqa: E402

GRID = 60  # points along each fitted curve


def suite_baseline(suite: dict) -> str | None:
    """The suite's baseline from its resolved YAML: match.baseline, else the first dense variant."""
    variants = suite.get("variants") or {}
    named = (suite.get("match") or {}).get("baseline")
    return named or next((n for n, v in variants.items() if (v or {}).get("kind") == "dense"), None)


def _t(law: lawfit.LawFit) -> float:
    return float(st.t.ppf(0.975, max(law.df, 1)))


def _ci_param(law: lawfit.LawFit, k: int, fn=lambda x: x) -> str:
    th, se = lawfit.theta_of(law.fit)[k], float(np.sqrt(max(law.cov[k, k], 0.0)))
    lo, hi = sorted((fn(th - _t(law) * se), fn(th + _t(law) * se)))
    return f"{fmt(fn(th))} [{fmt(lo)}, {fmt(hi)}]"


def params_table(law: lawfit.LawFit) -> Table:
    rows, off = [], 1 if law.fit.shared else 0
    for i, (v, c) in enumerate(law.fit.curves.items()):
        cells = [x for x in law.cells if x.variant == v]
        l_inf = _ci_param(law, 0) if law.fit.shared else f"{fmt(law.fit.l_inf)} (fixed)"
        rows.append([v, l_inf, _ci_param(law, off + 2 * i, np.exp), _ci_param(law, off + 2 * i + 1),
                     str(len(cells)), str(sum(x.n for x in cells))])
    return (["variant", "L_inf [95% CI]", f"A = loss above L_inf at C0 = {si(law.fit.c0, 'FLOPs')} [95% CI]",
             "alpha [95% CI]", "sizes", "runs"], rows)


def residuals_table(law: lawfit.LawFit, points: list, baseline: str | None, excluded: tuple) -> Table:
    z = {(v, s): x for v, s, x in law.z}
    kept = [p for p in points if p.size not in excluded]  # a plateau size is no point to interpolate through
    rows = []
    for v in law.fit.curves:
        direct = ({r["size"]: r for r in scaling.direct_multipliers(kept, baseline, v)}
                  if baseline and v != baseline and baseline in law.fit.curves else {})
        for size, c, loss, n in scaling.cells(points, v):
            d = direct.get(size, {}).get("multiplier")
            if size in excluded:
                rows.append([v, size, si(c, "FLOPs"), str(n), fmt(loss), "left out (plateau)", "-", "-", "-", "-"])
                continue
            pred = float(law.fit.loss(v, c))
            fitted = "-"
            if direct:
                fitted = fmt(scaling.multiplier(law.fit, baseline, v, loss), 3)
                cs = [x.flops for x in law.cells if x.variant == baseline]
                inside = float(law.fit.loss(baseline, max(cs))) <= loss <= float(law.fit.loss(baseline, min(cs)))
                fitted += "" if inside else " (extrapolated)"
            rows.append([v, size, si(c, "FLOPs"), str(n), fmt(loss), fmt(pred), f"{loss - pred:+.4f}",
                         f"{z.get((v, size), float('nan')):+.2f}", fmt(d, 3) if direct else "-", fitted])
    head = ["variant", "size", "training FLOPs (mean)", "seeds", "val loss (mean)", "fitted", "residual",
            "z (residual / seed s.e.)", f"multiplier vs {baseline}, measured (interpolated, no fit)",
            "multiplier from the fits at that loss"]
    return head, rows


def _band(law: lawfit.LawFit, variant: str, grid) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise delta-method 95% band of the fitted curve."""
    theta = lawfit.theta_of(law.fit)
    base = law.fit.loss(variant, grid)
    jac = np.zeros((len(grid), len(theta)))
    for k in range(len(theta)):
        up = theta.copy()
        h = 1e-6 * max(1.0, abs(theta[k]))
        up[k] += h
        jac[:, k] = (lawfit.with_theta(law.fit, up).loss(variant, grid) - base) / h
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, law.cov, jac), 0.0))
    return base - _t(law) * se, base + _t(law) * se


def loss_plot(law: lawfit.LawFit, points, excluded: tuple, out_dir: Path) -> str:
    pal = _palette(list(law.fit.curves))
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for v in law.fit.curves:
        pts = [p for p in points if p.variant == v]
        kept = [p for p in pts if p.size not in excluded]
        out = [p for p in pts if p.size in excluded]
        cs = [p.flops for p in kept]
        grid = np.geomspace(min(cs), max(cs), GRID)
        ax.scatter(cs, [p.loss for p in kept], color=pal[v], s=14, zorder=3, label=f"{v} (runs)")
        if out:
            ax.scatter([p.flops for p in out], [p.loss for p in out], color=pal[v], s=14, marker="x", zorder=3,
                       label=f"{v} (plateau, left out)")
        ax.plot(grid, law.fit.loss(v, grid), color=pal[v], label=f"{v} fit, alpha {law.fit.curves[v].alpha:.3g}")
        lo, hi = _band(law, v, grid)
        ax.fill_between(grid, lo, hi, color=pal[v], alpha=0.2, lw=0)
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs", ylabel="final val loss",
           title=f"Loss vs compute: L = L_inf + A C^-alpha, L_inf {law.fit.l_inf:.3g} "
                 f"({'shared' if law.fit.shared else 'fixed'}); bands: 95% (delta method, cell random effect)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    return _save(fig, out_dir, "scaling_loss_vs_flops.png")


def multiplier_plot(law: lawfit.LawFit, points, baseline: str, out_dir: Path) -> str | None:
    fit = law.fit
    others = [v for v in fit.curves if v != baseline]
    if baseline not in fit.curves or not others:
        return None
    pal = _palette(list(fit.curves))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v in others:
        # losses both fits reach inside their measured compute: the multiplier is read there only
        ends = [float(fit.loss(u, c)) for u in (v, baseline)
                for c in (min(x.flops for x in law.cells if x.variant == u),
                          max(x.flops for x in law.cells if x.variant == u))]
        lo_l, hi_l = max(ends[1], ends[3]), min(ends[0], ends[2])
        if lo_l < hi_l:
            grid = np.linspace(lo_l, hi_l, GRID)
            ivs = [lawfit.multiplier_interval(law, baseline, v, float(x), 1.0) for x in grid]
            ax.plot(grid, [i.multiplier for i in ivs], color=pal[v], label=f"{v} (fit)")
            ax.fill_between(grid, [i.lo for i in ivs], [min(i.hi, 1e6) for i in ivs], color=pal[v], alpha=0.2,
                            lw=0)
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


def fit_test_text(law: lawfit.LawFit) -> str:
    if law.df <= 0:
        return (f"Lack of fit: not testable ({len(law.cells)} cells for as many parameters): add sizes; a "
                f"compute_multiplier claim is INCONCLUSIVE.")
    verdict = (f"the law is REJECTED (p < {lawfit.LOF_ALPHA}): it does not describe these cells within their seed "
               f"errors, and compute_multiplier claims are INCONCLUSIVE with the per-size measured multipliers"
               if law.rejected else f"the law is not rejected at p < {lawfit.LOF_ALPHA}")
    return (f"Lack of fit: sum over (variant, size) cells of z^2 = {law.q:.3g} on {law.df} df (cells - parameters), "
            f"p = {law.p_lof:.3g} (each z a t on its size's pooled seed df = {law.nu} in all, mapped to the normal "
            f"scale); {verdict}. Cell sd beyond seed error (random effect, DerSimonian-Laird): "
            f"{np.sqrt(law.tau2):.3g} nats; the intervals below carry it.")


def scaling_blocks(rs, img_dir: Path) -> list:
    """Report blocks of the scaling section; [] for a suite without a sweep."""
    sweep = rs.suite.get("sweep")
    if not sweep:
        return []
    head = [("h2", "Scaling sweep: loss vs compute")]
    points = scaling.sweep_points(rs)
    l_inf = sweep.get("l_inf", "shared")
    ref, source = multiplier_rule.plateau_reference(rs)
    kept, plat = lawfit.plateau(points, ref, source)
    plat_text = f"Plateau check: {plat.note}" + (f" (reference {source})." if ref is not None else ".")
    if plat.cells:
        plat_text += " Cells on the plateau: " + ", ".join(f"{v}@{s} {m:.4f}" for v, s, m in plat.cells) + "."
    try:
        law = lawfit.fit_law(kept, l_inf)
    except scaling.FitError as err:
        return head + [("p", plat_text), ("p", f"No fit: {err}.")]
    baseline = suite_baseline(rs.suite)
    blocks = head + [("p", plat_text), ("p", fit_test_text(law)), ("p", (
        f"Per variant, the mean final validation loss of each size off the plateau against training FLOPs (train "
        f"FLOPs/token x tokens), fitted as L(C) = L_inf + A (C/C0)^-alpha by least squares weighted by 1 / (seed "
        f"s.e.^2 + cell variance); L_inf is "
        + ("one value shared by all variants, bounded to [0, the lowest cell mean)" if law.fit.shared
           else "fixed by sweep.l_inf")
        + f". Intervals: delta method, t on {max(law.df, 1)} df. The compute multiplier C_{baseline}(L) / "
        f"C_variant(L) is how many times more training compute {baseline} needs to reach loss L; the measured column "
        f"interpolates {baseline}'s points (in log C) with no fit, so the fit can be checked by eye; n/a where that "
        f"would extrapolate.")),
        ("h3", "Fit parameters"), ("table", params_table(law)),
        ("h3", "Per size: fit residuals, z and compute multipliers"),
        ("table", residuals_table(law, points, baseline, plat.excluded)),
        ("h3", "Loss vs training FLOPs"),
        ("img", "Loss vs training FLOPs", loss_plot(law, points, plat.excluded, img_dir))]
    mplot = multiplier_plot(law, kept, baseline, img_dir) if baseline else None
    if mplot:
        blocks += [("h3", "Compute multiplier vs loss"), ("img", "Compute multiplier vs loss", mplot)]
    return blocks
