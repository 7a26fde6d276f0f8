"""Checkpoints hold tensors and plain data only: they load with torch.load(weights_only=True) and resume."""
import torch

from moebench.config.suite import build_suite
from moebench.plan import plan_suite, run_specs
from moebench.training.trainer import Trainer, load_data
from tests.helpers import tiny


def test_checkpoint_loads_weights_only_and_resumes_the_same_state(tmp_path):
    spec = next(s for s in run_specs(plan_suite(build_suite(tiny()))) if s.variant == "moe")
    data = load_data(spec)
    t = Trainer(spec, tmp_path, data)
    for _ in range(3):
        t.train_step()
    t.save_checkpoint()
    state = torch.load(t.ckpt_path, weights_only=True)  # no pickled objects: nothing to execute
    assert state["step"] == 3 and state["opt"]["state"] and state["rng"].dtype == torch.uint8
    resumed = Trainer(spec, tmp_path, data)
    assert resumed.try_resume() and resumed.step == 3
    for k, v in t.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    assert torch.equal(torch.get_rng_state(), state["rng"])
    assert t.train_step()["loss"] == resumed.train_step()["loss"]
