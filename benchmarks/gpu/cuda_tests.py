"""pytest plugin for the one-call GPU check (benchmarks/gpu/driver.py): runs CPU-written tests on a CUDA device.

`python -m pytest -p cuda_tests ...` (benchmarks/gpu on PYTHONPATH) with MOEBENCH_TEST_DEVICE=cuda and
TRITON_INTERPRET=0 (tests/conftest.py only sets the interpreter on when the variable is unset, so "0" reaches
Triton and our kernels compile for the GPU):
- every factory call without a device makes its tensor on the test device (`torch.set_default_device`), so the
  modules, inputs and references of the kernel, dtype and sync tests all live on the GPU;
- `torch.Generator()` without a device makes a generator on the test device: the tests seed their inputs with
  CPU generators, which CUDA factories refuse (an explicit `device=` is kept);
- tests that check the CPU interpreter path itself are deselected (DESELECT, each with its reason; the summary
  counts them), never silently skipped;
- each test's outcome is appended as one JSON line to MOEBENCH_TEST_LOG as it finishes, so a stage that is
  killed at its time cap still reports every test that ran.
Without MOEBENCH_TEST_DEVICE the plugin changes nothing but the log (the dry run checks it loads).
"""
from __future__ import annotations

import json
import os

# node-id suffix -> why the test cannot mean anything on a GPU
DESELECT = {
    "tests/kernels/test_moe_ops.py::test_is_available_on_cpu_under_interpreter":
        "checks that the CPU needs the interpreter; on the GPU run the interpreter is off by design",
    "tests/kernels/test_bench_config.py::test_tune_round_trip_under_interpreter":
        "tunes on the CPU through the interpreter; the GPU run has it off (kernel-bench times the GPU instead)",
}


def _device_generator(device: str):
    """A stand-in for torch.Generator whose default device is `device`; isinstance checks still see the real class."""
    import torch

    base = torch._C.Generator

    class _Meta(type(base)):
        def __instancecheck__(cls, obj):
            return isinstance(obj, base)

        def __subclasscheck__(cls, sub):
            return issubclass(sub, base)

    class Generator(base, metaclass=_Meta):
        def __new__(cls, device=None):
            return base.__new__(base, device if device is not None else default)

    default = device
    return Generator


def pytest_configure(config):
    device = os.environ.get("MOEBENCH_TEST_DEVICE")
    if device:
        import torch

        torch.set_default_device(device)
        torch.Generator = _device_generator(device)
    config.addinivalue_line("markers", "gpu_check_deselected: deselected by benchmarks/gpu/cuda_tests.py")


def pytest_collection_modifyitems(config, items):
    # how many tests the stage had, so a stage stopped at its cap says how many never ran
    _log({"collected": len(items)}, any_process=True)
    if not os.environ.get("MOEBENCH_TEST_DEVICE"):
        return
    keep, dropped = [], []
    for item in items:
        reason = next((why for node, why in DESELECT.items() if item.nodeid.startswith(node)), None)
        (dropped if reason else keep).append(item)
        if reason:  # collection runs in each xdist worker: the driver keeps one line per node id
            _log({"nodeid": item.nodeid, "outcome": "deselected", "reason": reason}, any_process=True)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_runtest_logreport(report):
    # Under xdist the controller sees every worker's reports: only it writes (_log skips workers).
    if report.when == "call" or report.outcome != "passed":  # setup errors and skips too, once each
        entry = {"nodeid": report.nodeid, "outcome": report.outcome, "when": report.when,
                 "seconds": round(report.duration, 3)}
        if report.outcome != "passed":
            rep = report.longrepr  # a skip's is (path, line, why)
            text = rep[2] if isinstance(rep, tuple) else str(rep) if rep is not None else ""
            entry["reason"] = text.strip().splitlines()[-1][:300] if text.strip() else ""
        _log(entry)


def _log(entry: dict, any_process: bool = False) -> None:
    path = os.environ.get("MOEBENCH_TEST_LOG")
    if path and (any_process or not os.environ.get("PYTEST_XDIST_WORKER")):
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
