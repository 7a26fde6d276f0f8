"""Device peaks: spec table lookup, the measured CPU probe, and S-MFU / S-MBU from recorded peaks."""
import pytest
from tests.synth import ENV, write_run, write_suite

from moebench.training.peaks import lookup_gpu, measure_peaks
from moebench.report.tables import utilisation_table
from moebench.analysis.resultset import load_results


def test_spec_lookup_prefers_specific_names():
    assert lookup_gpu("NVIDIA H100 80GB HBM3")["peak_flops"] == 989e12
    assert lookup_gpu("NVIDIA H100 80GB HBM3")["peak_bw"] == 3.35e12
    assert lookup_gpu("NVIDIA H100 PCIe")["peak_bw"] == 2.0e12
    assert lookup_gpu("NVIDIA H200")["peak_bw"] == 4.8e12
    assert lookup_gpu("NVIDIA A100-SXM4-40GB")["peak_flops"] == 312e12
    assert lookup_gpu("NVIDIA L4")["peak_flops"] == 121e12
    assert lookup_gpu("Some Future GPU") is None


def test_cpu_probe_is_measured_and_plausible():
    p = measure_peaks("cpu")
    assert p["peak_source"].startswith("measured")
    assert 1e8 < p["peak_flops"] < 1e14 and 1e8 < p["peak_bw"] < 1e13


def test_utilisation_from_recorded_peaks(tmp_path):
    d = write_suite(tmp_path)
    env = {**ENV, "peak_flops": 1.2e9, "peak_bw": 4e4, "peak_source": "measured (cpu)", "param_bytes": 2}
    for s in (0, 1):
        write_run(d, "dense", s, [4.0], env=env)  # 6000 FLOPs/token x 2000 tokens/s = 1.2e7 FLOP/s
        write_run(d, "moe", s, [4.0])  # no peak recorded
    headers, rows = utilisation_table(load_results(d))
    dense, moe = (dict(zip(headers, r)) for r in rows)
    assert dense["S-MFU"] == "1.00%"  # 1.2e7 / 1.2e9
    assert dense["S-MBU"] == "10.00%"  # 1000 params x 2 B / 0.5 s / 4e4 B/s
    assert moe["S-MFU"] == "n/a (no peak recorded)" and moe["S-MBU"] == "n/a (no peak recorded)"


def test_cuda_uses_spec_or_probe():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    p = measure_peaks("cuda")
    known = lookup_gpu(torch.cuda.get_device_name())
    assert p == known if known else p["peak_source"].startswith("measured (cuda")
