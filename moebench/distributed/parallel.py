"""How one run is spread over the ranks: the Trainer's side of moebench.distributed.

In one process every method is the identity (or the plain single-process call), so the Trainer's arithmetic
is unchanged. With W processes:

- data parallel: train.batch_size stays the GLOBAL batch; rank r trains on rows [r*B/W, (r+1)*B/W) of the
  same (seed, step) batch `batch_at` gives one process, and gradients are averaged (DDP, or FSDP2
  `fully_shard` per block + root when train.parallel is fsdp), so W ranks step like one process on B.
- expert parallel (train.expert_parallel N > 1): every MoE layer keeps E/N experts per rank
  (moebench.distributed.expert_parallel); DDP ignores the expert weights, whose gradients are summed over
  the ranks holding the same experts and divided by W; the gradient-norm clip sums the sharded part over
  the expert-parallel group so every rank clips by the same factor.
- metrics are global: losses averaged over ranks, tokens/s summed, step and communication time the slowest
  rank's, memory the largest rank's, all in one collective per step (`step_metrics`). Every rank computes
  the same rows; rank 0 writes the files.
- the model is initialised with the run's seed on every rank (identical to one process; EP then keeps a
  slice); after that, rank r > 0 reseeds its RNG (dropout, router noise) with its own stream.
"""
from __future__ import annotations

import contextlib

import os
import time

import torch
import torch.distributed as dist

from moebench.errors import UserError

from . import expert_parallel as ep_mod
from .groups import (all_reduce_scalars, backend_name, comm_timer, gather_scalars, is_distributed, rank,
                  rank_generator_seed, world_size)


class Parallel:
    def __init__(self, model: torch.nn.Module, train, seed: int, device: torch.device):
        """`train` is the run's TrainSpec (batch_size, parallel, expert_parallel)."""
        self.model, self.module = model, model
        self.world, self.rank = world_size() if is_distributed() else 1, rank() if is_distributed() else 0
        self.mode = train.parallel if self.world > 1 else "single"
        self.ep = int(train.expert_parallel)
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        self.expert_names: list[str] = []
        if self.ep > self.world:
            raise UserError(f"train.expert_parallel: {self.ep} needs at least {self.ep} processes; launch with "
                            f"`moebench run --nproc {self.ep}` or `torchrun --nproc_per_node={self.ep} -m moebench run`")
        if self.world == 1:
            return
        B = train.batch_size
        if B % self.world:
            raise UserError(f"train.batch_size: {B} (the global batch) is not divisible by the {self.world} processes")
        if self.world % self.ep:
            raise UserError(f"train.expert_parallel: {self.ep} does not divide the world size {self.world}")
        if device.type == "cuda" and "nccl" not in str(backend_name()):
            raise UserError(f"train.device: rank {self.rank} has no GPU of its own (LOCAL_RANK "
                            f"{os.environ.get('LOCAL_RANK')}, {torch.cuda.device_count()} visible); start at most "
                            "one process per GPU, or use device: cpu")
        if self.ep > 1 and self.mode == "fsdp":
            raise UserError("train.parallel: fsdp with expert_parallel > 1 is not supported; use parallel: ddp")
        self.expert_names = ep_mod.shard_model(model, self.ep)
        if self.mode == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in model.blocks:
                fully_shard(block)
            fully_shard(model)
        else:
            from torch.nn.parallel import DistributedDataParallel as DDP

            if self.expert_names:
                DDP._set_params_and_buffers_to_ignore_for_model(model, self.expert_names)
            ids = [device.index if device.index is not None else torch.cuda.current_device()] \
                if device.type == "cuda" else None
            self.module = DDP(model, device_ids=ids)
            self.module.register_comm_hook(None, _timed_allreduce_hook)
        if self.rank:  # rank 0 keeps the one-process stream
            torch.manual_seed(rank_generator_seed(seed))

    # ---------------------------------------------------------------------------------- layout
    def layout(self) -> dict | None:
        """What a checkpoint / summary needs to know about the layout (None in one process)."""
        if self.world == 1:
            return None
        return {"world_size": self.world, "data_parallel": self.world, "expert_parallel": self.ep,
                "expert_replicas": self.world // self.ep,
                "mode": self.mode, "backend": self.backend}

    def local_name(self, name: str) -> str:
        """A per-rank file name: rank 0 keeps `name`, rank r writes `stem.rank<r>.suffix`."""
        if self.rank == 0:
            return name
        stem, _, suffix = name.rpartition(".")
        return f"{stem}.rank{self.rank}.{suffix}"

    # ---------------------------------------------------------------------------------- step
    def local_batch(self, x: torch.Tensor, y: torch.Tensor):
        if self.world == 1:
            return x, y
        n = x.shape[0] // self.world
        return x[self.rank * n:(self.rank + 1) * n], y[self.rank * n:(self.rank + 1) * n]

    def step_begin(self) -> None:
        comm_timer.reset()

    def after_backward(self) -> None:
        if self.expert_names:
            ep_mod.reduce_expert_grads(self.model, self.expert_names, self.ep)

    def accumulating(self, last: bool):
        """The context of one micro-batch's backward: gradients are only synchronised over ranks on the last
        micro-batch of a step (gradient accumulation), the others accumulate locally."""
        if self.world == 1 or last:
            return contextlib.nullcontext()
        if self.mode == "fsdp":
            self.model.set_requires_gradient_sync(False)
            return _SyncAfter(self.model)
        return self.module.no_sync()

    def sum_over_ranks(self):
        """A sum of a device tensor over every rank (a collective, no host read), or None in one process: the
        expert loads of loss-free and global-batch balancing (models/balancing.py)."""
        if self.world == 1:
            return None

        def reduce(t: torch.Tensor) -> torch.Tensor:
            t = t.clone()
            with comm_timer.timed(t.device):
                dist.all_reduce(t)
            return t

        return reduce

    def clip_grad_norm_(self, max_norm: float):
        params = list(self.model.parameters())
        if not self.expert_names:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        named = dict(self.model.named_parameters())
        experts = {n for n in self.expert_names}
        sq = lambda ps: sum((p.grad.detach().float().pow(2).sum() for p in ps if p.grad is not None),  # noqa: E731
                            torch.zeros((), device=params[0].device))
        sq_e = sq([named[n] for n in experts])
        ep_group, _, _ = ep_mod.groups(self.ep)
        with comm_timer.timed(sq_e.device):
            dist.all_reduce(sq_e, group=ep_group)
        total = torch.sqrt(sq([p for n, p in named.items() if n not in experts]) + sq_e)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for p in params:
            if p.grad is not None:
                p.grad.detach().mul_(coef.to(p.grad.dtype))
        return total

    def step_metrics(self, dt: float, n_local: int, lm_loss: float, aux: float, stop: bool) -> dict:
        """Global numbers of one step from this rank's (already host-side) numbers, through ONE collective:
        losses averaged over ranks, tokens/s summed, step and communication time the slowest rank's, and
        `stop` true on every rank if it is on any (every rank must stop at the same step). A non-finite loss
        on any rank shows in the mean, so every rank fails the run together."""
        if self.world == 1:
            return {"step_time": dt, "tokens": n_local, "loss": lm_loss, "aux_loss": aux,
                    "tokens_per_s": n_local / dt, "stop": bool(stop)}
        rows = gather_scalars([lm_loss, aux, n_local / dt, dt, comm_timer.total(), 1.0 if stop else 0.0])
        col = lambda i: [r[i] for r in rows]  # noqa: E731
        return {"step_time": max(col(3)), "tokens": n_local * self.world, "loss": sum(col(0)) / self.world,
                "aux_loss": sum(col(1)) / self.world, "tokens_per_s": sum(col(2)), "comm_time": max(col(4)),
                "stop": max(col(5)) > 0}

    def agreed_step(self, step: int | None) -> bool:
        """Resume only if every rank has a usable checkpoint of the same step."""
        if self.world == 1:
            return step is not None
        s = -1.0 if step is None else float(step)
        lo, = all_reduce_scalars([s], "min")
        hi, = all_reduce_scalars([s], "max")
        return lo >= 0 and lo == hi

    # ---------------------------------------------------------------------------------- end of run
    def max_over_ranks(self, value: float) -> float:
        return value if self.world == 1 else all_reduce_scalars([float(value)], "max")[0]

    def local_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """What this rank holds of a parameter or state tensor (FSDP: its shard of a DTensor)."""
        return t.to_local() if self.mode == "fsdp" and hasattr(t, "to_local") else t

    def full_state_dict(self) -> dict:
        """The one-process state dict (every expert, unsharded). Collective: every rank calls it."""
        if self.mode == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return ep_mod.full_state_dict(self.model, self.ep if self.world > 1 else 1)

    def summary_fields(self, train_rows: list[dict], wall: float) -> dict:
        comm = sum(r.get("comm_time", 0.0) for r in train_rows)
        return {"world_size": self.world, "parallel": self.layout(), "comm_time_s": comm,
                "comm_fraction": comm / wall if wall > 0 else 0.0}


class _SyncAfter(contextlib.AbstractContextManager):
    """Turns FSDP's gradient sync back on when a non-final micro-batch's backward is done."""

    def __init__(self, model):
        self.model = model

    def __exit__(self, *exc):
        self.model.set_requires_gradient_sync(True)
        return False


def _timed_allreduce_hook(state, bucket):
    """DDP's default all-reduce (divide, then sum) with its launch -> completion interval recorded."""
    t0 = time.perf_counter()
    buf = bucket.buffer()
    buf.div_(dist.get_world_size())
    fut = dist.all_reduce(buf, async_op=True).get_future()

    def done(f):
        comm_timer.add(t0, time.perf_counter())
        return f.value()[0]

    return fut.then(done)


__all__ = ["Parallel"]
