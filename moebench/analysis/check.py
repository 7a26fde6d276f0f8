"""`moebench check`: a fresh suite's results against a stored baseline, on figures that survive noisy machines.

Speed and memory are judged only as MoE/dense ratios measured in the same suite run (absolute tokens/s moves
with the machine and its neighbours; the ratio moves much less). The speed ratio is the side-by-side one
(training/sidebyside.py: steps interleaved in one process) when the run measured it, and it gates only against a
baseline from the same processor measured the same way; `--ab` (analysis/ab.py) compares code versions instead. Quality (final val loss and bits per byte)
is judged per variant, with a tolerance that widens with the seed spread. Absolute tokens/s rows are printed
for information and never fail a check.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import statistics
from pathlib import Path

from moebench.config.diff import suite_changes
from moebench.errors import UserError
from moebench.io import LEGACY

from .resultset import load_results
from .stats import sidebyside_ratio

FORMAT = 1
# Relative, except quality_sigmas. throughput_ratio: the side-by-side ratio's noise under load on the shared
# 2-core machine (11 CI-suite runs: sd 2.2%, range 8.5%; numbers in suites/ci.baseline.json "noise"). A
# baseline's own "tolerance" wins over these, the command line over both.
DEFAULT_TOLERANCE = {"throughput_ratio": 0.08, "memory_ratio": 0.02, "quality": 0.01, "quality_sigmas": 2.0}
QUALITY = ("val_loss", "val_bpb")


def _median(xs):
    return statistics.median(xs) if xs else None


def _drop_none(x):
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    return [_drop_none(v) for v in x] if isinstance(x, list) else x


NOT_HASHED = ("description", "claims", "report")  # they change no number: no new baseline for them


def _suite_core(suite: dict) -> dict:
    """The resolved suite a baseline records (and hashes): a new optional schema field resolves to None in every
    suite.yaml written after it, so None values are left out."""
    return _drop_none({k: v for k, v in suite.items() if k not in NOT_HASHED})


def _suite_hash(suite: dict) -> str:
    return hashlib.sha256(json.dumps(_suite_core(suite), sort_keys=True, default=str).encode()).hexdigest()[:16]


def suite_note(baseline: dict, cur: dict) -> str | None:
    """None when the results' suite is the baseline's (field by field, a missing field read as its default);
    else which fields changed."""
    if cur["suite_hash"] == baseline.get("suite_hash"):
        return None
    stored = baseline.get("suite_config")
    if not isinstance(stored, dict):
        return ("note: the suite's hash differs from the baseline's, which predates baselines recording their "
                "suite, so which fields changed cannot be named; rerun with --update-baseline to record it")
    changes = suite_changes(stored, cur["suite_config"])
    if not changes:
        return None  # only defaults that resolve to the same values
    return ("note: the suite changed since the baseline was written (" + "; ".join(map(str, changes))
            + "); if on purpose, rerun with --update-baseline")


def _fast_steps(train, variant: str, seeds) -> float | None:
    """90th percentile of per-step tokens/s over every ok seed's steady steps (the first 10% warm up).

    Why not the runs' medians: on a shared 2-core box a neighbour's burst can slow a whole run many times over
    (seen while measuring the CI suite), and with 2 seeds that moves a median ratio by as much. Interference
    only ever slows a step, so the fast end of the pooled steps is what the code does when it gets the CPU.
    """
    rows = train[(train["variant"] == variant) & (train["seed"].isin(list(seeds)))]
    steady = []
    for _, g in rows.groupby("seed"):
        g = g.sort_values("step")
        steady += [float(x) for x in g["tokens_per_s"].iloc[max(3, len(g) // 10):].dropna()]
    if not steady:
        return None
    steady.sort()
    return steady[min(len(steady) - 1, int(0.9 * len(steady)))]


def measure(results_dir: Path) -> dict:
    """Per-seed figures of every variant and the MoE/dense ratios, from finished runs on disk."""
    rs = load_results(Path(results_dir))
    if not len(rs.runs):
        raise UserError(f"{results_dir}: no runs found (pass results/<suite>/ of a finished suite)")
    if rs.damaged_files:
        raise UserError(f"{rs.damaged_files[0]}; rerun the command that wrote it (`moebench run` on the suite "
                        "rewrites suite.yaml and plan.json; sidebyside.json: `moebench run --sidebyside`)")
    damaged = rs.runs[rs.runs["status"] == "damaged"]
    if len(damaged):  # a damaged run's numbers could be anything: no baseline is written or compared from them
        raise UserError(f"{damaged['failure_reason'].iloc[0]}; {len(damaged)} damaged run(s), rerun `moebench run` "
                        "on the suite to retrain them")
    variants, ratios = {}, {}
    for v in rs.variants:
        runs = rs.runs[rs.runs["variant"] == v]
        ok = runs[runs["status"] == "ok"]
        kind, matched = runs["kind"].dropna(), runs["matched_to"].dropna()
        variants[v] = {
            "kind": str(kind.iloc[0]) if len(kind) else None,
            "matched_to": str(matched.iloc[0]) if len(matched) else None,
            "seeds": [int(s) for s in ok["seed"]], "runs": len(runs), "ok": len(ok),
            **{m: rs.seed_values(v, m) for m in (*QUALITY, "tokens_per_s_median", "peak_memory_bytes")},
            "tokens_per_s_p90": _fast_steps(rs.train, v, ok["seed"]),
        }
    for v, d in variants.items():
        base = variants.get(d["matched_to"] or "")
        if d["kind"] != "moe" or base is None:
            continue
        tp = [d["tokens_per_s_p90"], base["tokens_per_s_p90"]]
        mem = [_median(d["peak_memory_bytes"]), _median(base["peak_memory_bytes"])]
        sbs = sidebyside_ratio(rs.sidebyside, v, d["matched_to"])
        ratios[f"{v}/{d['matched_to']}"] = {
            # side by side (interleaved in one process) when measured: sequential runs see different load
            "throughput_ratio": sbs["ratio"] if sbs else (tp[0] / tp[1] if None not in tp and tp[1] else None),
            "throughput_method": "sidebyside" if sbs else "p90 of sequential runs",
            "memory_ratio": mem[0] / mem[1] if None not in mem and mem[1] else None,
        }
    env = rs.env
    legacy = rs.runs[rs.runs["verified"] == LEGACY] if "verified" in rs.runs else rs.runs.iloc[:0]
    # runs without a manifest are used (as before manifests) but said: an edit of their summary is not detectable
    unverified = {"unverified": [f"{r.variant} seed {int(r.seed)}" for r in legacy.itertuples()]} if len(legacy) else {}
    return {**unverified, "suite": rs.name, "suite_hash": _suite_hash(rs.suite), "suite_config": _suite_core(rs.suite),
            "variants": variants, "ratios": ratios,
            "env": {k: env.get(k) for k in ("device_name", "cpu_model", "torch", "git_sha")},
            "loadavg": (rs.sidebyside or {}).get("loadavg")}


def build_baseline(results_dir: Path, previous: dict | None = None) -> dict:
    """A baseline from finished results; the tolerance and noise notes of `previous` are kept."""
    m = measure(results_dir)
    bad = [f"{v} ({d['ok']}/{d['runs']} runs ok)" for v, d in m["variants"].items() if d["ok"] < d["runs"]]
    if bad:
        raise UserError(f"{results_dir}: a baseline needs every run finished ok; not: {', '.join(bad)}")
    prev = previous or {}
    return {"format": FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "tolerance": prev.get("tolerance", dict(DEFAULT_TOLERANCE)), "noise": prev.get("noise"), **m}


def load_baseline(path: Path) -> dict:
    try:
        b = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"baseline not found: {path} (write one with --update-baseline)") from None
    except (OSError, ValueError) as e:
        raise UserError(f"baseline {path} is not valid JSON: {e}") from None
    if not isinstance(b, dict) or b.get("format") != FORMAT or not isinstance(b.get("variants"), dict) \
            or not isinstance(b.get("ratios"), dict):
        raise UserError(f"baseline {path} is malformed (want format {FORMAT} with 'variants' and 'ratios'); "
                        "rewrite it with --update-baseline")
    return b


def parse_tolerances(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or key not in (*DEFAULT_TOLERANCE, "ab_throughput"):
            raise UserError(f"--tolerance {item!r}: want KEY=VALUE with KEY one of {', '.join(DEFAULT_TOLERANCE)}")
        try:
            out[key] = float(val)
        except ValueError:
            raise UserError(f"--tolerance {item!r}: {val!r} is not a number") from None
        if out[key] < 0:
            raise UserError(f"--tolerance {item!r}: must be >= 0")
    return out


def _sd(xs) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def _row(metric, what, base, cur, allowed, status) -> dict:
    change = (cur / base - 1) if base and cur is not None else None
    return {"metric": metric, "what": what, "baseline": base, "current": cur, "change": change,
            "allowed": allowed, "status": status}


def speed_comparable(base: dict, cur: dict) -> str | None:
    """None if the baseline's speed ratio can gate this one; else why not (shown, not judged). A ratio depends
    on the processor (cache sizes, vector units), so one measured elsewhere or by another method is information."""
    b_cpu, c_cpu = (base.get("env") or {}).get("device_name"), (cur.get("env") or {}).get("device_name")
    if b_cpu != c_cpu:
        return f"baseline measured on {b_cpu}, this on {c_cpu}"
    methods = {(r or {}).get("throughput_method", "p90 of sequential runs") for d in (base, cur)
               for r in d["ratios"].values()}
    if len(methods) > 1:
        return "baseline and current speed measured by different methods"
    return None


def compare_rows(base: dict, cur: dict, tol: dict) -> list[dict]:
    rows = []
    not_gated = speed_comparable(base, cur)
    for pair, b in sorted(base["ratios"].items()):
        c = cur["ratios"].get(pair, {})
        for metric, sign in (("throughput_ratio", -1), ("memory_ratio", +1)):
            bv, cv, t = b.get(metric), c.get(metric), tol[metric]
            if bv is None:
                continue
            if metric == "throughput_ratio" and not_gated:
                rows.append(_row(metric, pair, bv, cv, "info only", "info"))
                continue
            # throughput may only fall by t, memory may only grow by t (relative to the baseline ratio)
            bad = cv is None or (cv < bv * (1 - t) if sign < 0 else cv > bv * (1 + t))
            better = cv is not None and (cv > bv * (1 + t) if sign < 0 else cv < bv * (1 - t))
            rows.append(_row(metric, pair, bv, cv, f"{'-' if sign < 0 else '+'}{t:.0%}",
                             "REGRESSED" if bad else ("better" if better else "ok")))
    for v, b in sorted(base["variants"].items()):
        c = cur["variants"].get(v)
        if c["ok"] < c["runs"]:
            rows.append(_row("runs ok", v, b["ok"], c["ok"], "all", "REGRESSED"))
        for metric in QUALITY:
            bx, cx = b.get(metric) or [], c.get(metric) or []
            if not bx:
                continue
            bm = statistics.mean(bx)
            cm = statistics.mean(cx) if cx else None
            # a difference of two seed means has standard error sd * sqrt(2/n); the floor covers 1-2 seed suites
            sd = max(_sd(bx), _sd(cx))
            allow = max(tol["quality"] * bm, tol["quality_sigmas"] * sd * math.sqrt(2 / max(1, len(bx))))
            bad = cm is None or cm > bm + allow
            rows.append(_row(metric, v, bm, cm, f"+{allow / bm:.1%}" if bm else f"+{allow:.3g}",
                             "REGRESSED" if bad else ("better" if cm < bm - allow else "ok")))
    for v, b in sorted(base["variants"].items()):
        if b.get("tokens_per_s_p90"):
            rows.append(_row("tokens/s p90", v, b["tokens_per_s_p90"], cur["variants"][v].get("tokens_per_s_p90"),
                             "-", "info"))
    return rows


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, int) or (isinstance(x, float) and abs(x) >= 1000):
        return f"{x:,.0f}"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def format_rows(rows: list[dict]) -> str:
    cols = ("metric", "what", "baseline", "current", "change", "allowed", "status")
    cells = [[r["metric"], r["what"], _fmt(r["baseline"]), _fmt(r["current"]),
              "n/a" if r["change"] is None else f"{r['change']:+.1%}", r["allowed"], r["status"]] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(x) for x in cells])


def compare_to_baseline(results_dir: Path, baseline: dict, tolerance: dict | None = None):
    """(ok, table, rows). Raises UserError when the results are not of the baseline's suite."""
    cur = measure(results_dir)
    if cur["suite"] != baseline.get("suite"):
        raise UserError(f"{results_dir} holds suite {cur['suite']!r}, the baseline is of {baseline.get('suite')!r}")
    missing = sorted(set(baseline["variants"]) - set(cur["variants"]))
    if missing:
        raise UserError(f"{results_dir}: no runs of baseline variant(s) {', '.join(missing)}")
    tol = {**DEFAULT_TOLERANCE, **(baseline.get("tolerance") or {}), **(tolerance or {})}
    rows = compare_rows(baseline, cur, tol)
    bad = [r for r in rows if r["status"] == "REGRESSED"]
    checked = [r for r in rows if r["status"] != "info"]
    head = (f"moebench check: {cur['suite']} at {results_dir} vs baseline of {baseline.get('created', '?')} "
            f"({(baseline.get('env') or {}).get('device_name', '?')})\n")
    why = speed_comparable(baseline, cur)
    if why:
        head += (f"note: {why}: the throughput ratio is shown for information and not judged (use "
                 "`moebench check --ab BASE_REF` to compare speed with the base commit on this machine)\n")
    if cur.get("loadavg"):
        head += f"load average during the side-by-side timing: {cur['loadavg'][0][0]:.1f}\n"
    if legacy := legacy_note(cur):
        head += legacy + "\n"
    changed = suite_note(baseline, cur)
    if changed:
        head += changed + "\n"
    verdict = (f"\n{len(bad)} of {len(checked)} checks REGRESSED: " + ", ".join(f"{r['metric']} {r['what']}"
                                                                            for r in bad)) if bad else \
        f"\nall {len(checked)} checks within tolerance"
    return not bad, head + "\n" + format_rows(rows) + verdict, rows


def legacy_note(measured: dict) -> str | None:
    """One line naming the runs measure() found without a manifest, or None."""
    runs = measured.get("unverified") or []
    return (f"{LEGACY}: {', '.join(runs)} (written before run manifests: their summaries cannot be checked; "
            "`moebench run --force` retrains and records them)") if runs else None


def describe_update(old: dict | None, new: dict) -> str:
    """What --update-baseline changed, as the check table of the new figures against the old ones."""
    if not old:
        return "new baseline (there was none)"
    try:
        rows = compare_rows(old, new, {**DEFAULT_TOLERANCE, **(old.get("tolerance") or {})})
    except (KeyError, TypeError, AttributeError):
        return "previous baseline was of another shape; replaced"
    for r in rows:
        r["status"] = "changed" if r["change"] is None or abs(r["change"]) >= 5e-4 else "same"
    return "changes from the previous baseline:\n" + format_rows(rows)
