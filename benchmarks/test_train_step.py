"""A full training step (forward, loss, backward, clip, AdamW) of the quickstart's dense and MoE models on
one quickstart batch; extra_info["ratio_vs_dense"] is MoE step time / dense step time in the same process."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bench_support import paired
from moebench.cli.commands import plan_suite
from moebench.plan import run_specs
from moebench.config.suite import load_suite

QUICKSTART = Path(__file__).resolve().parents[1] / "suites" / "quickstart.yaml"


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
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    x = torch.randint(0, cfg.vocab_size, (t["batch_size"], cfg.seq_len + 1), device=device)

    def step():
        out = model(x[:, :-1])
        loss = F.cross_entropy(out.logits.flatten(0, 1), x[:, 1:].flatten()) + out.aux_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, backend


@pytest.mark.parametrize("variant", ["dense", "moe4", "moe8"])
def test_train_step(benchmark, device, specs, variant):
    step, backend = make_step(specs[variant], device)
    dense_step, _ = make_step(specs["dense"], device)
    benchmark.group = "quickstart train step"
    paired(benchmark, step, dense_step, device, rounds=9, warmup=2, variant=variant, backend=backend,
           tokens=specs[variant].train["batch_size"] * specs[variant].model.seq_len)
