"""A full training step (forward, loss, backward, clip, AdamW) of the quickstart's dense and MoE models on
one quickstart batch; extra_info["ratio_vs_dense"] is MoE step time / dense step time in the same process.

test_harness_overhead: what moebench's training loop adds to a bare step of the same model, measured
interleaved in one process on the quickstart's moe8 (2 layers, d_model 64, 8 experts top-1, batch 16 x 128):
(trainer step - bare step) / trainer step, target <= 3%. The trainer step is everything the loop does per
step (batch building and prefetch, learning rate, step clock, loss read-back and finiteness check, the
metrics row and its line in metrics.jsonl); the bare step is forward, loss, backward, the suite's gradient
clip (part of the recipe, not of the harness) and the optimizer step of the SAME model and optimizer on a
real batch already in memory, so nothing but the harness differs (model, routing and data included).
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench_support import ROUNDS, adamw_step, paired
from moebench.config.suite import load_suite
from moebench.plan import run_specs
from moebench.plan import plan_suite

QUICKSTART = Path(__file__).resolve().parents[1] / "suites" / "quickstart.yaml"
HARNESS_TARGET = 0.03


@pytest.fixture(scope="module")
def specs():
    return {s.variant: s for s in run_specs(plan_suite(load_suite(QUICKSTART, []))) if s.seed == 0}


def make_step(spec, device):
    from moebench.models.backends import resolve_backend
    from moebench.models.transformer import Transformer

    torch.manual_seed(0)
    cfg, t = spec.model, spec.train
    backend = resolve_backend("auto", device) if cfg.moe else "torch"
    model = Transformer(cfg, backend).to(device)
    x = torch.randint(0, cfg.vocab_size, (t.batch_size, cfg.seq_len + 1), device=device)
    step = adamw_step(model, model, t, x)
    return step, backend


@pytest.mark.parametrize("variant", ["dense", "moe4", "moe8"])
def test_train_step(benchmark, device, specs, variant):
    step, backend = make_step(specs[variant], device)
    dense_step, _ = make_step(specs["dense"], device)
    benchmark.group = "quickstart train step"
    paired(benchmark, step, dense_step, device, rounds=9, warmup=2, variant=variant, backend=backend,
           tokens=specs[variant].train.batch_size * specs[variant].model.seq_len)


def test_harness_overhead(benchmark, specs, tmp_path):
    """Paired rounds: one bare step, then one trainer step, alternating on the same model."""
    from moebench.training.trainer import Trainer, batch_at, load_data

    spec = specs["moe8"]
    tr = Trainer(spec, tmp_path, load_data(spec))  # sets the suite's thread count
    x, y = (t.to(tr.device) for t in batch_at(tr.data.train.tokens, spec.seed, 0, spec.train.batch_size,
                                              spec.model.seq_len))
    log = open(tmp_path / "metrics.jsonl", "a", encoding="utf-8")

    def bare():
        out = tr.model(x)
        loss = F.cross_entropy(out.logits.flatten(0, 1), y.flatten()) + out.aux_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tr.model.parameters(), spec.train.grad_clip)
        tr.opt.step()
        tr.opt.zero_grad(set_to_none=True)

    def loop_step():
        row = tr.train_step()
        log.write(json.dumps(row, sort_keys=True) + "\n")
        log.flush()

    for _ in range(3):  # warm-up, and step 0's activation-memory measurement
        loop_step()
        bare()
    pairs = []  # (trainer step, bare step) per round; the order alternates so neither always goes first
    for i in range(max(ROUNDS, 21)):
        took = {}
        for fn in ((bare, loop_step) if i % 2 else (loop_step, bare)):
            t0 = time.perf_counter()
            fn()
            took[fn] = time.perf_counter() - t0
        pairs.append((took[loop_step], took[bare]))
    benchmark.group = "harness overhead (quickstart moe8)"
    benchmark.pedantic(loop_step, rounds=5, warmup_rounds=0)  # the trainer step's own record
    log.close()
    overhead = statistics.median((t - b) / t for t, b in pairs)
    benchmark.extra_info.update(overhead=round(overhead, 4), target=HARNESS_TARGET, rounds=len(pairs),
                                trainer_step_median_s=statistics.median(t for t, _ in pairs),
                                bare_step_median_s=statistics.median(b for _, b in pairs))
