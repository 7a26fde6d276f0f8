"""The checks `run`, `plan` and the power pilot make before anything is trained: the plan's memory check of the
runs held at once. A module of its own so cli/power.py can share it without importing cli/commands.py (a cycle)."""
from __future__ import annotations

from moebench.config.suite import Suite


def memory_check(args, suite: Suite, runs_at_once: int = 1, why: str = ""):
    """The plan's memory check (plan/memory.py) of the runs this command trains (--only), unless
    --skip-memory-check."""
    if getattr(args, "skip_memory_check", False):
        return None
    from moebench.plan.memory import MemoryCheck

    only = getattr(args, "only", None)
    return MemoryCheck(suite, runs_at_once, why, tuple(only) if only else None)


def _cuda(device: str) -> bool:
    from moebench.models.backends import resolve_device

    return resolve_device(device).type == "cuda"


def runs_at_once(args, suite: Suite) -> tuple[int, str]:
    """How many runs one memory holds at once, and why: --jobs N (on CUDA, N spread over the visible GPUs),
    --jobs auto (one per GPU; on CPU concurrency.auto_jobs), or torchrun's local ranks on CPU (a replica each)."""
    import math
    import os

    from moebench.models.names import cpu_without_torch

    # a CPU suite settles without torch (plan imports none: models/names.py)
    cuda = False if cpu_without_torch(suite.train.device) else _cuda(suite.train.device)
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if ranks > 1:  # [distributed]
        return (1, "") if cuda else (ranks, f"{ranks} local ranks")
    jobs = getattr(args, "jobs", None)
    if jobs in (None, 1) or getattr(args, "launcher", "local") == "ray":
        return 1, ""
    if cuda:
        import torch

        return (1, "") if jobs == "auto" else (math.ceil(jobs / max(1, torch.cuda.device_count())),
                                               f"--jobs {jobs} over the GPUs")
    if jobs == "auto":
        from moebench.runs.concurrency import auto_jobs

        jobs = auto_jobs(suite.train.threads, 0)
        return jobs, f"--jobs auto = {jobs}"
    return jobs, f"--jobs {jobs}"
