"""Gradient accumulation (train.grad_accum_steps) and the loss-free balancing bias in the real training loop:
one optimizer step over A micro-batches is the step over the whole batch, counts its tokens and FLOPs once,
reads back once; the bias moves after each step, outside the optimizer, and travels in checkpoints."""
import torch

from moebench.training.trainer import Trainer
from tests.syncs import HostSyncs
from tests.training.test_train_loop import trainer

SGD = {"train.optimizer": "sgd", "train.grad_clip": 0.0}


def one_step(tmp_path, name: str, **changes) -> tuple[Trainer, dict]:
    d = tmp_path / name
    d.mkdir()
    tr = trainer(d, "dense", **SGD, **changes)
    return tr, tr.train_step()


def test_accumulated_step_equals_the_whole_batch_step(tmp_path):
    whole, a = one_step(tmp_path, "a")
    acc, b = one_step(tmp_path, "b", **{"train.grad_accum_steps": 2})
    assert a["tokens"] == b["tokens"] == 4 * 32 and a["flops"] == b["flops"]  # the whole step counted once
    assert abs(a["loss"] - b["loss"]) < 1e-5
    for p, q in zip(whole.model.parameters(), acc.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert acc.spec.config_hash != whole.spec.config_hash


def test_bias_and_global_balancing_keep_one_read_back(tmp_path):
    tr = trainer(tmp_path, "moe", **SGD, **{"train.grad_accum_steps": 2, "variants.moe.bias_update_rate": 1e-2,
                                            "variants.moe.lb_scope": "global"})
    tr.train_step()
    with HostSyncs(to_cpu=False) as s:
        tr.train_step()
    assert s.counts == {"tolist": 1}


def test_bias_moves_outside_the_optimizer_and_is_checkpointed(tmp_path):
    tr = trainer(tmp_path, "moe", **{"variants.moe.bias_update_rate": 1e-2})
    biases = [n for n, _ in tr.model.named_buffers() if n.endswith("expert_bias")]
    assert len(biases) == 2  # one per MoE layer
    opt_params = {id(p) for g in tr.opt.param_groups for p in g["params"]}
    assert not any(id(b) in opt_params for _, b in tr.model.named_buffers())
    tr.train_step()
    tr.train_step()
    bias = dict(tr.model.named_buffers())[biases[0]].clone()
    assert bias.abs().max() > 0 and bias.abs().max() <= 0.02 + 1e-7  # at most u per step, two steps
    torch.testing.assert_close(bias, (bias / 1e-2).round() * 1e-2)  # whole multiples of u
    tr.save_checkpoint()
    again = trainer(tmp_path, "moe", **{"variants.moe.bias_update_rate": 1e-2})
    assert again.try_resume() and torch.equal(dict(again.model.named_buffers())[biases[0]], bias)
