"""Benchmark table on CPU, config lookup (exact, nearest token bucket, default) and the tuner's round trip."""
from __future__ import annotations

import json

import torch

from moebench.kernels import config
from moebench.models import expert_tune as tune
from moebench.models.expert_bench import GPU_SHAPES, format_table, run_kernel_bench

TINY = {"name": "tiny", "E": 4, "k": 2, "d": 32, "f": 48, "activation": "swiglu", "tokens": [64]}


def test_cpu_bench_rows_and_table(capsys):
    rows = run_kernel_bench(shapes=[TINY], device="cpu")
    assert "skipped: no GPU" in capsys.readouterr().err
    by_path = {r["path"]: r for r in rows}
    assert by_path["triton"]["note"] == "skipped: no GPU"
    assert "fwd_ms" not in by_path["triton"]
    for path in ("dense_gemm", "torch_sort_loop"):
        r = by_path[path]
        assert r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0
        flops = 6 * 64 * 2 * 32 * 48
        assert abs(r["fwd_tflops"] - flops / r["fwd_ms"] / 1e9) < 1e-12
    assert by_path["dense_gemm"]["fwd_frac_dense"] == 1.0
    g = by_path["torch_grouped_mm"]
    assert g["fwd_vs_grouped_mm"] == 1.0
    loop = by_path["torch_sort_loop"]
    assert loop["fwd_bwd_vs_grouped_mm"] == g["fwd_bwd_ms"] / loop["fwd_bwd_ms"]
    table = format_table(rows)
    assert table.splitlines()[0].startswith("| shape |") and "skipped: no GPU" in table
    assert len([ln for ln in table.splitlines() if ln.startswith("| tiny")]) == len(rows)


def test_config_lookup(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)
    monkeypatch.setattr(config, "device_name", lambda device: "Fake_GPU")
    config.clear_cache()
    exact = {"gemm": {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32}, "xty": {"BLOCK_K": 64, "BLOCK_N": 64,
                                                                            "BLOCK_R": 32}}
    far = {"gemm": {"BLOCK_M": 64, "BLOCK_N": 256, "BLOCK_K": 64}, "xty": exact["xty"]}
    (tmp_path / "Fake_GPU.json").write_text(json.dumps({
        config.shape_key(8, 64, 128, 4096, torch.bfloat16): exact,
        config.shape_key(8, 64, 128, 65536, torch.bfloat16): far}))
    try:
        assert config.get_config("cpu", 8, 64, 128, 3000, torch.bfloat16) == exact  # 3000 -> bucket 4096
        assert config.get_config("cpu", 8, 64, 128, 8192, torch.bfloat16) == exact  # nearest bucket
        assert config.get_config("cpu", 8, 64, 128, 40000, torch.bfloat16) == far
        assert config.get_config("cpu", 8, 64, 128, 4096, torch.float16) == config.gpu_default(torch.float16)
        with config.override(far):
            assert config.get_config("cpu", 1, 2, 3, 4, torch.float32) is far
    finally:
        config.clear_cache()


def test_tune_round_trip_under_interpreter(tmp_path, monkeypatch):
    # Timings under the interpreter mean nothing, but the search, the JSON and the reload are the same code.
    monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)
    monkeypatch.setattr(tune, "CONFIG_DIR", tmp_path)
    monkeypatch.setattr(tune, "device_name", lambda device: "Fake_GPU")
    monkeypatch.setattr(config, "device_name", lambda device: "Fake_GPU")
    shape = {**TINY, "tokens": [32]}
    gemm = [{"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 32}]
    xty = [{"BLOCK_K": 64, "BLOCK_N": 64, "BLOCK_R": 64}]
    best = tune.tune_shape(shape, 32, torch.float32, "cpu", gemm_cands=gemm, xty_cands=xty,
                           verbose=False, warmup=0, reps=1)
    assert best["gemm"] in gemm and best["xty"] == xty[0] and best["fwd_bwd_ms"] > 0
    key = config.shape_key(4, 32, 48, 32, torch.float32)
    tune.write_config({key: best}, "cpu")
    try:
        assert config.get_config("cpu", 4, 32, 48, 32, torch.float32) == json.loads(json.dumps(best))
    finally:
        config.clear_cache()


def test_config_lookup_is_cached_per_device_and_bucket(tmp_path, monkeypatch):
    calls = []

    def fake_name(device):
        calls.append(device)
        return "Fake_GPU"

    monkeypatch.setattr(config, "CONFIG_DIR", tmp_path)
    monkeypatch.setattr(config, "device_name", fake_name)
    config.clear_cache()
    try:
        first = config.get_config("cpu", 8, 64, 128, 3000, torch.bfloat16)
        assert first == config.gpu_default(torch.bfloat16) and len(calls) == 1
        # 3000 and 4000 share the 4096 bucket: no second lookup.
        assert config.get_config("cpu", 8, 64, 128, 4000, torch.bfloat16) is first and len(calls) == 1
        config.get_config("cpu", 8, 64, 128, 5000, torch.bfloat16)  # bucket 8192: a new lookup
        assert len(calls) == 2
        config.clear_cache()
        config.get_config("cpu", 8, 64, 128, 3000, torch.bfloat16)
        assert len(calls) == 3
    finally:
        config.clear_cache()


def test_gpu_bench_covers_the_issue_shapes():
    want = {(8, 2, 4096, 14336), (64, 8, 2048, 1024), (128, 8, 2048, 768)}
    got = {(s["E"], s["k"], s["d"], s["f"]) for s in GPU_SHAPES if s["activation"] == "swiglu"}
    assert want <= got
