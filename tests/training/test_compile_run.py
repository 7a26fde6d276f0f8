"""train.compile through the real training loop, with inductor (the compiler a run uses): an MoE run compiles
and trains step for step like the eager run, nothing recompiles after the first step, and dynamo's recompile
limit raises instead of silently running the rest of the run eagerly. The router x backend matrix is
tests/models/test_compile.py (aot_eager: everything but inductor's code generation)."""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from moebench.training.trainer import compile_for_training
from tests.training.test_train_loop import trainer


def test_a_compiled_moe_run_trains_like_the_eager_run(tmp_path):
    (tmp_path / "eager").mkdir()
    (tmp_path / "compiled").mkdir()
    changes = {"train.steps": 3, "train.warmup_steps": 1}
    eager = trainer(tmp_path / "eager", "moe", **changes)
    comp = trainer(tmp_path / "compiled", "moe", **changes, **{"train.compile": True})
    counters.clear()
    rows = {}
    for name, tr in (("eager", eager), ("compiled", comp)):
        rows[name] = [tr.train_step()]  # step 0 compiles the forward and the backward
        with torch.compiler.set_stance("fail_on_recompile") if tr is comp else torch.compiler.set_stance("default"):
            rows[name] += [tr.train_step(), tr.train_step()]
    assert dict(counters["graph_break"]) == {} and counters["stats"]["unique_graphs"] == 1
    for a, b in zip(rows["eager"], rows["compiled"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["aux_loss"] == pytest.approx(b["aux_loss"],
                                                                                               rel=1e-3)
    for (name, p), q in zip(eager.model.named_parameters(), comp.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5, msg=name)


class Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.k = 0  # a Python int dynamo specialises on: every new value is a recompile

    def forward(self, x):
        return x * self.k


def test_the_recompile_limit_raises_instead_of_falling_back_to_eager(monkeypatch):
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)
    m = Scaled()
    fn = compile_for_training(m, backend="eager")
    x = torch.ones(2)
    for k in range(2):
        m.k = k
        fn(x)
    m.k = 2
    with pytest.raises(Exception, match="recompile_limit|cache_size_limit|[Rr]ecompil"):
        fn(x)
