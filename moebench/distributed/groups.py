"""Rank / world helpers, process-group set-up and tear-down, and the communication timer.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; `init()` turns them into a process
group with a timeout, so a rank that dies or hangs makes its peers fail instead of waiting forever
(MOEBENCH_DIST_TIMEOUT, seconds, default 300). Where this rank has a GPU of its own (LOCAL_RANK < device count)
the group is "cpu:gloo,cuda:nccl" (CUDA tensors go through NCCL, CPU tensors through gloo, so train.device: cpu
works on a GPU node too) and the rank's GPU becomes the current device; elsewhere it is gloo.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from moebench.errors import UserError

DEFAULT_TIMEOUT_S = 300.0


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else _env_world()


def is_rank0() -> bool:
    return rank() == 0


def timeout() -> timedelta:
    return timedelta(seconds=float(os.environ.get("MOEBENCH_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))


def init() -> bool:
    """Start the default process group if a launcher asked for more than one process. Idempotent.
    Returns whether we run distributed."""
    if _env_world() <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
            torch.cuda.set_device(local_rank())
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend=backend, timeout=timeout())
    return is_distributed()


def teardown(clean: bool = True) -> None:
    """Destroy the process group; after a clean finish, first wait for every rank (a rank tearing down while
    a peer still uses its connections can abort the peer)."""
    if dist.is_available() and dist.is_initialized():
        try:
            if clean and dist.get_world_size() > 1:
                dist.barrier()
            groups.cache_clear()  # a ProcessGroup alive at interpreter exit can abort the process
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - tearing down a broken group must not mask the real error
            pass


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def backend_name() -> str | None:
    return dist.get_backend() if is_distributed() else None


def all_reduce_scalars(values: list[float], op: str = "sum", group=None) -> list[float]:
    """All-reduce a few Python numbers at once (sum | max | min); identity in one process."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)  # CPU: gloo, no device sync
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    with comm_timer.timed():
        dist.all_reduce(t, op=ops[op], group=group)
    return t.cpu().tolist()


def gather_scalars(values: list[float], group=None) -> list[list[float]]:
    """Every rank's `values` (one row per rank) through ONE collective: callers reduce the rows however they
    need (sums, maxima, any) instead of paying one all-reduce per operation. A CPU tensor, so it goes through
    gloo (the "cpu:gloo,cuda:nccl" group on GPUs) and never waits on a device."""
    if not is_distributed():
        return [list(values)]
    t = torch.tensor(values, dtype=torch.float64)
    rows = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(rows, t, group=group)
    return [r.tolist() for r in rows]


def rank_generator_seed(seed: int) -> int:
    """Rank 0 keeps the single-process RNG stream; other ranks get their own (dropout, router noise)."""
    r = rank()
    return seed if r == 0 else seed * 1_000_003 + r


class CommTimer:
    """Seconds with communication in flight: the union of [start, end] intervals recorded since reset().

    Blocking exchanges (expert-parallel all_to_all, metric all-reduces) on CPU record their wall time; DDP's
    bucketed gradient all-reduces record launch -> completion, which can overlap backward compute, so
    overlapping intervals are merged rather than summed. On CUDA an exchange records a pair of CUDA events on
    the current stream instead of synchronising the device around it (NCCL orders the exchange between
    them); `total()` reads them after the step's one host sync. Event and wall intervals live on different
    clocks, so each set is merged on its own and the two unions are added.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._iv: list[tuple[float, float]] = []
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def reset(self) -> None:
        with self._lock:
            self._iv, self._events = [], []

    def add(self, start: float, end: float) -> None:
        with self._lock:
            self._iv.append((start, end))

    @contextmanager
    def timed(self, device: torch.device | None = None):
        if device is not None and device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                with self._lock:
                    self._events.append((start, end))
            return
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(t0, time.perf_counter())

    def total(self) -> float:
        """Call after the step's work is complete (the trainer's one sync per step): reading a CUDA event's
        time waits for it."""
        with self._lock:
            iv, events = sorted(self._iv), list(self._events)
        tot = _union_length(iv)
        if events:
            ref = events[0][0]
            ev = sorted((ref.elapsed_time(s) / 1e3, ref.elapsed_time(e) / 1e3) for s, e in events)
            tot += _union_length(ev)
        return tot


def _union_length(iv: list[tuple[float, float]]) -> float:
    """Length of the union of sorted [start, end] intervals."""
    tot, cur_s, cur_e = 0.0, None, None
    for s, e in iv:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                tot += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        tot += cur_e - cur_s
    return tot


comm_timer = CommTimer()


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (identity in one process)."""
    if not is_distributed():
        return obj
    box = [obj if is_rank0() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@functools.lru_cache(maxsize=None)
def groups(ep_size: int):
    """(ep_group, expert_dp_group, ep_rank) for this rank. Every rank must call this (new_group is collective)."""
    W, r = dist.get_world_size(), dist.get_rank()
    if W % ep_size:
        raise UserError(f"train.expert_parallel: {ep_size} does not divide the world size {W}")
    if ep_size == W:
        ep_group = None  # the default group
    else:
        ep_group = None
        for g in range(W // ep_size):
            grp = dist.new_group(list(range(g * ep_size, (g + 1) * ep_size)))
            if r // ep_size == g:
                ep_group = grp
    edp_group = None
    if W > ep_size:
        for i in range(ep_size):
            grp = dist.new_group(list(range(i, W, ep_size)))
            if r % ep_size == i:
                edp_group = grp
    return ep_group, edp_group, r % ep_size


class DistributedRunFailed(Exception):
    """A rank of a distributed job failed (an exception, a lost peer, a timed-out collective). The run's
    summary records it; the job cannot go on without the rank, so the command exits 1 (torchrun then stops
    every rank)."""
