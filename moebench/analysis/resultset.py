"""Run directories -> ResultSet (pandas), read from disk alone: a report never needs a model or a GPU.

Column names of `runs` (one row per (variant, seed)):
  suite, variant, seed, status ("ok" | "failed" | "incomplete" | "damaged": a summary or file that fails its check,
  failure_reason names the file; its numbers and curves are left out), failure_step, failure_reason, kind, matched_to,
  backend, params_total, params_active, params_embedding, train_flops_per_token, forward_flops_per_token, steps,
  tokens, wall_time_s, val_loss, val_ppl, val_bpb, test_loss, test_ppl, test_bpb, tokens_per_s_median,
  step_time_median_s, peak_memory_bytes, peak_memory_method, tokens_per_param,
  peak_flops, peak_bw, peak_source, param_bytes (from the run's env, for S-MFU / S-MBU),
  experts.<key> for each scalar in summary "experts" (entropy, max_load_x_E, cv, dead_experts, drop_fraction, ...),
  experts.<metric>.<p50|p90|max> for the load metrics over layers (max_vio, max_vio_batch, cv_layers, dead_layers),
  lm_eval.<task>.<metric>,
  concurrent_runs_mean, concurrent_runs_max (other runs training beside it on its host: time-weighted mean, max),
  load_avg_start, load_avg_end (the host's 1-minute load average when it started and ended).
The final metric columns carry the bare metric names so a claim's `metric: val_bpb` is a column lookup.
"""
from __future__ import annotations

import json

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moebench.errors import UserError
from moebench.io import (LEGACY, METRICS, PLAN_FILE, PLANNED_RUNS, SIDEBYSIDE, is_legacy_run, read_json,
                         read_metrics, read_suite, read_config, read_summary, run_key, verify_recorded,
                         verify_suite_files, verify_run)

FINAL_KEYS = ("val_loss", "val_ppl", "val_bpb", "test_loss", "test_ppl", "test_bpb")
CURVE_COLS = ("variant", "seed", "step", "tokens", "flops", "wall", "val_loss", "val_ppl", "val_bpb")
TRAIN_COLS = ("variant", "seed", "step", "tokens", "flops", "wall", "loss", "aux_loss", "lr", "step_time",
              "tokens_per_s")
RUN_COLS = ("suite", "variant", "seed", "status", "failure_step", "failure_reason", "kind", "matched_to", "backend",
            "params_total", "params_active", "params_embedding", "train_flops_per_token", "forward_flops_per_token",
            "steps", "tokens", "wall_time_s", *FINAL_KEYS, "tokens_per_s_median", "step_time_median_s",
            "peak_memory_bytes", "peak_memory_method", "tokens_per_param", "unique_train_tokens", "epochs", "unigram_ce_val", "peak_flops", "peak_bw", "peak_source",
            "param_bytes")
_SEED_DIR = re.compile(r"\Aseed-(\d+)\Z")  # \Z: `$` would take "seed-0\n"


@dataclass
class ResultSet:
    results_dir: Path
    suite: dict
    plan: Any
    runs: pd.DataFrame
    curves: pd.DataFrame
    train: pd.DataFrame
    env: dict  # merged env of finished runs: a key with differing values holds them sorted and joined by " | "
    experts: dict = field(default_factory=dict)  # (variant, seed) -> final summary "experts" dict (per-layer loads)
    inference: dict = field(default_factory=dict)  # (variant, seed) -> summary "inference" dict (speed, pruning)
    sidebyside: dict | None = None  # results/<suite>/sidebyside.json: interleaved step times (training/sidebyside.py)
    # suite-level files that failed their check (one line each): sidebyside.json is left unused; suite.yaml and
    # plan.json cannot be (they say what the suite is), so the report names them above its verdicts
    damaged_files: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.suite.get("name") or self.results_dir.name)

    @property
    def variants(self) -> list[str]:
        return sorted(self.runs["variant"].unique()) if len(self.runs) else []

    def __post_init__(self):
        # row positions per variant, found once: a claim looks columns up per variant many times (and the
        # null-calibration tests judge thousands of result sets)
        self._rows = _positions(self.runs["variant"])
        self._ok = (self.runs["status"] == "ok").to_numpy(bool) if len(self.runs) else np.zeros(0, bool)
        self._curve_rows = _positions(self.curves["variant"])
        self._arrays: dict[tuple[str, str], np.ndarray] = {}  # (frame, column) -> its values, filled on first use

    def _array(self, frame: str, column: str) -> np.ndarray:
        key = (frame, column)
        if key not in self._arrays:
            self._arrays[key] = getattr(self, frame)[column].to_numpy()
        return self._arrays[key]

    def ok_runs(self, variant: str) -> pd.DataFrame:
        return self.runs.iloc[self._ok_positions(variant)]

    def _ok_positions(self, variant: str) -> np.ndarray:
        pos = self._rows.get(variant, _NONE)
        return pos[self._ok[pos]]

    def run_values(self, variant: str, column: str, ok: bool = True) -> np.ndarray:
        """The column's raw values for the variant's runs (finished ones only unless ok=False), in seed order."""
        pos = self._ok_positions(variant) if ok else self._rows.get(variant, _NONE)
        return self._array("runs", column)[pos]

    def seed_values(self, variant: str, column: str) -> list[float]:
        """One value per finished seed (missing values dropped); [] for an unknown column."""
        if column not in self.runs.columns:
            return []
        return [float(x) for x in self.run_values(variant, column) if x is not None and x == x]

    def curve_values(self, variant: str, columns) -> dict[str, np.ndarray]:
        """Columns of the variant's eval-curve rows (sorted by seed, then step)."""
        pos = self._curve_rows.get(variant, _NONE)
        return {c: self._array("curves", c)[pos] for c in columns}

    def total_wall_time_s(self) -> float:
        return float(self.runs["wall_time_s"].fillna(0).sum()) if len(self.runs) else 0.0


_NONE = np.zeros(0, dtype=np.int64)


def _positions(col: pd.Series) -> dict[str, np.ndarray]:
    out: dict[str, list[int]] = {}
    for i, v in enumerate(col.to_numpy(object)):
        out.setdefault(v, []).append(i)
    return {k: np.array(v, dtype=np.int64) for k, v in out.items()}


def _flat(prefix: str, d: dict | None) -> dict:
    if not isinstance(d, dict):
        return {}
    out = {f"{prefix}.{k}": v for k, v in sorted(d.items()) if not isinstance(v, (dict, list))}
    for k, v in sorted(d.items()):  # one level down: the {p50, p90, max} over layers of the load metrics
        if isinstance(v, dict):
            out.update({f"{prefix}.{k}.{q}": x for q, x in sorted(v.items()) if isinstance(x, (int, float))})
    return out


def _lm_eval_cols(lm: dict | None) -> dict:
    out = {}
    for task, metrics in sorted((lm or {}).items()):
        for metric, value in sorted((metrics or {}).items()):
            # version / n_shot describe the task, they are not scores to compare
            if metric not in ("version", "n_shot") and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"lm_eval.{task}.{metric}"] = float(value)
    return out


def _run_row(suite: str, variant: str, seed: int, s: dict | None, cfg: dict) -> dict:
    if s is None:  # no summary.json yet: killed or still training
        row = {"suite": suite, "variant": variant, "seed": seed, "status": "incomplete",
               "kind": cfg.get("kind"), "matched_to": cfg.get("matched_to")}
        return row
    failure = s.get("failure") or {}
    params, fpt, final = s.get("params") or {}, s.get("flops_per_token") or {}, s.get("final") or {}
    row = {
        "suite": s.get("suite", suite), "variant": variant, "seed": seed, "status": s.get("status", "ok"),
        "failure_step": failure.get("step"), "failure_reason": failure.get("reason"),
        "kind": s.get("kind"), "matched_to": s.get("matched_to"), "backend": s.get("backend"),
        "params_total": params.get("total"), "params_active": params.get("active"),
        "params_embedding": params.get("embedding"),
        "train_flops_per_token": fpt.get("train"), "forward_flops_per_token": fpt.get("forward"),
        "steps": s.get("steps"), "tokens": s.get("tokens"), "wall_time_s": s.get("wall_time_s"),
        **{k: final.get(k) for k in FINAL_KEYS},
        "tokens_per_s_median": s.get("tokens_per_s_median"), "step_time_median_s": s.get("step_time_median_s"),
        "peak_memory_bytes": s.get("peak_memory_bytes"), "peak_memory_method": s.get("peak_memory_method"),
    }
    env = s.get("env") or {}
    row.update({k: env.get(k) for k in ("peak_flops", "peak_bw", "peak_source", "param_bytes")})
    if row["tokens"] and row["params_total"]:
        row["tokens_per_param"] = row["tokens"] / row["params_total"]
    row["unique_train_tokens"] = s.get("unique_train_tokens")
    row["epochs"] = s.get("epochs")
    row["unigram_ce_val"] = s.get("unigram_ce_val")  # nats/token; absent in results older than the plateau check
    row["flops_measured_forward_per_token"] = (s.get("flops_measured") or {}).get("forward")
    row.update({k: s.get(k) for k in ("world_size", "comm_time_s", "comm_fraction")})
    beside, load = s.get("concurrent_runs") or {}, s.get("load_avg_1m") or {}  # --jobs / Ray: what shared the host
    row.update(concurrent_runs_mean=beside.get("mean"), concurrent_runs_max=beside.get("max"),
               load_avg_start=load.get("start"), load_avg_end=load.get("end"))
    row["parallel"] = json.dumps(s.get("parallel"), sort_keys=True) if s.get("parallel") else None
    row.update(_inference_cols(s.get("inference")))
    row.update(_flat("experts", s.get("experts")))  # every scalar statistic the trainer recorded
    row.update(_lm_eval_cols(s.get("lm_eval")))
    return row


def _inference_cols(inf: dict | None) -> dict:
    """inference.tokens_per_s.b<B> and inference.latency_ms.b<B> per batch size, and the weight bytes."""
    if not inf:
        return {}
    out = {"inference.weights_bytes": inf.get("weights_bytes")}
    for r in inf.get("speed", []):
        for k in ("tokens_per_s", "latency_ms", "expert_batch_max_over_mean"):
            out[f"inference.{k}.b{r['batch_size']}"] = r.get(k)
    return out


def _merge_env(envs: list[dict]) -> dict:
    merged: dict[str, set] = {}
    for e in envs:
        for k, v in (e or {}).items():
            merged.setdefault(k, set()).add(v if isinstance(v, (int, float, bool)) or v is None else str(v))
    out = {}
    for k, vals in sorted(merged.items()):
        vals_l = sorted(vals, key=str)
        out[k] = vals_l[0] if len(vals_l) == 1 else " | ".join(str(v) for v in vals_l)
    return out


def _seed_dirs(results_dir: Path):
    # superseded/ holds archived runs of older configs (training/rundirs.py), not this suite's runs
    for vdir in sorted(p for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and p.name != "superseded"):
        seeds = [(int(m.group(1)), d) for d in vdir.iterdir() if d.is_dir() and (m := _SEED_DIR.match(d.name))]
        for seed, d in sorted(seeds):
            yield vdir.name, seed, d


def _planned(plan, suite: dict) -> list[tuple[str, int]]:
    """(variant, seed) of every planned run: plan.json rows are PlanRow dicts (one per variant, keyed `name`) and
    the seeds are the resolved suite's train.seeds; a planned run with no directory yet is as unfinished as a
    killed one."""
    seeds = ((suite or {}).get("train") or {}).get("seeds") or []
    # a sweep's rows are one per (size, variant): their runs live in variant@size directories
    names = [run_key(r["name"], r.get("size")) for r in plan or [] if isinstance(r, dict) and isinstance(r.get("name"), str)]
    return sorted({(n, int(sd)) for n in names for sd in seeds if isinstance(sd, int)})


def _frame(rows: list[dict], cols) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in cols:
        if c not in df.columns:
            df[c] = pd.Series(dtype="float64")
    extra = sorted(c for c in df.columns if c not in cols)
    return df[list(cols) + extra]


@dataclass(frozen=True)
class RunRecord:
    """What one run directory holds, as read from disk (summary None: not finished)."""
    variant: str
    seed: int
    summary: dict | None
    config: dict
    metrics: list[dict]
    problem: str | None = None  # a damaged file, named (its summary's counts or checksums no longer match)
    legacy: bool = False  # finished before runs had a manifest: its summary is unverified (io.LEGACY)


def read_records(results_dir: Path) -> list[RunRecord]:
    out = []
    for variant, seed, d in _seed_dirs(results_dir):
        s, problem = read_summary(d)
        problem = problem or (verify_run(d, s) if s is not None else None)
        metrics = [] if problem else list(read_metrics(d / METRICS))
        out.append(RunRecord(variant, seed, None if problem else s, read_config(d) or {}, metrics, problem,
                             legacy=not problem and is_legacy_run(d)))
    return out


def load_results(results_dir: Path, seeds: set[int] | None = None) -> ResultSet:
    """The results folder as a ResultSet; `seeds`: only the runs of these seeds (a look of run --until-decided)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results directory not found: {results_dir}")
    suite, plan_path = read_suite(results_dir), results_dir / PLAN_FILE
    try:
        plan = read_json(plan_path) if plan_path.exists() else None
    except (OSError, ValueError) as e:
        raise UserError(f"{plan_path}: unreadable ({type(e).__name__}); rerun `moebench run` on the suite to "
                        "rewrite it") from None
    records = [r for r in read_records(results_dir) if seeds is None or r.seed in seeds]
    return build_result_set(results_dir, suite, plan, records)


def build_result_set(results_dir: Path, suite: dict, plan, records: list[RunRecord]) -> ResultSet:
    """The frames of a ResultSet from run records: load_results reads the records from disk, the null-calibration
    tests build them in memory, and both go through this one function."""
    suite_name = str(suite.get("name") or Path(results_dir).name)
    runs, curves, train, envs, experts, inference = [], [], [], [], {}, {}
    for rec in records:
        variant, seed, s = rec.variant, rec.seed, rec.summary
        if rec.problem:  # a damaged run is no data: its numbers could be anything (and flip a verdict)
            runs.append({**_run_row(suite_name, variant, seed, None, rec.config), "status": "damaged",
                         "failure_reason": rec.problem})
            continue
        runs.append({**_run_row(suite_name, variant, seed, s, rec.config), "verified": LEGACY if rec.legacy
                     else "manifest" if s is not None else None})
        if s is not None:
            envs.append(s.get("env") or {})
            if s.get("experts"):
                experts[(variant, seed)] = s["experts"]
            if s.get("inference"):
                inference[(variant, seed)] = s["inference"]
        for m in rec.metrics:
            base = {"variant": variant, "seed": seed}
            if m.get("kind") == "eval":
                curves.append({**base, **{k: m.get(k) for k in CURVE_COLS[2:]}})
            elif m.get("kind") == "train":
                train.append({**base, **{k: m.get(k) for k in TRAIN_COLS[2:]}})

    seen = {(r["variant"], r["seed"]) for r in runs}
    # runs another shard will train: missing, not absent (a claim is not judged without them)
    sharded = read_json(results_dir / PLANNED_RUNS) if (results_dir / PLANNED_RUNS).exists() else {}
    planned = set(_planned(plan, suite)) | {(str(r["variant"]), int(r["seed"])) for r in sharded.get("runs", [])}
    runs += [_run_row(suite_name, v, sd, None, {}) for v, sd in sorted(planned) if (v, sd) not in seen]
    runs_df = _frame(runs, RUN_COLS).sort_values(["variant", "seed"], kind="stable").reset_index(drop=True)
    curves_df = _frame(curves, CURVE_COLS).sort_values(["variant", "seed", "step"], kind="stable")
    train_df = _frame(train, TRAIN_COLS).sort_values(["variant", "seed", "step"], kind="stable")
    damaged_files = verify_suite_files(results_dir)  # suite.yaml, plan.json, sidebyside.json against the manifest
    timing_problem = verify_recorded(results_dir / SIDEBYSIDE)
    return ResultSet(results_dir=Path(results_dir), suite=suite, plan=plan, runs=runs_df,
                     curves=curves_df.reset_index(drop=True), train=train_df.reset_index(drop=True),
                     env=_merge_env(envs), experts=experts, inference=inference,
                     sidebyside=None if timing_problem else _sidebyside(results_dir / SIDEBYSIDE),
                     damaged_files=damaged_files)


def _sidebyside(path: Path) -> dict | None:
    """The side-by-side timing record; an unreadable one is ignored (the per-run medians are used instead)."""
    try:
        d = read_json(path)
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("step_time_s"), dict) else None
