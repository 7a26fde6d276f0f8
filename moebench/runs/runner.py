"""Run every (variant, seed) of a plan into results/<suite>/, skipping finished runs and resuming
interrupted ones. Post-training measurements (inference, lm-eval) are training/finish.py's."""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from moebench import io as R
from moebench.distributed import groups as D  # [distributed] rank 0 writes; identity in one process
from moebench.models.backends import resolve_device
from moebench.models.weights import weights_bytes
from moebench.training.env import environment
from moebench.runs.progress import Pace
from moebench.errors import RunFailed, UserError
from moebench.plan import Plan, RunSpec, run_specs
from moebench.training.trackers import open_trackers
from moebench.runs.rundirs import archive_run, archive_tag, check_reruns, damage, run_state
from moebench.training.trainer import Trainer, load_data, run_identity

__all__ = ["run_state", "run_one", "run_plan", "prepare_suite_dir", "StopFlag", "DataCache", "Outcome",
           "check_reruns"]


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # ok | failed | skipped | skipped-failed (finished earlier, failed)
    summary: dict

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "skipped-failed")


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


def _progress(spec: RunSpec, quiet: bool, log, after: int = 0):
    """A tqdm bar on a terminal, and on every eval step a plain line with the step rate and the time left (for
    the run and, with `after` runs queued behind it, the suite) whether or not stderr is a terminal."""
    tty = sys.stderr.isatty() and not quiet
    bar = tqdm(total=spec.train.steps, desc=f"{spec.key} s{spec.seed}", leave=False, disable=not tty,
               unit="step", dynamic_ncols=True, position=1)
    pace = Pace(after)

    def update(step, total, rows):
        bar.n = step
        ev = next((r for r in rows if r["kind"] == "eval"), None)
        bar.set_postfix(loss=f"{rows[0]['loss']:.3f}", tok_s=f"{rows[0]['tokens_per_s']:.0f}", refresh=False)
        bar.refresh()
        rate = pace(step, total)
        if ev and not quiet:
            line = (f"  {spec.key} seed {spec.seed}: step {step}/{total} train {rows[0]['loss']:.4f} "
                    f"val {ev['val_loss']:.4f} bpb {ev['val_bpb']:.4f} ({rows[0]['tokens_per_s']:.0f} tok/s{rate})")
            if tty:  # above the bars, not through them
                tqdm.write(line, file=sys.stdout)
            else:
                log(line)

    return bar, update


def failed_summary(spec: RunSpec, trainer: Trainer | None, err: RunFailed) -> dict:
    return {
        **run_identity(spec), "status": "failed", "failure": {"step": err.step, "reason": err.reason},
        "backend": trainer.backend if trainer else None, "steps": err.step, "final": {}, "lm_eval": {}, "experts": None,
        "env": environment(trainer.device if trainer else resolve_device(spec.train.device)),
    }


def train_one(spec: RunSpec, rd: Path, data, stop: StopFlag, quiet: bool, log, after: int = 0) -> dict:
    rank0 = D.is_rank0()
    if rank0:
        R.atomic_write_text(rd / R.CONFIG, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    rd.mkdir(parents=True, exist_ok=True)
    trainer = None
    bar, update = _progress(spec, quiet, log, after)
    try:
        trainer = Trainer(spec, rd, data, stop, update)
        resumed = trainer.try_resume()
        if trainer.resume_problem:
            log(f"  {spec.key} seed {spec.seed}: {trainer.resume_problem}")
        if resumed:
            log(f"  {spec.key} seed {spec.seed}: resuming from step {trainer.step}")
        else:  # starting at step 0: rows an earlier attempt logged before any checkpoint are void
            trainer.metrics_path.unlink(missing_ok=True)
        trainer.trackers = open_trackers(spec, rd, trainer.step, rank0)
        summary = trainer.run()
        trainer.trackers.finish(summary)
        state = trainer.par.full_state_dict()  # [distributed] collective: unsharded experts / FSDP shards
        if rank0:
            R.atomic_write_bytes(rd / R.FINAL_MODEL, weights_bytes(state))
    except RunFailed as err:
        summary = failed_summary(spec, trainer, err)
        if trainer is not None:
            trainer.trackers.finish(summary)
        log(f"  {spec.key} seed {spec.seed}: FAILED at step {err.step}: {err.reason}")
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as err:  # [distributed] a rank crashed or lost a peer: record it, stop this job
        if not D.is_distributed():
            raise
        raise rank_failed(spec, rd, trainer, err) from err
    finally:
        bar.close()
    if rank0:
        if summary["status"] == "ok":  # what a reader checks the files against (metrics rows, checksums)
            summary["integrity"] = R.run_integrity(rd)
        R.write_summary(rd, summary)
        (rd / R.CHECKPOINT).unlink(missing_ok=True)
    _remove_rank_files(rd)
    D.barrier()
    return summary


# ---------------------------------------------------------------------------------------- [distributed]
def rank_failed(spec: RunSpec, rd: Path, trainer, err: Exception) -> D.DistributedRunFailed:
    """Record a rank's failure in the run's summary (the first rank to see it writes it: the failing rank
    writes before it exits, so its peers, who see a lost connection or a timeout, keep its reason)."""
    import traceback

    traceback.print_exception(err, file=sys.stderr)  # the failing rank's own traceback, in torchrun's log
    r = D.rank()
    step = trainer.step if trainer is not None else 0
    reason = f"rank {r} of {D.world_size()}: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    summary = failed_summary(spec, trainer, RunFailed(step, reason))
    summary["failure"]["rank"] = r
    if not (rd / R.SUMMARY).exists():
        R.write_summary(rd, summary)
    recorded = R.read_json(rd / R.SUMMARY).get("failure") or {}
    return D.DistributedRunFailed(
        f"{spec.key} seed {spec.seed} failed at step {recorded.get('step', step)}: "
        f"{recorded.get('reason', reason)}; the distributed job stops here (rerun the same command to retry it "
        f"from its last checkpoint and go on with the remaining runs)")


def _remove_rank_files(rd: Path) -> None:
    """A rank > 0's own metrics mirror and checkpoint (rank 0's files are the run's files)."""
    if D.rank() != 0:
        for f in rd.glob(f"*.rank{D.rank()}.*"):
            f.unlink(missing_ok=True)


def _retry_rank_failure(rd: Path) -> bool:
    """A run a crashed rank failed is retried on the next invocation (it resumes from its checkpoints)."""
    try:
        failure = R.read_json(rd / R.SUMMARY).get("failure") or {}
    except (OSError, ValueError):
        return False
    return failure.get("rank") is not None


def prepare_suite_dir(plan: Plan, results_root: Path) -> Path:
    """results/<suite>/ with the resolved suite and the plan rows (rank 0 writes; other ranks only read)."""
    suite_dir = Path(results_root) / plan.suite.name
    if D.is_rank0():
        for name in (R.SUITE_FILE, R.PLAN_FILE):  # both are rewritten from the suite: say so, never hide damage
            if problem := R.verify_recorded(suite_dir / name):
                print(f"moebench: {problem}; rewriting it from the suite", file=sys.stderr, flush=True)
        R.write_recorded_bytes(suite_dir / R.SUITE_FILE, yaml.safe_dump(plan.suite.raw, sort_keys=False).encode())
        R.write_recorded(suite_dir / R.PLAN_FILE, [r.to_dict() for r in plan.rows])
    return suite_dir


class DataCache:
    """Token splits loaded once per process and shared by the runs of one corpus."""

    def __init__(self):
        self._data = {}

    def __call__(self, spec: RunSpec):
        key = (spec.corpus.name, spec.corpus.tokenizer, spec.eval.test)
        if key not in self._data:
            self._data[key] = load_data(spec)
        return self._data[key]


def run_one(spec: RunSpec, results_root: Path, *, force: bool = False, stop: StopFlag | None = None,
            quiet: bool = False, log=print, data: DataCache | None = None, head: str = "",
            after: int = 0) -> Outcome:
    """Skip, resume or train one run into its run directory. Every rank of a distributed job calls it; `after`:
    the runs queued behind this one in this process (for the suite's ETA)."""
    rank0 = D.is_rank0()
    rd = spec.run_dir(results_root)
    head = head or f"{spec.key} seed {spec.seed}"
    state = run_state(rd, spec) if rank0 else None
    if state == "done" and not force and _retry_rank_failure(rd):  # [distributed] a crash, not the config
        log(f"{head}: a rank failed last time ({R.read_json(rd / R.SUMMARY)['failure']['reason']}); retrying")
        (rd / R.SUMMARY).unlink()
        state = "resume"
    if rank0 and state == "damaged":
        why = damage(rd)
        log(f"{head}: {why}; moved to {archive_run(rd, archive_tag(rd, state))}, retraining")
        state = "new"
    if rank0 and state == "stale" and not force and (rd / R.SUMMARY).exists():
        check_reruns([spec], results_root, force)  # a finished run of another config is never replaced silently
    if rank0 and (state == "stale" or (force and state in ("done", "resume"))):
        old = archive_run(rd, archive_tag(rd, state))
        log(f"{head}: the earlier run ({'finished' if (old / R.SUMMARY).exists() else 'unfinished'}) moved to {old}")
        state = "new"
    state = D.broadcast_object(state)  # [distributed] rank 0 decides, every rank follows
    if state == "done" and not force:
        summary = R.read_json(rd / R.SUMMARY) if rank0 else {}
        failed = summary.get("status") == "failed"
        log(f"{head}: already finished with this config{' (FAILED)' if failed else ''}, skipped "
            "(--force redoes it)")
        return Outcome(spec, "skipped-failed" if failed else "skipped", summary)
    if not rank0 and state == "new":  # [distributed] rank 0 archived the old run; this rank's files go too
        _remove_rank_files(rd)
    D.barrier()
    log(f"{head}: {'resuming' if state == 'resume' else 'training'}")
    summary = train_one(spec, rd, (data or DataCache())(spec), stop or StopFlag(), quiet, log, after)
    if summary["status"] == "ok":
        f = summary["final"]
        log(f"{head}: val loss {f['val_loss']:.4f}, bpb {f['val_bpb']:.4f}, "
            f"{summary['tokens_per_s_median']:.0f} tok/s, {summary['wall_time_s']:.1f} s")
    return Outcome(spec, summary["status"], summary)


def run_plan(plan: Plan, results_root: Path, force: bool = False, only: list[str] | None = None,
             quiet: bool = False, log=print, data: DataCache | None = None) -> list[Outcome]:
    plan = D.broadcast_object(plan)  # [distributed] rank 0's plan (a step-time match is measured per rank)
    specs = run_specs(plan, only)
    if D.is_rank0():
        check_reruns(specs, results_root, force)  # before suite.yaml / plan.json are rewritten
    prepare_suite_dir(plan, results_root)
    if not D.is_rank0():  # [distributed] one voice
        quiet, log = True, (lambda *a, **k: None)
    outcomes: list[Outcome] = []
    data, stop = data or DataCache(), StopFlag()
    suite_bar = tqdm(total=len(specs), desc=f"suite {plan.suite.name}", unit="run", position=0, dynamic_ncols=True,
                     disable=quiet or not sys.stderr.isatty())
    with stop.installed(), suite_bar:
        for i, spec in enumerate(specs, 1):
            outcomes.append(run_one(spec, results_root, force=force, stop=stop, quiet=quiet, log=log, data=data,
                                    after=len(specs) - i,
                                    head=f"[{i}/{len(specs)}] {spec.key} seed {spec.seed}"))
            suite_bar.update(1)
    return outcomes
