"""`--launcher ray`: every run a Ray task that asks for its CPUs (train.threads) and GPU (one on CUDA), on a local
Ray instance or the cluster at `--address`. Each task is runner.run_one on a results directory every node reads
and writes (a shared filesystem: the token cache is built per node under its own lock, the run directories are
shared). A task whose worker died (node lost, out of memory) is retried up to MAX_RETRIES times and resumes from
its last checkpoint; this process collects the outcomes, then post-training work and the report run here.

Ray is an optional extra (`pip install -e '.[ray]'`); the cluster's nodes need moebench installed too.
"""
from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

from moebench import io as R
from moebench.errors import UserError
from moebench.plan import RunSpec
from moebench.runs.concurrency import Span, load_1m, record
from moebench.runs.progress import SuiteProgress
from moebench.runs.runner import DataCache, Outcome, run_one

MAX_RETRIES = 3


def ray_task(spec: RunSpec, results_root: str, force: bool) -> dict:
    """What a Ray worker runs for one run: its status and when and where it trained."""
    t0, l0 = time.time(), load_1m()
    outcome = run_one(spec, Path(results_root), force=force, quiet=True, log=lambda msg: print(msg, flush=True))
    return {"status": outcome.status, "start": t0, "end": time.time(), "host": socket.gethostname(),
            "load_start": l0, "load_end": load_1m()}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--launcher ray: Ray is not installed; pip install -e '.[ray]' (or pip install ray)") from None
    return ray


def _gpus_per_run(ray, spec: RunSpec) -> int:
    if spec.train.device.startswith("cuda"):
        return 1
    return 1 if spec.train.device == "auto" and ray.cluster_resources().get("GPU", 0) >= 1 else 0


def run_ray(specs: list[RunSpec], results_root: Path, *, address: str | None, force: bool, log,
            quiet: bool = False) -> list[Outcome]:
    ray = _import_ray()
    if not specs:
        return []
    started = not ray.is_initialized()
    if started:
        try:
            # ray logs notices (token authentication is on, ...) at WARNING while it starts: not for this terminal
            logging.getLogger("ray").setLevel(logging.ERROR)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"--address: cannot join the Ray cluster at {address!r}: {e}") from None
    DataCache()(specs[0])  # the cache on this node, built once, before tasks here memory-map it
    spans: list[Span] = []
    progress = SuiteProgress(specs[0].suite, results_root, len(specs), quiet, log)
    refs: dict = {}
    try:
        task = ray.remote(ray_task)
        for i, spec in enumerate(specs, 1):
            opts = {"num_cpus": spec.train.threads or 1, "num_gpus": _gpus_per_run(ray, spec),
                    "max_retries": MAX_RETRIES, "retry_exceptions": False, "name": f"{spec.variant}-seed-{spec.seed}"}
            refs[task.options(**opts).remote(spec, str(results_root), force)] = (i, spec)
        outcomes, error = _collect(ray, refs, results_root, spans, progress)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)
        raise
    finally:
        progress.close()
        record(results_root, specs[0].suite, spans, "ray", None)
        if started:
            ray.shutdown()
    if error is not None:
        raise error
    return [outcomes[s.ident] for s in specs]


def _collect(ray, refs: dict, results_root: Path, spans: list[Span], progress: SuiteProgress):
    """Wait for every task (a failure is isolated: the others go on); the outcomes and the first error."""
    outcomes, error, pending = {}, None, list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
        for ref in pending:  # a run shows once its metrics appear (queued tasks have none yet)
            _, spec = refs[ref]
            key = spec.ident
            if key not in progress.active and (spec.run_dir(results_root) / R.METRICS).exists():
                progress.start(key, spec.train.steps)
        progress.poll()
        for ref in done:
            i, spec = refs[ref]
            key, head = spec.ident, f"[{i}/{len(refs)}] {spec.label}"
            try:
                r = ray.get(ref)
                status = r["status"]
                if status != "skipped":
                    spans.append(Span(key, r["start"], r["end"], r["host"], r["load_start"], r["load_end"]))
            except ray.exceptions.RayTaskError as e:  # the run raised: a user error, a full disk, a bug
                cause = e.cause if isinstance(e.cause, BaseException) else RuntimeError(str(e))
                error = error or cause
                status = "crashed"
                progress.log(f"{head}: {type(cause).__name__}: {cause}")
            except ray.exceptions.RayError as e:  # its worker died MAX_RETRIES + 1 times
                status = "crashed"
                progress.log(f"{head}: the Ray worker died ({type(e).__name__}); rerun to resume it")
            path = spec.run_dir(results_root) / R.SUMMARY
            summary = R.read_json(path) if status != "crashed" and path.exists() else {}
            outcomes[key] = Outcome(spec, status, summary)
            progress.end(key)
            progress.log(_outcome_line(head, status, summary))
    return outcomes, error


def _outcome_line(head: str, status: str, summary: dict) -> str:
    if status == "ok":
        f = summary["final"]
        return (f"{head}: val loss {f['val_loss']:.4f}, bpb {f['val_bpb']:.4f}, "
                f"{summary['tokens_per_s_median']:.0f} tok/s, {summary['wall_time_s']:.1f} s")
    if status == "failed":
        return f"{head}: FAILED at step {summary['failure']['step']}: {summary['failure']['reason']}"
    return f"{head}: {status}"
