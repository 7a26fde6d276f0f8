"""A `--jobs` worker process: takes runs from its queue and trains each with runner.run_one, reporting to the
parent through an event queue. Started with the spawn method (torch threads and fork do not mix).

Imports are deferred: CUDA_VISIBLE_DEVICES must be set before torch is imported. Signals: Ctrl-C on a terminal
reaches every process of the foreground group, so a worker ignores SIGINT and stops on SIGTERM only, which the
parent sends once; this way a worker never mistakes one Ctrl-C for the second, "abort now", one. A worker dies
with its parent (kill -9 of `moebench run` must not leave runs training into the results directory).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass

    def watch():  # elsewhere, and for the instant before prctl took effect
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _loads() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def worker_main(wid: int, parent: int, env: dict, threads: int | None, results_root: str, force: bool,
                tasks, events) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    os.environ.update(env)
    from moebench.runs.runner import DataCache, StopFlag, run_one

    stop = StopFlag()
    signal.signal(signal.SIGTERM, lambda *_: setattr(stop, "requested", True))
    if threads:
        import torch

        torch.set_num_threads(threads)  # train.threads unset: this worker's share of the cores
    data = DataCache()  # the token cache is built; each worker memory-maps it once
    while not stop.requested:
        task = tasks.get()
        if task is None:
            break
        spec, head = task
        key = spec.ident
        events.put(("start", wid, key, time.time(), _loads()))
        try:
            outcome = run_one(spec, results_root, force=force, stop=stop, quiet=True, data=data, head=head,
                              log=lambda msg: events.put(("log", wid, msg)))
        except KeyboardInterrupt:  # stop requested: the trainer finished its step and saved a checkpoint
            events.put(("stopped", wid, key, time.time(), _loads()))
            break
        except BaseException as err:  # noqa: BLE001 - the parent decides (user error, full disk, bug)
            events.put(("error", wid, key, _picklable(err), traceback.format_exc()))
            break
        events.put(("end", wid, key, outcome.status, time.time(), _loads()))
    sys.stdout.flush()


def _picklable(err: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - an exception that cannot cross processes: keep its text
        return RuntimeError(f"{type(err).__name__}: {err}")
