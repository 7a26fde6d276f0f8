"""Run every (variant, seed) of a plan into results/<suite>/, skipping finished runs and resuming
interrupted ones; load a finished run's model back for evaluation."""
from __future__ import annotations

import io
import shutil
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from moebench import results as R
from moebench.env import environment, resolve_device
from moebench.errors import RunFailed
from moebench.plan import Plan, RunSpec, run_specs
from moebench.train import Trainer, load_data


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # ok | failed | skipped
    summary: dict


def run_state(rd: Path, spec: RunSpec) -> str:
    """done: finished with this config; stale: something else is there; resume / new."""
    summary = rd / R.SUMMARY
    if summary.exists():
        try:
            same = R.read_json(summary).get("config_hash") == spec.config_hash
        except (OSError, ValueError):
            same = False
        return "done" if same else "stale"
    if (rd / R.CONFIG).exists():
        cfg = yaml.safe_load((rd / R.CONFIG).read_text()) or {}
        return "resume" if cfg.get("config_hash") == spec.config_hash else "stale"
    return "new"


class StopFlag:
    """First Ctrl-C / SIGTERM: finish the step, checkpoint, stop. Second Ctrl-C: stop now."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    @contextmanager
    def installed(self):
        def handler(signum, frame):
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.requested = True
            print("\nstopping: finishing this step and saving a checkpoint (Ctrl-C again to abort now)",
                  file=sys.stderr, flush=True)

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _progress(spec: RunSpec, quiet: bool, log):
    tty = sys.stderr.isatty() and not quiet
    bar = tqdm(total=spec.train["steps"], desc=f"{spec.variant} s{spec.seed}", leave=False, disable=not tty,
               unit="step", dynamic_ncols=True)

    def update(step, total, rows):
        bar.n = step
        ev = next((r for r in rows if r["kind"] == "eval"), None)
        bar.set_postfix(loss=f"{rows[0]['loss']:.3f}", tok_s=f"{rows[0]['tokens_per_s']:.0f}", refresh=False)
        bar.refresh()
        if ev and not tty and not quiet:
            log(f"  {spec.variant} seed {spec.seed}: step {step}/{total} train {rows[0]['loss']:.4f} "
                f"val {ev['val_loss']:.4f} bpb {ev['val_bpb']:.4f} ({rows[0]['tokens_per_s']:.0f} tok/s)")

    return bar, update


def failed_summary(spec: RunSpec, trainer: Trainer | None, err: RunFailed) -> dict:
    p = spec.plan
    return {
        "suite": spec.suite, "variant": spec.variant, "seed": spec.seed, "status": "failed",
        "failure": {"step": err.step, "reason": err.reason}, "config_hash": spec.config_hash, "kind": p["kind"],
        "matched_to": p["matched_to"], "backend": trainer.backend if trainer else None,
        "params": {"total": p["params_total"], "active": p["params_active"], "embedding": p["params_embedding"]},
        "flops_per_token": {"train": p["train_flops_per_token"], "forward": p["forward_flops_per_token"]},
        "steps": err.step, "final": {}, "lm_eval": {}, "experts": None,
        "env": environment(trainer.device if trainer else resolve_device(spec.train["device"])),
    }


def train_one(spec: RunSpec, rd: Path, data, stop: StopFlag, quiet: bool, log) -> dict:
    R.atomic_write_text(rd / R.CONFIG, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    trainer = None
    bar, update = _progress(spec, quiet, log)
    try:
        trainer = Trainer(spec, rd, data, stop, update)
        if trainer.try_resume():
            log(f"  {spec.variant} seed {spec.seed}: resuming from step {trainer.step}")
        summary = trainer.run()
        buf = io.BytesIO()
        torch.save(trainer.model.state_dict(), buf)
        R.atomic_write_bytes(rd / R.FINAL_MODEL, buf.getvalue())
        lm = spec.eval.get("lm_eval") or {}
        if lm.get("tasks"):
            from moebench.lm_eval_adapter import run_lm_eval

            summary["lm_eval"] = run_lm_eval(rd, lm["tasks"], lm.get("limit"), lm.get("batch_size", 8))
    except RunFailed as err:
        summary = failed_summary(spec, trainer, err)
        log(f"  {spec.variant} seed {spec.seed}: FAILED at step {err.step}: {err.reason}")
    finally:
        bar.close()
    R.atomic_write_json(rd / R.SUMMARY, summary)
    (rd / R.CHECKPOINT).unlink(missing_ok=True)
    return summary


def run_plan(plan: Plan, results_root: Path, force: bool = False, only: list[str] | None = None,
             quiet: bool = False, log=print) -> list[Outcome]:
    suite_dir = Path(results_root) / plan.suite.name
    R.atomic_write_text(suite_dir / "suite.yaml", yaml.safe_dump(plan.suite.raw, sort_keys=False))
    R.atomic_write_json(suite_dir / "plan.json", [r.to_dict() for r in plan.rows])
    specs = run_specs(plan, only)
    outcomes: list[Outcome] = []
    data = None
    stop = StopFlag()
    with stop.installed():
        for i, spec in enumerate(specs, 1):
            rd = R.run_dir(results_root, spec.suite, spec.variant, spec.seed)
            state = run_state(rd, spec)
            head = f"[{i}/{len(specs)}] {spec.variant} seed {spec.seed}"
            if state == "done" and not force:
                log(f"{head}: already finished with this config, skipped (--force redoes it)")
                outcomes.append(Outcome(spec, "skipped", R.read_json(rd / R.SUMMARY)))
                continue
            if state == "stale" or force:
                shutil.rmtree(rd, ignore_errors=True)
            log(f"{head}: {'resuming' if state == 'resume' and not force else 'training'}")
            data = data or load_data(spec)
            summary = train_one(spec, rd, data, stop, quiet, log)
            if summary["status"] == "ok":
                f = summary["final"]
                log(f"{head}: val loss {f['val_loss']:.4f}, bpb {f['val_bpb']:.4f}, "
                    f"{summary['tokens_per_s_median']:.0f} tok/s, {summary['wall_time_s']:.1f} s")
            outcomes.append(Outcome(spec, summary["status"], summary))
    return outcomes


def load_trained(run_dir: Path, device: str = "auto"):
    """(model in eval mode, tokenizer, seq_len, device) of a finished run."""
    from moebench.data import get_tokenizer
    from moebench.errors import UserError
    from moebench.models import ModelConfig, Transformer

    rd = Path(run_dir)
    if not (rd / R.FINAL_MODEL).exists() or not (rd / R.CONFIG).exists():
        raise UserError(f"{rd}: not a finished moebench run (needs {R.CONFIG} and {R.FINAL_MODEL})")
    cfg = yaml.safe_load((rd / R.CONFIG).read_text())
    dev = resolve_device(device)
    model = Transformer(ModelConfig.from_dict(cfg["model"]), "torch").to(dev)
    model.load_state_dict(torch.load(rd / R.FINAL_MODEL, map_location=dev, weights_only=True))
    model.eval()
    tok = get_tokenizer(cfg["corpus"]["name"], cfg["corpus"]["tokenizer"])
    return model, tok, cfg["model"]["seq_len"], dev
