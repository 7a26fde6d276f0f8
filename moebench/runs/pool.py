"""Train a suite's runs: one after another in this process (`--jobs 1`), or up to N at once in worker processes
(`--jobs N`), each run through runner.run_one (which owns skip, resume and failure handling).

Runs are independent (batches are a pure function of seed and step; every run seeds its own model), so a run
computes bit for bit what it computes alone when its thread count is the same. Workers are spawned (torch
threads and fork do not mix), pinned to a GPU each on CUDA, and only memory-map the token cache, which this
process builds first. A run that fails (NaN, a crashed worker) leaves the others going; a run whose worker died
comes back as Outcome status "crashed" (no summary is written, so a rerun resumes it from its checkpoint). First
Ctrl-C / SIGTERM: every worker finishes its step and checkpoints, then exit 130; a second Ctrl-C kills them at once.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from moebench import io as R
from moebench.errors import UserError
from moebench.plan import RunSpec
from moebench.runs.concurrency import Span, auto_jobs, load_1m, record, span_now, usable_cores
from moebench.runs.progress import SuiteProgress
from moebench.runs.runner import DataCache, Outcome, StopFlag, run_one


@dataclass(frozen=True)
class Workers:
    """How a suite's runs are spread: `jobs` at once; worker i sees GPU gpus[i % len(gpus)] (none on CPU) and sets
    `threads` torch threads when the suite leaves train.threads unset (its share of the cores)."""
    jobs: int
    gpus: tuple[str, ...] = ()
    threads: int | None = None


def workers_for(spec: RunSpec, jobs: int | str) -> Workers:
    """The workers for `--jobs N` (or auto, see concurrency.auto_jobs) on the device the suite trains on."""
    import torch

    from moebench.models.backends import resolve_device

    device = resolve_device(spec.train.device)
    gpus: tuple[str, ...] = ()
    if device.type == "cuda" and device.index is None:  # an explicit cuda:N is the user's pinning: leave it
        seen = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = tuple(g.strip() for g in seen.split(",") if g.strip()) if seen else tuple(
            str(i) for i in range(torch.cuda.device_count()))
    if jobs == "auto":
        jobs = auto_jobs(spec.train.threads, len(gpus))
    threads = None if spec.train.threads or device.type == "cuda" else max(1, usable_cores() // jobs)
    return Workers(jobs, gpus, threads)


def _head(i: int, n: int, spec: RunSpec) -> str:
    return f"[{i}/{n}] {spec.label}"


def run_sequential(specs: list[RunSpec], results_root: Path, *, force: bool, quiet: bool, log,
                   data: DataCache | None = None) -> list[Outcome]:
    """`--jobs 1`: every run in this process, in order (what run_plan does, plus the concurrency record)."""
    stop, data, spans, outcomes = StopFlag(), data or DataCache(), [], []
    suite_bar = tqdm(total=len(specs), desc=f"suite {specs[0].suite}" if specs else "suite", unit="run", position=0,
                     dynamic_ncols=True, disable=quiet or not sys.stderr.isatty())
    try:
        with stop.installed(), suite_bar:
            for i, spec in enumerate(specs, 1):
                t0, l0 = time.time(), load_1m()
                o = run_one(spec, results_root, force=force, stop=stop, quiet=quiet, log=log, data=data,
                            after=len(specs) - i,
                            head=_head(i, len(specs), spec))
                outcomes.append(o)
                suite_bar.update(1)
                if o.status != "skipped":
                    spans.append(span_now(spec.ident, t0, l0))
    finally:
        if specs:
            record(results_root, specs[0].suite, spans, "sequential", 1)
    return outcomes


@dataclass
class _Slot:
    wid: int
    proc: mp.process.BaseProcess
    tasks: object  # multiprocessing Queue of (RunSpec, head) | None
    spec: RunSpec | None = None  # the run it is training
    exited: bool = False  # sent its last event (stopped / error)


@dataclass
class _State:
    pending: deque
    n: int
    root: Path
    started: dict = field(default_factory=dict)  # key -> (time, load)
    spans: list = field(default_factory=list)
    outcomes: dict = field(default_factory=dict)  # key -> Outcome
    crashed: list = field(default_factory=list)  # (head, reason)
    error: tuple | None = None  # (exception, traceback text, head)
    stopping: bool = False


@contextmanager
def _sigint_ignored():
    """Children inherit an ignored SIGINT through exec, so Python never installs its KeyboardInterrupt handler in
    them: a terminal Ctrl-C cannot hit a worker before its own handlers are set."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def run_pool(specs: list[RunSpec], results_root: Path, w: Workers, *, force: bool, quiet: bool, log) -> list[Outcome]:
    """Up to w.jobs runs at once, one worker process each; outcomes in `specs` order."""
    if not specs:
        return []
    from moebench.runs.worker import worker_main

    DataCache()(specs[0])  # a suite has one corpus: build its token cache here, once; workers only memory-map it
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    st = _State(deque(enumerate(specs, 1)), len(specs), Path(results_root))
    progress = SuiteProgress(specs[0].suite, results_root, len(specs), quiet, log)
    slots: dict[int, _Slot] = {}

    def spawn(wid: int) -> None:
        env = {"CUDA_VISIBLE_DEVICES": w.gpus[wid % len(w.gpus)]} if w.gpus else {}
        tasks = ctx.Queue()
        proc = ctx.Process(target=worker_main, name=f"moebench-worker-{wid}", daemon=True,
                           args=(wid, os.getpid(), env, w.threads, str(results_root), force, tasks, events))
        with _sigint_ignored():
            proc.start()
        slots[wid] = _Slot(wid, proc, tasks)

    def on_signal(signum, frame):
        if st.stopping and signum == signal.SIGINT:
            for s in slots.values():
                if s.proc.is_alive():
                    s.proc.kill()
            raise KeyboardInterrupt
        if not st.stopping:
            st.stopping = True
            print("\nstopping: every active run finishes its step and saves a checkpoint (Ctrl-C again to abort now)",
                  file=sys.stderr, flush=True)
            for s in slots.values():
                if s.proc.is_alive():
                    os.kill(s.proc.pid, signal.SIGTERM)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for wid in range(min(w.jobs, len(specs))):
            spawn(wid)
        while True:
            if not st.stopping and st.error is None:
                for s in slots.values():
                    if s.spec is None and not s.exited and st.pending and s.proc.is_alive():
                        i, spec = st.pending.popleft()
                        s.spec = spec
                        s.tasks.put((spec, _head(i, st.n, spec)))
            busy = [s for s in slots.values() if s.spec is not None]
            if not busy and (not st.pending or st.stopping or st.error is not None):
                break
            try:
                _handle(events.get(timeout=0.25), slots, st, progress)
            except queue.Empty:
                pass
            _reap(slots, st, events, progress, spawn)
            progress.poll()
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        _shutdown(slots)
        progress.close()
        record(results_root, specs[0].suite, st.spans, "local", w.jobs)
    for head, reason in st.crashed:
        log(f"{head}: {reason}; rerun the same command to resume it")
    if st.error is not None:
        err, tb, head = st.error
        if isinstance(err, (KeyboardInterrupt, OSError, UserError)):  # as a sequential run reports them
            raise err
        print(tb, file=sys.stderr, end="")
        raise RuntimeError(f"{head}: the worker training it failed: {type(err).__name__}: {err}") from err
    if st.stopping:
        raise KeyboardInterrupt
    return [st.outcomes[s.ident] for s in specs if s.ident in st.outcomes]


def _handle(ev: tuple, slots: dict[int, _Slot], st: _State, progress: SuiteProgress) -> None:
    kind, wid = ev[0], ev[1]
    slot = slots[wid]
    if kind == "log":
        progress.log(ev[2])
        return
    key = ev[2]
    spec = slot.spec
    if kind == "start":
        st.started[key] = (ev[3], ev[4])
        progress.start(key, spec.train.steps)
        return
    t0, l0 = st.started.pop(key, (time.time(), None))
    if kind == "end":
        status = ev[3]
        if status != "skipped":
            st.spans.append(Span(key, t0, ev[4], socket.gethostname(), l0, ev[5]))
        path = spec.run_dir(st.root) / R.SUMMARY
        summary = R.read_json(path) if path.exists() else {}
        st.outcomes[key] = Outcome(spec, status, summary)
    else:  # stopped (a checkpoint is saved) or error: the worker exits
        slot.exited = True
        if kind == "stopped":
            st.spans.append(Span(key, t0, ev[3], socket.gethostname(), l0, ev[4]))
        elif st.error is None:
            st.error = (ev[3], ev[4], spec.label)
    slot.spec = None
    progress.end(key, counted=kind == "end")


def _reap(slots: dict[int, _Slot], st: _State, events, progress: SuiteProgress, spawn) -> None:
    """A worker that died holding a run (killed, out of memory, a crash in native code): that run is reported
    failed here (its directory keeps its last checkpoint, so a rerun resumes it) and a new worker takes its place."""
    for s in list(slots.values()):
        if s.proc.is_alive() or s.spec is None:
            continue
        while True:  # its last events may still be in flight
            try:
                _handle(events.get(timeout=0.5), slots, st, progress)
            except queue.Empty:
                break
        if s.spec is None:
            continue
        spec, code = s.spec, s.proc.exitcode
        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        st.crashed.append((spec.label, f"its worker process died ({why})"))
        st.outcomes[spec.ident] = Outcome(spec, "crashed", {})
        st.started.pop(spec.ident, None)
        s.spec = None
        progress.end(spec.ident)
        if st.pending and not st.stopping and st.error is None:
            spawn(s.wid)
        else:
            s.exited = True


def _shutdown(slots: dict[int, _Slot]) -> None:
    """Called once no worker holds a run: every file a run writes is written before its worker reports back, so
    a worker still tearing its interpreter down (seconds with torch loaded on a busy machine) is killed."""
    for s in slots.values():
        if s.proc.is_alive():
            try:
                s.tasks.put(None)
            except (OSError, ValueError):
                pass
    deadline = time.time() + 1.0
    for s in slots.values():
        s.proc.join(max(0.01, deadline - time.time()))
        if s.proc.is_alive():
            s.proc.kill()
            s.proc.join(5)
