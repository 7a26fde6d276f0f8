"""pytest-benchmark set-up: `pytest benchmarks` (not part of `pytest`, whose testpaths is tests/).

Compare against a saved run on a stable runner:
    pytest benchmarks --benchmark-autosave --benchmark-compare --benchmark-compare-fail=median:10%
On shared CI machines compare the ratios in each benchmark's extra_info instead (or use `moebench check`).
"""
from __future__ import annotations

import pytest
import torch


def pytest_benchmark_update_machine_info(config, machine_info):
    # a saved benchmark is only comparable with one taken on the same accelerator and thread count
    from moebench.training.env import cpu_model

    machine_info["cpu_model"] = cpu_model()
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
