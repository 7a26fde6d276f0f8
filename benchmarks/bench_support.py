"""Paired timing: each round times the reference (dense) right before the target, so a neighbour's load
burst that spans the pair hits both. extra_info gets the median of the per-round ratios and the ratio of the
fastest rounds (interference only ever slows a call, so best-of-N is the steadier figure on a shared box)."""
from __future__ import annotations

import os
import statistics
import time

import torch
import torch.nn.functional as F

ROUNDS = int(os.environ.get("MOEBENCH_BENCH_ROUNDS", "11"))


def synced(fn, device):
    if device.type != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize(device)

    return run


def adamw_step(model: torch.nn.Module, forward, train, x: torch.Tensor):
    """A bare training step as the suite's recipe takes it (forward, next-token cross-entropy plus the aux loss,
    backward, the suite's gradient clip, AdamW with its settings) on fixed tokens `x`; `forward` may be a compiled
    `model`. No device sync: wrap it in `synced` to time it."""
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=tuple(train.betas), weight_decay=train.weight_decay)

    def step():
        out = forward(x[:, :-1])
        loss = F.cross_entropy(out.logits.flatten(0, 1), x[:, 1:].flatten()) + out.aux_loss
        loss.backward()
        if train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def paired(benchmark, target, reference, device, rounds: int = ROUNDS, warmup: int = 1, **info):
    """Benchmark `target`, timing `reference` in each round's setup; returns the median ratio target/reference."""
    target, reference = synced(target, device), synced(reference, device)
    ref_times: list[float] = []

    def setup():
        t0 = time.perf_counter()
        reference()
        ref_times.append(time.perf_counter() - t0)

    benchmark.extra_info.update(info)
    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    times = list(getattr(stats, "data", []) or [])
    refs = ref_times[-len(times):] if times else []
    if not times:  # --benchmark-disable: ran once, nothing to report
        return None
    ratio = statistics.median(t / r for t, r in zip(times, refs))
    benchmark.extra_info.update(ratio_vs_dense=round(ratio, 4), ratio_vs_dense_min=round(min(times) / min(refs), 4),
                                median_s=statistics.median(times), dense_median_s=statistics.median(refs))
    return ratio


def fwd_bwd(moe, dense, x, ids):
    """(MoE layer step, dense FFN step): forward + backward of each on the same input, gradients cleared first
    as a training step's zero_grad(set_to_none=True) leaves them (accumulating into the MoE's E-times larger
    weight gradients round after round would charge it for work training never does)."""
    def run_moe():
        moe.zero_grad(set_to_none=True)
        y, aux, _ = moe(x, ids)
        (y.sum() + aux).backward()

    def run_dense():
        dense.zero_grad(set_to_none=True)
        dense(x).sum().backward()

    return run_moe, run_dense
