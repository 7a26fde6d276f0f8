"""The torchrun side of `moebench run`: worker ranks build the same suite as rank 0 from the same flags."""
import argparse
from pathlib import Path

import yaml

from moebench.cli import launch
from tests.helpers import tiny


def test_worker_ranks_honour_preset_and_set(tmp_path, monkeypatch):
    suite = tiny(presets={"first": {"train.steps": 6}, "small": {"train.steps": 4}})  # not the default preset
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    seen = {}

    def fake_run_plan(plan, results, **kw):
        seen["plan"] = plan
        return []

    monkeypatch.setattr("moebench.runs.runner.run_plan", fake_run_plan)
    args = argparse.Namespace(suite=path, overrides=["train.lr=0.001"], preset="small", results=Path(tmp_path),
                              force=False, only=None)
    assert launch.run_worker(args) == 0
    s = seen["plan"].suite
    assert s.name == "tiny-small" and s.train.steps == 4 and s.train.lr == 0.001
