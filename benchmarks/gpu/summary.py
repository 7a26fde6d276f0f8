"""Reading each stage's files back and rendering OUTDIR/summary.md for the one-call GPU check (driver.py).

Stdlib only. Everything here tolerates partial files: a stage stopped at its time cap still reports what it did.
"""
from __future__ import annotations

import json
from pathlib import Path

WORST = ("failed", "error", "skipped", "deselected", "passed")  # one node id's lines: the first of these wins


def read_test_log(path: Path) -> dict:
    """Counts and failures from the JSON lines benchmarks/gpu/cuda_tests.py appends, one outcome per node id."""
    by_id: dict[str, dict] = {}
    collected = 0
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:  # a line cut off by the kill at the cap
            continue
        if "collected" in e:  # one line per collecting process (each xdist worker collects everything)
            collected = max(collected, e["collected"])
            continue
        old = by_id.get(e["nodeid"])
        if old is None or WORST.index(_kind(e)) < WORST.index(_kind(old)):
            by_id[e["nodeid"]] = e
    counts = {k: sum(_kind(e) == k for e in by_id.values()) for k in WORST}
    # deselected tests are among the collected ones; those with no outcome never ran (the stage hit its cap)
    counts["not run"] = max(0, collected - len(by_id))
    bad = [{"test": n, "outcome": _kind(e), "reason": e.get("reason", "")} for n, e in sorted(by_id.items())
           if _kind(e) in ("failed", "error", "skipped", "deselected")]
    return {"counts": counts, "not_passed": bad}


def _kind(e: dict) -> str:
    # a failure outside the test body (fixture set-up or teardown) is an error, as pytest reports it
    if e["outcome"] == "failed" and e.get("when") in ("setup", "teardown"):
        return "error"
    return e["outcome"] if e["outcome"] in WORST else "error"


def read_quickstart(results: Path, reports: Path) -> dict:
    runs = []
    for s in sorted(results.glob("*/*/seed-*/summary.json")):
        try:
            d = json.loads(s.read_text())
        except ValueError:
            continue
        env = d.get("env") or {}
        runs.append({"variant": d.get("variant"), "seed": d.get("seed"), "status": d.get("status"),
                     "backend": d.get("backend"), "device": env.get("device_name"), "steps": d.get("steps"),
                     "tokens_per_s": d.get("tokens_per_s_median"), "step_ms": _ms(d.get("step_time_median_s")),
                     "val_loss": (d.get("final") or {}).get("val_loss"),
                     "peak_memory_bytes": d.get("peak_memory_bytes")})
    verdicts = []
    for v in sorted(reports.glob("*/verdicts.json")):
        try:
            verdicts += [{"name": c.get("name"), "verdict": c.get("verdict"), "reason": c.get("reason")}
                         for c in json.loads(v.read_text())]
        except ValueError:
            continue
    return {"runs": runs, "verdicts": verdicts}


def read_json(path: Path, default):
    """The file's JSON, or `default` when it is missing or was cut off."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _ms(seconds):
    return None if seconds is None else seconds * 1e3


def last_json_line(log: Path) -> dict:
    for line in reversed(log.read_text().splitlines() if log.exists() else []):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


def _cell(v) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v).replace("|", "/").replace("\n", " ")


def _table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]


def _stage_result(st: dict) -> str:
    r = st.get("result") or {}
    if "counts" in r:
        c = r["counts"]
        keys = ("passed", "failed", "error", "skipped", "deselected", "not run")
        return ", ".join(f"{c[k]} {k}" for k in keys if c.get(k))
    if "rows" in r:
        return f"{sum('fwd_ms' in x for x in r['rows'])} timed rows, {sum('fwd_ms' not in x for x in r['rows'])} not"
    if "verdicts" in r:
        tally: dict[str, int] = {}
        for v in r["verdicts"]:
            tally[v["verdict"]] = tally.get(v["verdict"], 0) + 1
        return f"{len(r['runs'])} runs; claims " + (", ".join(f"{k} {n}" for k, n in sorted(tally.items())) or "none")
    if "device" in r:
        return (f"{r.get('device')}; torch {r.get('torch')}, triton {r.get('triton')}; "
                f"installed {len(r.get('installed', []))} wheels")
    return ""


def render(data: dict) -> str:
    stages = data["stages"]
    env = next((s["result"] for s in stages if s["name"] == "setup" and s.get("result")), {})
    lines = [f"# One-call GPU check ({data['mode']}, {data['started']})", "",
             f"device: {env.get('device') or '-'}; python {env.get('python') or data.get('python')}, torch "
             f"{env.get('torch') or '-'}, triton {env.get('triton') or '-'}; caps sum to {data['total_cap_s']} s"
             + (f"; wall {data['wall_s']} s" if data.get("wall_s") is not None else ""), ""]
    if env.get("evidence"):  # the name `moebench bench kernels` gives this device's table
        lines += [f"Commit this file as {env['evidence']} (docs/kernels.md, One-call GPU check).", ""]
    lines += _table(["stage", "what", "cap s", "wall s", "status", "result"],
                    [[s["name"], s["title"], s["cap_s"], s["seconds"], s["status"], _stage_result(s)] for s in stages])
    checks = data.get("dry_run_checks")
    if checks:
        lines += ["", "## Dry-run checks", ""]
        lines += _table(["check", "ok", "detail"],
                        [[c["check"], "ok" if c["ok"] else "FAILED", "" if c["ok"] else c["detail"][-300:]]
                         for c in checks])
    rows = next((s["result"].get("rows") for s in stages if s["name"] == "kernel-bench"), None)
    if rows:
        lines += ["", "## Kernel table", "",
                  "TFLOP/s on active FLOPs (6*T*k*d*f forward, 18*T*k*d*f forward+backward); '/ dense' = time of "
                  "a dense "
                  "GEMM of the same FLOPs in the same run divided by the path's time.", ""]
        lines += _table(["shape", "E", "k", "d", "f", "tokens", "dtype", "path", "fwd TFLOP/s", "fwd / dense",
                         "fwd+bwd TFLOP/s", "fwd+bwd / dense", "note"],
                        [[r.get(k) for k in ("shape", "E", "k", "d_model", "expert_width", "tokens", "dtype", "path",
                                             "fwd_tflops", "fwd_frac_dense", "fwd_bwd_tflops", "fwd_bwd_frac_dense",
                                             "note")] for r in rows])
    for s in stages:
        bad = (s.get("result") or {}).get("not_passed") or []
        if bad:
            lines += ["", f"## {s['name']}: not passed ({len(bad)})", ""]
            lines += _table(["test", "outcome", "reason"], [[b["test"], b["outcome"], b["reason"]] for b in bad[:40]])
    quick = next((s["result"] for s in stages if s["name"] == "quickstart" and s.get("result")), {})
    if quick.get("runs"):
        lines += ["", "## Quickstart, gpu preset (short)", ""]
        lines += _table(["variant", "seed", "status", "backend", "device", "steps", "tokens/s", "step ms", "val loss"],
                        [[r[k] for k in ("variant", "seed", "status", "backend", "device", "steps", "tokens_per_s",
                                         "step_ms", "val_loss")] for r in quick["runs"]])
    if quick.get("verdicts"):
        lines += [""] + _table(["claim", "verdict", "reason"],
                               [[v["name"], v["verdict"], v["reason"]] for v in quick["verdicts"]])
    lines += ["", "Raw numbers: results.json; each stage's output: <stage>.log."]
    return "\n".join(lines) + "\n"
