"""Seaborn/matplotlib PNGs for the report. Each plot function writes one file and returns its (title, file name).

Bands are 95% t intervals over seeds computed here (not seaborn's bootstrap), so they match the tables and the
files are reproducible; PNG metadata carries no software version or timestamp, so reruns are byte-identical.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Names and claim labels are the user's text, drawn as typed: a `$` in a claim name is a dollar sign, not the
# start of math-text that matplotlib's parser would reject (crashing the report after the whole suite trained).
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}
matplotlib.rcParams.update(PLAIN_TEXT)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from moebench.analysis import stats  # noqa: E402
from moebench.registry import Registry  # noqa: E402

SAVE = {"dpi": 100, "format": "png", "metadata": {"Software": None}}
X_AXES = {"tokens": "training tokens", "flops": "training FLOPs", "wall": "training wall-clock (s)"}
# name -> function(rs, verdicts, out_dir) -> list[(title, file)], run in name order
PLOTS: Registry = Registry("plot")
plot = PLOTS.register


def _save(fig, out_dir: Path, fname: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_dir / fname, **SAVE)
    plt.close(fig)
    return fname


def _palette(variants):
    return dict(zip(variants, sns.color_palette("tab10", max(len(variants), 1))))


def _band(rs, variant: str, x: str):
    """Per eval step: mean x, mean val loss and its 95% CI half-width over the seeds that reached the step."""
    c = rs.curves[rs.curves["variant"] == variant].dropna(subset=["val_loss", x])
    c = c[np.isfinite(c["val_loss"].astype(float))]  # a diverged run's inf would flatten every other curve
    out = []
    for step, g in sorted(c.groupby("step"), key=lambda kv: kv[0]):
        m, h = stats.mean_ci(g["val_loss"].astype(float))
        out.append((float(g[x].astype(float).mean()), m, 0.0 if h != h else h))
    return np.array(out).reshape(-1, 3)


@plot("1_loss_curves")
def loss_curves(rs, verdicts, out_dir: Path):
    out, pal = [], _palette(rs.variants)
    for x, label in X_AXES.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for v in rs.variants:
            b = _band(rs, v, x)
            if len(b):
                ax.plot(b[:, 0], b[:, 1], label=v, color=pal[v], marker="o", markersize=3)
                ax.fill_between(b[:, 0], b[:, 1] - b[:, 2], b[:, 1] + b[:, 2], color=pal[v], alpha=0.2, lw=0)
        ax.set(xlabel=label, ylabel="val loss", title=f"Validation loss vs {label} (mean, 95% CI over seeds)")
        if ax.get_legend_handles_labels()[0]:  # no finite curve (every run diverged): no empty legend warning
            ax.legend(fontsize=8)
        out.append((f"Validation loss vs {label}", _save(fig, out_dir, f"val_loss_vs_{x}.png")))
    return out


def _bar(ax, rs, column: str, scale: float, ylabel: str):
    pal = _palette(rs.variants)
    for i, v in enumerate(rs.variants):
        vals = [float(x) / scale for x in rs.ok_runs(v)[column].dropna()]
        m, h = stats.mean_ci(vals)
        ax.bar(i, 0 if m != m else m, yerr=None if h != h else h, color=pal[v], capsize=4)
        ax.scatter([i] * len(vals), vals, color="black", s=8, zorder=3)
    ax.set_xticks(range(len(rs.variants)), rs.variants, rotation=30, ha="right")
    ax.set_ylabel(ylabel)


@plot("2_throughput_memory")
def throughput_memory(rs, verdicts, out_dir: Path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5))
    _bar(a, rs, "tokens_per_s_median", 1.0, "median tokens/s")
    a.set_title("Training throughput (mean, 95% CI; dots = seeds)")
    _bar(b, rs, "peak_memory_bytes", 2**20, "peak memory (MiB)")
    b.set_title("Peak memory")
    return [("Throughput and peak memory", _save(fig, out_dir, "throughput_memory.png"))]


@plot("3_expert_load")
def expert_load(rs, verdicts, out_dir: Path):
    out = []
    for v in rs.variants:
        loads = [np.array([l["load"] for l in e.get("layers") or []], dtype=float)
                 for (var, _), e in sorted(rs.experts.items()) if var == v]
        loads = [x for x in loads if x.ndim == 2 and x.size]
        if not loads or len({x.shape for x in loads}) != 1:
            continue
        m = np.mean(loads, axis=0) * loads[0].shape[1]  # x E: 1.0 is a perfectly even share
        fig, ax = plt.subplots(figsize=(max(5, 0.5 * m.shape[1] + 2), max(2.5, 0.45 * m.shape[0] + 1.5)))
        sns.heatmap(m, ax=ax, cmap="viridis", annot=m.shape[1] <= 16, fmt=".2f", vmin=0,
                    cbar_kws={"label": "load x E (1 = even)"})
        ax.set(xlabel="expert", ylabel="MoE layer", title=f"{v}: final expert load per layer (mean over seeds)")
        out.append((f"Expert load: {v}", _save(fig, out_dir, f"expert_load_{v}.png")))
    return out


@plot("4_speedup")
def speedup(rs, verdicts, out_dir: Path):
    vs = [v for v in verdicts if v.kind == "speedup_to_loss" and "axis" in v.numbers]
    if not vs:
        return []
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(vs) + 2.2))
    names = [v.name for v in vs]
    vals = [float(v.numbers.get(f"speedup_{v.numbers['axis']}", 0.0)) for v in vs]
    colors = [{"PASS": "tab:green", "FAIL": "tab:red"}.get(v.verdict, "tab:gray") for v in vs]
    ax.barh(range(len(vs)), vals, color=colors)
    ci = [[float(x) if x is not None else float("nan") for x in v.numbers.get("ci95_speedup", (None, None))]
          for v in vs]
    lo = [max(val - c[0], 0.0) if c[0] == c[0] else 0.0 for val, c in zip(vals, ci)]
    hi = [min(c[1], 100 * max(vals)) - val if c[1] == c[1] else 0.0 for val, c in zip(vals, ci)]
    ax.errorbar(vals, range(len(vs)), xerr=[lo, hi], fmt="none", ecolor="black", capsize=4, lw=1,
                label="95% interval over seeds")
    ax.set_yticks(range(len(vs)), [f"{n} ({v.numbers['axis']})" for n, v in zip(names, vs)])
    ax.axvline(1.0, color="black", lw=1, ls="--")
    ax.scatter([float(v.numbers["required_min"]) for v in vs], range(len(vs)), marker="|", s=400, color="black",
               zorder=3, label="claimed minimum")
    ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="speedup (x) to the baseline's target val loss (geometric mean over seed pairs)",
           title="Speedup to target loss (green PASS, red FAIL, grey INCONCLUSIVE)")
    ax.title.set_fontsize(10)
    return [("Speedup to target loss", _save(fig, out_dir, "speedup.png"))]


def make_plots(rs, verdicts, out_dir: Path) -> list[tuple[str, str]]:
    sns.set_theme(style="whitegrid", rc=PLAIN_TEXT)
    out = []
    for name in PLOTS.names():
        out += PLOTS[name](rs, verdicts, Path(out_dir))
    return out
