"""The training loop's bookkeeping: one host sync per step, one collective per distributed step, the next batch
prefetched (and identical to the one the step would build), evaluation reading back once, the fp32 matmul
policy set from the suite and recorded."""
from pathlib import Path

import pytest
import torch
import yaml

from moebench.config.suite import load_suite
from moebench.distributed import parallel as par_mod
from moebench.distributed.parallel import Parallel
from moebench.plan import run_specs
from moebench.plan import plan_suite
from moebench.training import evaluate as ev_mod
from moebench.training.env import environment
from moebench.training.trainer import Trainer, batch_at, load_data
from tests.helpers import tiny
from tests.syncs import HostSyncs


def trainer(tmp_path: Path, variant: str = "moe", **changes) -> Trainer:
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(tiny(**changes)))
    spec = next(s for s in run_specs(plan_suite(load_suite(p))) if s.variant == variant)
    return Trainer(spec, tmp_path, load_data(spec))


def test_a_training_step_reads_back_once(tmp_path):
    # SGD: AdamW reads its step counters with .item(), CPU tensors that never wait on a GPU
    tr = trainer(tmp_path, **{"train.optimizer": "sgd"})
    tr.train_step()  # step 0 also measures activation memory
    with HostSyncs(to_cpu=False) as s:
        row = tr.train_step()
    assert s.counts == {"tolist": 1}  # losses and aux loss together, after the optimizer step
    assert row["step"] == 2 and row["loss"] > 0


def test_the_prefetched_batch_is_the_steps_own_batch(tmp_path):
    tr = trainer(tmp_path)
    tr.train_step()
    step, (x, y) = tr._next
    t, cfg = tr.spec.train, tr.spec.model
    bx, by = batch_at(tr.data.train.tokens, tr.spec.seed, 1, t.batch_size, cfg.seq_len)
    assert step == 1 and torch.equal(x, bx) and torch.equal(y, by)
    tr.step = 5  # e.g. resumed elsewhere: a stale prefetch is never used
    tr.train_step()
    assert tr._next[0] == 6


def test_a_non_finite_loss_fails_the_run_at_that_step(tmp_path):
    from moebench.errors import RunFailed

    tr = trainer(tmp_path)
    tr.train_step()
    with torch.no_grad():
        tr.model.embed.weight.fill_(float("nan"))
    with pytest.raises(RunFailed, match="not finite") as e:
        tr.train_step()
    assert e.value.step == 1


def test_distributed_step_metrics_are_one_collective(monkeypatch):
    """Every per-step number of every rank goes through one gather; sums, maxima and the stop flag are reduced
    from its rows (the old loop paid four all-reduces per step)."""
    calls = []

    def gather(values, group=None):
        calls.append(values)
        other = [2.0, 0.5, 300.0, 0.4, 0.1, 1.0]  # rank 1: loss, aux, tokens/s, step time, comm time, stop
        return [list(values), other]

    monkeypatch.setattr(par_mod, "gather_scalars", gather)
    monkeypatch.setattr(par_mod, "all_reduce_scalars", lambda *a, **k: pytest.fail("a second collective"))
    p = object.__new__(Parallel)
    p.world = 2
    g = p.step_metrics(dt=0.2, n_local=64, lm_loss=1.0, aux=0.1, stop=False)
    assert len(calls) == 1
    assert g == pytest.approx({"step_time": 0.4, "tokens": 128, "loss": 1.5, "aux_loss": 0.3,
                               "tokens_per_s": 320.0 + 300.0, "comm_time": 0.1, "stop": True})


def test_evaluation_reads_back_once(tmp_path, monkeypatch):
    tr = trainer(tmp_path)
    seen = []
    monkeypatch.setattr(ev_mod, "expert_stats", lambda counters, dead: seen.append(counters) or {})
    with HostSyncs(to_cpu=False) as s:
        res = ev_mod.evaluate(tr.model, tr.windows, 4, tr.device, 1.0)
    # one read (the summed loss; both modes see it); the counters reach summarize as device tensors
    assert s.counts == {"__float__": 1, "aten._local_scalar_dense": 1}
    assert res["experts"] == {} and len(seen) == 1 and len(seen[0]) == 2  # 2 MoE layers, summed over batches
    assert int(seen[0][0]["counts"].sum()) == tr.windows.shape[1] * tr.windows.shape[2] * 2  # every (token, k)


@pytest.mark.parametrize("tf32", [True, None])
def test_fp32_matmul_policy_is_set_from_the_suite_and_recorded(tmp_path, tf32):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = not tf32  # whatever a previous run in the process left
        tr = trainer(tmp_path, "dense", **{"train.tf32": tf32})
        assert torch.backends.cuda.matmul.allow_tf32 is bool(tf32) and torch.backends.cudnn.allow_tf32 is bool(tf32)
        assert environment(tr.device)["fp32_matmul"] == ("tf32" if tf32 else "ieee")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
