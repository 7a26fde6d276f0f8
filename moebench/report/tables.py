"""Tables as (headers, rows) of strings, built from a ResultSet and Verdicts; md_table renders one as markdown.

Keeping tables as plain string grids lets the markdown and the HTML renderer show exactly the same numbers.
"""
from __future__ import annotations

import math

from moebench.analysis import stats
from moebench.analysis.claims import Verdict

Table = tuple[list[str], list[list[str]]]
DEFAULT_PARAM_BYTES = 4  # fp32 weights, what a run that does not record env.param_bytes trains with by default


def fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e6):
        return f"{int(x):,}"
    return f"{x:.{digits}g}"


def si(x, unit: str = "") -> str:
    if x is None or x != x:
        return "n/a"
    for p, f in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.3g} {p}{unit}"
    return f"{x:.3g} {unit}".strip()


def mib(x) -> str:
    return "n/a" if x is None or x != x else f"{x / 2**20:.1f} MiB"


def mean_pm(xs, digits: int = 4) -> str:
    m, h = stats.mean_ci(xs)
    if m != m:
        return "n/a"
    return f"{m:.{digits}f} (n=1)" if h != h else f"{m:.{digits}f} ± {h:.{digits}f}"


def md_table(t: Table) -> str:
    headers, rows = t
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def key_number(v: Verdict) -> str:
    n = v.numbers
    if "best_val_loss" in n:
        return f"never reached (best {fmt(float(n['best_val_loss']))})"
    ci = n.get("ci95_speedup")
    if ci and len(ci) == 2 and "axis" in n:  # a speedup with its interval over seeds
        return f"speedup_{n['axis']} = {fmt(float(n['speedup_' + n['axis']]))} [{fmt(ci[0], 3)}, {fmt(ci[1], 3)}]"
    for k in ("speedup_" + str(n.get("axis", "")), "improvement", "ratio", "slope", "entropy", "multiplier"):
        if k in n and isinstance(n[k], (int, float)):
            return f"{k} = {fmt(float(n[k]))}"
    speed = sorted(k for k in n if k.startswith("speedup_") and k != "speedup_per_seed")
    return ", ".join(f"{k} = {fmt(float(n[k]))}" for k in speed) or ""


def claims_table(verdicts: list[Verdict]) -> Table:
    rows = [[v.name, v.verdict, ", ".join(v.variants), key_number(v), _p(v, "p_one_sided"), _p(v, "p_holm"),
             v.reason, v.source or "-"] for v in verdicts]
    return ["claim", "verdict", "variants", "key number", "p (one-sided)", "p (Holm)", "reason", "source"], rows


def _p(v: Verdict, key: str) -> str:
    x = v.numbers.get(key)
    return "-" if x is None else f"{float(x):.3g}"


def _variant_agg(rs, variant: str) -> dict:
    runs = rs.runs[rs.runs["variant"] == variant]
    ok = runs[runs["status"] == "ok"]
    med = lambda c: stats.median([float(x) for x in ok[c].dropna()]) if c in ok else float("nan")  # noqa: E731
    return {"runs": runs, "ok": ok, "med": med}


def variants_table(rs) -> Table:
    headers = ["variant", "kind", "seeds ok/all", "params total", "params active", "train FLOPs/token",
               "tokens/param", "epochs", "val loss (mean ± 95% CI)", "val bpb (mean ± 95% CI)", "val ppl", "test ppl",
               "test bpb", "tokens/s", "peak memory",
               "load balance (entropy, max load xE, dead)", "runs beside (mean, max)", "load avg (start, end)",
               "not ok (see Failed runs)"]
    rows = []
    for v in rs.variants:
        a = _variant_agg(rs, v)
        ok, med = a["ok"], a["med"]
        kind = next((k for k in a["runs"]["kind"] if isinstance(k, str)), "?")
        bal = "-"
        if "experts.entropy" in ok and ok["experts.entropy"].notna().any():
            bal = (f"{fmt(med('experts.entropy'), 3)}, {fmt(med('experts.max_load_x_E'), 3)}x, "
                   f"{fmt(med('experts.dead_experts'))}")
        rows.append([v, kind, f"{len(ok)}/{len(a['runs'])}", si(med("params_total")), si(med("params_active")),
                     si(med("train_flops_per_token")), fmt(med("tokens_per_param"), 3), fmt(med("epochs"), 3),
                     mean_pm(ok["val_loss"].dropna()),
                     mean_pm(ok["val_bpb"].dropna()), fmt(stats.mean(ok["val_ppl"].dropna())),
                     fmt(stats.mean(ok["test_ppl"].dropna())), fmt(stats.mean(ok["test_bpb"].dropna())),
                     si(med("tokens_per_s_median")), mib(med("peak_memory_bytes")), bal, *_sharing(ok, med), _not_ok(a["runs"])])
    return headers, rows


def _sharing(ok, med) -> list[str]:
    """What trained beside this variant's runs (--jobs, Ray): throughput measured beside other runs says so.
    Mean: the median over seeds of each run's time-weighted mean; max: over all seeds."""
    if "concurrent_runs_max" not in ok or not ok["concurrent_runs_max"].notna().any():
        return ["-", "-"]
    beside = f"{fmt(med('concurrent_runs_mean'), 2)}, {int(ok['concurrent_runs_max'].max())}"
    load = "-"
    if ok["load_avg_start"].notna().any():
        load = f"{fmt(med('load_avg_start'), 2)}, {fmt(med('load_avg_end'), 2)}"
    return [beside, load]


def _not_ok(runs) -> str:
    bad = runs[runs["status"] != "ok"]
    out = []
    for _, r in bad.iterrows():
        step = r.get("failure_step")
        at = f" at step {int(step)}" if step is not None and step == step else ""
        out.append(f"seed {int(r['seed'])} {r['status']}{at}")
    return "; ".join(out) or "-"


def utilisation_table(rs) -> Table:
    """S-MFU = active train FLOPs/token x tokens/s / peak FLOP/s; S-MBU = active weight bytes / step time / peak BW."""
    headers = ["variant", "achieved FLOP/s", "S-MFU", "active weight bytes/step", "S-MBU", "peak source"]
    rows = []
    for v in rs.variants:
        a = _variant_agg(rs, v)
        med, ok = a["med"], a["ok"]
        achieved = med("train_flops_per_token") * med("tokens_per_s_median")
        pbytes = med("param_bytes")
        wbytes = med("params_active") * (pbytes if pbytes == pbytes else DEFAULT_PARAM_BYTES)
        pf, pb = med("peak_flops"), med("peak_bw")
        src = sorted({str(s) for s in ok["peak_source"].dropna()}) if "peak_source" in ok else []
        no_peak = "n/a (no peak recorded)"
        rows.append([v, si(achieved, "FLOP/s"), f"{achieved / pf:.2%}" if pf == pf else no_peak, si(wbytes, "B"),
                     f"{wbytes / med('step_time_median_s') / pb:.2%}" if pb == pb else no_peak,
                     "; ".join(src) or "-"])
    return headers, rows
