"""Report sections that appear only when a suite measured them: FLOP accounting, inference (with pruning),
failed / damaged / unfinished runs."""
from __future__ import annotations

import statistics

from moebench.io import LEGACY, run_key

from .tables import Table, fmt, mib, si


def _median(xs):
    xs = [x for x in xs if x is not None and x == x]
    return statistics.median(xs) if xs else None


def flop_table(rs) -> Table | None:
    col = "flops_measured_forward_per_token"
    if col not in rs.runs.columns or not rs.runs[col].notna().any():
        return None
    padded = {run_key(r["name"], r.get("size")): r.get("expert_flops_padded")  # a sweep's rows: variant@size
              for r in (rs.plan or []) if isinstance(r, dict) and "name" in r}
    rows = []
    for v in rs.variants:
        ok = rs.ok_runs(v)
        analytic, measured = _median(ok["forward_flops_per_token"]), _median(ok[col])
        ratio = measured / analytic if analytic and measured else None
        rows.append([v, si(analytic), si(measured), fmt(ratio, 4), si(padded.get(v) or None)])
    headers = ["variant", "analytic fwd FLOPs/token", "measured (FlopCounterMode)", "measured / analytic",
               "expert FLOPs/token if capacity-padded"]
    return headers, rows


def inference_tables(rs) -> list[tuple[str, Table]]:
    if not rs.inference:
        return []
    batch_sizes = sorted({r["batch_size"] for inf in rs.inference.values() for r in inf.get("speed", [])})
    speed_rows, prune_rows = [], []
    for v in rs.variants:
        infs = [inf for (var, _), inf in sorted(rs.inference.items()) if var == v]
        if not infs:
            continue
        by_b = {b: [r for inf in infs for r in inf["speed"] if r["batch_size"] == b] for b in batch_sizes}
        imb = _median([r.get("expert_batch_max_over_mean") for r in by_b[batch_sizes[-1]]])
        speed_rows.append([v, mib(_median([i["weights_bytes"] for i in infs])),
                           fmt(_median([r["latency_ms"] for r in by_b[batch_sizes[0]]]), 3)]
                          + [si(_median([r["tokens_per_s"] for r in by_b[b]])) for b in batch_sizes]
                          + [fmt(imb, 3)])
        base_speed = {b: _median([r["tokens_per_s"] for r in by_b[b]]) for b in batch_sizes}
        settings = {}
        for inf in infs:
            for p in inf.get("pruning", []):
                key = f"min_load {p['min_load']}" if "min_load" in p else f"drop {p['drop_least']} least used"
                settings.setdefault(key, []).append(p)
        for key, ps in settings.items():
            top = batch_sizes[-1]
            tps = _median([r["tokens_per_s"] for p in ps for r in p["speed"] if r["batch_size"] == top])
            prune_rows.append([v, key, fmt(_median([sum(map(len, p["dropped"].values())) for p in ps])),
                               fmt(_median([p["loss_cost"] for p in ps]), 4),
                               fmt(1 - _median([p["weights_bytes"] for p in ps]) / _median([i["weights_bytes"] for i in infs]), 3),
                               fmt(tps / base_speed[top] if tps and base_speed[top] else None, 3)])
    speed = (["variant", "weights", f"latency ms (batch {batch_sizes[0]})"]
             + [f"tokens/s b={b}" for b in batch_sizes] + [f"expert batch max/mean (b={batch_sizes[-1]})"], speed_rows)
    out = [("Forward speed (median over seeds)", speed)]
    if prune_rows:
        out.append(("Expert pruning (least-used experts removed after training)",
                    (["variant", "pruning", "experts dropped (all layers)", "val loss cost (nats)",
                      "weights saved (fraction)", f"tokens/s ratio (b={batch_sizes[-1]})"], prune_rows)))
    return out


def lm_eval_table(rs) -> Table | None:
    """lm-evaluation-harness scores (eval.lm_eval.tasks), mean over finished seeds."""
    cols = sorted(c for c in rs.runs.columns if c.startswith("lm_eval."))
    if not cols:
        return None
    rows = []
    for v in rs.variants:
        ok = rs.ok_runs(v)
        vals = [[float(x) for x in ok[c].dropna()] for c in cols]
        rows.append([v] + [fmt(sum(x) / len(x), 4) if x else "n/a" for x in vals])
    return ["variant"] + [c.removeprefix("lm_eval.") for c in cols], rows


def distributed_table(rs) -> Table | None:
    """Runs trained on several processes: their layout and the share of step time spent communicating."""
    if "world_size" not in rs.runs.columns or not (rs.runs["world_size"].fillna(1) > 1).any():
        return None
    rows = []
    for v in rs.variants:
        ok = rs.ok_runs(v)
        layout = next((x for x in ok["parallel"] if isinstance(x, str)), "-")
        rows.append([v, fmt(_median(list(ok["world_size"]))), layout, fmt(_median(list(ok["comm_time_s"])), 4),
                     fmt(_median(list(ok["comm_fraction"])), 3)])
    return ["variant", "world size", "layout", "communication s (median over seeds)", "communication fraction"], rows


def failure_text(r) -> str:
    """'failed at step 12: loss is nan (not finite)' for one row of ResultSet.runs."""
    step = r.get("failure_step")
    at = f" at step {int(step)}" if step is not None and step == step else ""
    reason = r.get("failure_reason")
    return f"{r['status']}{at}" + (f": {reason}" if isinstance(reason, str) and reason else "")


def failed_runs_table(rs) -> Table | None:
    """Every run that is not ok: failed (NaN, a crashed rank), damaged (a file failed its check), incomplete."""
    bad = rs.runs[rs.runs["status"] != "ok"] if len(rs.runs) else rs.runs
    if not len(bad):
        return None
    rows = [[str(r["variant"]), str(int(r["seed"])), str(r["status"]),
             fmt(r.get("failure_step")) if r.get("failure_step") == r.get("failure_step") else "-",
             r["failure_reason"] if isinstance(r.get("failure_reason"), str) else
             ("no summary.json: not trained yet, still training or killed" if r["status"] == "incomplete" else "-")]
            for _, r in bad.iterrows()]
    return ["variant", "seed", "status", "step", "reason"], rows


def legacy_runs_table(rs) -> Table | None:
    """Every run read without a manifest (io.LEGACY): one row each, so no unverified number goes unmarked."""
    if "verified" not in rs.runs or not len(rs.runs):
        return None
    rows = [[str(r["variant"]), str(int(r["seed"])), str(r["verified"])]
            for _, r in rs.runs[rs.runs["verified"] == LEGACY].iterrows()]
    return (["variant", "seed", "summary"], rows) if rows else None


def load_table(rs):
    """Per MoE layer (never summed over layers): MaxVio over the whole final evaluation and per evaluation batch
    (Wang et al. 2024), coefficient of variation and dead experts; medians over seeds. None without MoE runs."""
    rows = []
    for v in rs.variants:
        runs = [e.get("layers") or [] for (var, _), e in sorted(rs.experts.items()) if var == v]
        for i in range(min((len(r) for r in runs), default=0)):
            med = lambda k: _median([r[i].get(k) for r in runs])  # noqa: E731
            rows.append([v, str(i), fmt(med("max_vio"), 3), fmt(med("max_vio_batch"), 3), fmt(med("cv"), 3),
                         fmt(med("dead"))])
    if not rows:
        return None
    return ["variant", "MoE layer", "MaxVio (global)", "MaxVio (batch mean)", "CV of load", "dead experts"], rows


def sequential_blocks(rec) -> list:
    """The rounds of `run --until-decided` (analysis/sequential.py Record): how many, seeds per variant, why they
    stopped, and each look's boundary and claim states."""
    claims = [s.name for s in rec.final]
    rows = [[str(lk.round), str(lk.seeds), f"{lk.nominal_p:.3g}", f"{lk.alpha_spent:.3g}"]
            + [next((f"{s.state}" + (f" (p={s.p:.3g})" if s.p is not None else "") for s in lk.states
                     if s.name == c), "-") for c in claims] for lk in rec.looks]
    text = (f"{len(rec.looks)} round(s) of seeds, the last with {rec.looks[-1].seeds if rec.looks else 0} seeds per "
            f"variant (seeds {', '.join(map(str, rec.seeds))}); planned looks at "
            f"{', '.join(map(str, rec.looks_planned))} seeds; stopped: {rec.stop_why}"
            + (f"; budget {rec.budget_s:.0f} s, {rec.elapsed_s:.0f} s used" if rec.budget_s else "") + ". "
            f"Rule: {rec.method}, one-sided alpha {rec.alpha:g} over all looks: a statistical claim PASSes at a look "
            "only when its one-sided p-value (Holm-adjusted within the report) is at or below that look's level, so "
            "a final PASS uses the alpha spent, not the fixed 2.5%; a FAIL may stop a claim at any look; a gate "
            "stops it (more seeds do not lift a gate). docs/claim-rules.md, 'Deciding with --until-decided'.")
    return [("h2", "Sequential decision (--until-decided)"), ("p", text),
            ("table", (["round", "seeds per variant", "level (one-sided p)", "alpha spent"] + claims, rows))]


def decide_blocks(rs, claims: list, verdicts: list) -> list:
    """What would decide each INCONCLUSIVE statistical claim: its rule's seeds for 80% power at the measured effect
    and noise, and the training time that is at the measured wall per run (analysis/power_plan.py, `plan --power`)."""
    from moebench.analysis.power_plan import claim_plans

    open_ = {v.name for v in verdicts if v.verdict == "INCONCLUSIVE"}
    plans = [p for p in claim_plans([c for c in claims if c.label() in open_], rs) if p.noise]
    if not plans:
        return []
    rows = [[p.claim, p.noise, p.effect, p.seeds_text(), p.compute_text(), p.note or "-"] for p in plans]
    return [("h2", "What would decide the open claims"),
            ("table", (["claim", "noise (measured)", "effect tested", "seeds per variant for 80% power",
                        "training time, one run at a time", "note"], rows)),
            ("p", "Each INCONCLUSIVE statistical claim's own rule simulated at the noise its seeds measured, with the "
                  "measured effect taken as true (`moebench plan SUITE --power --pilot RESULTS` gives the same "
                  "figures): the seeds per compared variant that would let it PASS with 80% probability, and the "
                  "training time that is at these runs' measured wall per run (--jobs N on N idle cores divides "
                  "it). Searched up to 64 seeds; '>' marks a claim this noise cannot decide within that; where the "
                  "measured effect is on the wrong side of the claim's bar no number of seeds makes a PASS likely.")]
