"""Synthetic run directories in the exact on-disk format the trainer writes, small enough to compute by hand.

write_suite writes suite.yaml and plan.json with the real producers (build_suite, make_plan, prepare_suite_dir);
run_record builds one run's summary and metrics the way write_run writes them, so memory_results (the
null-calibration tests' fast path) and load_results (the files) go through the same build_result_set.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from moebench.analysis.resultset import ResultSet, RunRecord, build_result_set
from moebench.config.suite import build_suite
from moebench.io import atomic_write_text, run_dir, write_recorded_bytes, write_summary
from moebench.plan import make_plan
from moebench.plan.sweep import make_sweep_plan
from moebench.runs.runner import prepare_suite_dir
from tests.helpers import TINY, tiny

ENV = {"git_sha": "abc1234", "git_dirty": False, "python": "3.11.9", "torch": "2.13.0", "triton": "3.8.0",
       "device": "cpu", "device_name": "cpu", "cpu_model": "Synthetic CPU", "hostname": "h", "date": "2026-01-01"}
UNIQUE_TOKENS = 10_000_000  # the synthetic corpus: every synthetic run sees well under one epoch of it


def write_suite(root: Path, name: str = "synth", claims: list | None = None, variants=("dense", "moe"),
                seeds=(0,), **changes) -> Path:
    """results/<name>/ with suite.yaml and plan.json as `moebench run` writes them, for a tiny suite whose
    variants are dense, or TINY's 4-expert MoE when the name contains "moe". Claims are written as given (not
    validated), so a test can store an invalid claim and see the report reject it."""
    data = tiny(**{"name": name, "train.seeds": list(seeds), **changes})
    data["variants"] = {v: dict(TINY["variants"]["moe"]) if "moe" in v else {} for v in variants}
    suite = build_suite(data)
    plan = (make_sweep_plan if suite.sweep is not None else make_plan)(suite, 256)
    d = prepare_suite_dir(plan, Path(root))
    if claims:
        raw = {**plan.suite.raw, "claims": claims}
        # through the suite folder's manifest, as prepare_suite_dir writes it: an unrecorded rewrite reads as damage
        write_recorded_bytes(d / "suite.yaml", yaml.safe_dump(raw, sort_keys=False).encode())
    return d


def experts_stats(entropy=0.98, max_load=1.3, dead=0, layers=((0.3, 0.2, 0.25, 0.25), (0.1, 0.4, 0.2, 0.3))):
    """The trainer's expert summary (models.counters.expert_stats) of per-layer loads, with the scalars a
    claim test sets."""
    import torch

    from moebench.models.counters import expert_stats, layer_counters

    counts = [torch.repeat_interleave(torch.arange(len(ld)), torch.tensor([round(x * 1000) for x in ld]))
              for ld in layers]
    s = expert_stats([layer_counters(len(ld), c, 0, None, None) for ld, c in zip(layers, counts)], 0.1)
    return {**s, "entropy": entropy, "max_load_x_E": max_load, "dead_experts": dead, "cv": 0.1}


def run_record(suite_name: str, variant: str, seed: int, losses, *, every=100, tokens_per_step=1000,
               flops_per_token=6000.0, wall_per_step=0.5, params_total=1000, params_active=None, status="ok",
               finished=True, final=None, tokens_per_s=2000.0, peak_mem=1_000_000, experts=None, lm_eval=None,
               env=None, failure=None, extra=None, unique_train_tokens=UNIQUE_TOKENS, walls=None) -> RunRecord:
    """Eval i (0-based) sits at step (i+1)*every with val loss losses[i]; the run ends at the last eval.
    `walls` (optional) gives each eval's wall-clock time instead of step * wall_per_step."""
    kind = "moe" if experts is not None else "dense"
    config = {"variant": variant, "seed": seed, "kind": kind}
    lines = []
    for i, loss in enumerate(losses):
        loss = float(loss)
        step = (i + 1) * every
        tok = step * tokens_per_step
        wall = float(walls[i]) if walls is not None else step * wall_per_step
        common = {"step": step, "tokens": tok, "flops": tok * flops_per_token, "wall": wall}
        lines.append({"kind": "train", **common, "loss": loss + 0.05, "aux_loss": 0.01, "lr": 1e-3,
                      "step_time": wall_per_step, "tokens_per_s": tokens_per_s})
        ev = {"kind": "eval", **common, "val_loss": loss, "val_ppl": 2.718281828 ** loss, "val_bpb": loss / 2}
        if experts is not None:
            ev["experts"] = experts
        lines.append(ev)
    if not finished:
        return RunRecord(variant, seed, None, config, lines)
    steps = len(losses) * every
    last = float(losses[-1]) if len(losses) else float("nan")
    fin = {"val_loss": last, "val_ppl": 2.718281828 ** last, "val_bpb": last / 2,
           "test_loss": last + 0.01, "test_ppl": 2.718281828 ** (last + 0.01), "test_bpb": (last + 0.01) / 2}
    fin.update(final or {})
    summary = {
        "suite": suite_name, "variant": variant, "seed": seed, "status": status,
        "failure": failure if status == "failed" else None, "config_hash": f"h{variant}{seed}",
        "kind": kind, "matched_to": None if kind == "dense" else "dense", "backend": "torch_ref",
        "params": {"total": params_total, "active": params_active or params_total, "embedding": 100},
        "flops_per_token": {"train": flops_per_token, "forward": flops_per_token / 3},
        "steps": steps, "tokens": steps * tokens_per_step,
        "wall_time_s": float(walls[-1]) if walls is not None and len(losses) else steps * wall_per_step,
        "final": fin, "unique_train_tokens": unique_train_tokens, "epochs": steps * tokens_per_step / unique_train_tokens,
        "tokens_per_s_median": tokens_per_s, "step_time_median_s": wall_per_step,
        "peak_memory_bytes": peak_mem, "peak_memory_method": "synthetic", "experts": experts,
        "lm_eval": lm_eval or {}, "env": env or ENV, **(extra or {})}
    return RunRecord(variant, seed, summary, config, lines)


def write_run(suite_dir: Path, variant: str, seed: int, losses, size: str | None = None, **kw) -> Path:
    """One run directory (config.yaml, metrics.jsonl, and summary.json unless finished=False); see run_record.
    With a `size` the run is that sweep size's (directory variant@size)."""
    rec = run_record(Path(suite_dir).name, variant, seed, losses, **kw)
    d = run_dir(Path(suite_dir).parent, Path(suite_dir).name, variant, seed, size)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "config.yaml", yaml.safe_dump(rec.config))
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rec.metrics))
    if rec.summary is not None:
        write_summary(d, rec.summary)  # and its manifest, as the trainer writes them
    return d


def memory_results(records: list[RunRecord], name: str = "synth") -> ResultSet:
    """The ResultSet load_results would build from these runs' directories (no suite.yaml or plan.json)."""
    recs = sorted(records, key=lambda r: (r.variant, r.seed))
    return build_result_set(Path(name), {}, None, recs)
