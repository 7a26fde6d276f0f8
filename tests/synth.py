"""Synthetic run directories in the exact on-disk format of moebench/results.py, small enough to compute by hand."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from moebench.io import atomic_write_json, atomic_write_text, run_dir

ENV = {"git_sha": "abc1234", "git_dirty": False, "python": "3.11.9", "torch": "2.13.0", "triton": "3.8.0",
       "device": "cpu", "device_name": "cpu", "cpu_model": "Synthetic CPU", "hostname": "h", "date": "2026-01-01"}


def write_suite(root: Path, name: str = "synth", claims: list | None = None, variants=("dense", "moe"),
                sweep: dict | None = None) -> Path:
    d = Path(root) / name
    d.mkdir(parents=True, exist_ok=True)
    suite = {"name": name, "variants": {v: {"kind": "moe" if "moe" in v else "dense"} for v in variants},
             "claims": claims or []}
    if sweep is not None:
        suite["sweep"] = sweep
    atomic_write_text(d / "suite.yaml", yaml.safe_dump(suite, sort_keys=True))
    atomic_write_json(d / "plan.json", [{"variant": v, "seed": 0} for v in variants])
    return d


def experts_stats(entropy=0.98, max_load=1.3, dead=0, layers=((0.3, 0.2, 0.25, 0.25), (0.1, 0.4, 0.2, 0.3))):
    return {"entropy": entropy, "max_load_x_E": max_load, "dead_experts": dead, "cv": 0.1, "drop_fraction": 0.0,
            "layers": [{"load": list(ld)} for ld in layers]}


def write_run(suite_dir: Path, variant: str, seed: int, losses, *, every=100, tokens_per_step=1000,
              flops_per_token=6000.0, wall_per_step=0.5, params_total=1000, params_active=None, status="ok",
              finished=True, final=None, tokens_per_s=2000.0, peak_mem=1_000_000, experts=None, lm_eval=None,
              env=None, failure=None, extra=None, size=None) -> Path:
    """Eval i (0-based) sits at step (i+1)*every with val loss losses[i]; the run ends at the last eval.
    With a `size` the run is that sweep size's (directory variant@size)."""
    d = run_dir(Path(suite_dir).parent, Path(suite_dir).name, variant, seed, size)
    d.mkdir(parents=True, exist_ok=True)
    kind = "moe" if experts is not None else "dense"
    atomic_write_text(d / "config.yaml", yaml.safe_dump({"variant": variant, "seed": seed, "kind": kind}))
    lines = []
    for i, loss in enumerate(losses):
        step = (i + 1) * every
        tok = step * tokens_per_step
        common = {"step": step, "tokens": tok, "flops": tok * flops_per_token, "wall": step * wall_per_step}
        lines.append({"kind": "train", **common, "loss": loss + 0.05, "aux_loss": 0.01, "lr": 1e-3,
                      "step_time": wall_per_step, "tokens_per_s": tokens_per_s})
        ev = {"kind": "eval", **common, "val_loss": loss, "val_ppl": 2.718281828 ** loss, "val_bpb": loss / 2}
        if experts is not None:
            ev["experts"] = experts
        lines.append(ev)
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if not finished:
        return d
    steps = len(losses) * every
    last = losses[-1] if len(losses) else float("nan")
    fin = {"val_loss": last, "val_ppl": 2.718281828 ** last, "val_bpb": last / 2,
           "test_loss": last + 0.01, "test_ppl": 2.718281828 ** (last + 0.01), "test_bpb": (last + 0.01) / 2}
    fin.update(final or {})
    atomic_write_json(d / "summary.json", {
        "suite": Path(suite_dir).name, "variant": variant, "seed": seed, "status": status,
        "failure": failure if status == "failed" else None, "config_hash": f"h{variant}{seed}",
        "kind": kind, "matched_to": None if kind == "dense" else "dense", "backend": "torch_ref",
        "params": {"total": params_total, "active": params_active or params_total, "embedding": 100},
        "flops_per_token": {"train": flops_per_token, "forward": flops_per_token / 3},
        "steps": steps, "tokens": steps * tokens_per_step, "wall_time_s": steps * wall_per_step,
        "final": fin, "tokens_per_s_median": tokens_per_s, "step_time_median_s": wall_per_step,
        "peak_memory_bytes": peak_mem, "peak_memory_method": "synthetic", "experts": experts,
        "lm_eval": lm_eval or {}, "env": env or ENV, **(extra or {})})
    return d
