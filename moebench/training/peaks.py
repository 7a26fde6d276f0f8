"""Device peaks for S-MFU / S-MBU (MoE-CAP, Jiang et al. 2024): a spec table for common GPUs, else a short probe.

The trainer calls measure_peaks(device) once per run and stores the result in summary.json env
(`peak_flops`, `peak_bw`, `peak_source`); the report only reads what was stored, so it never touches a device.
Spec numbers are dense (no 2:4 sparsity) bf16 tensor-core FLOP/s and HBM bandwidth from the vendors' data sheets.
"""
from __future__ import annotations

import time

# (substring of torch.cuda.get_device_name, lower-cased) -> (bf16 dense FLOP/s, bytes/s, label); first match wins,
# so the more specific names come first.
GPU_PEAKS: tuple[tuple[str, float, float, str], ...] = (
    ("h200", 989e12, 4.8e12, "H200 SXM bf16 dense spec"),
    ("h100 pcie", 756e12, 2.0e12, "H100 PCIe bf16 dense spec"),
    ("h100", 989e12, 3.35e12, "H100 SXM bf16 dense spec"),
    ("a100-sxm4-80gb", 312e12, 2.039e12, "A100 SXM 80GB bf16 dense spec"),
    ("a100", 312e12, 2.0e12, "A100 bf16 dense spec"),
    ("l40s", 362e12, 0.864e12, "L40S bf16 dense spec"),
    ("l4", 121e12, 0.3e12, "L4 bf16 dense spec"),
    ("a10g", 70e12, 0.6e12, "A10G bf16 dense spec"),
    ("rtx 4090", 165e12, 1.008e12, "RTX 4090 bf16 dense spec"),
    ("v100", 125e12, 0.9e12, "V100 fp16 tensor spec"),
    ("t4", 65e12, 0.32e12, "T4 fp16 tensor spec"),
)


def lookup_gpu(name: str) -> dict | None:
    n = name.lower()
    for key, flops, bw, label in GPU_PEAKS:
        if key in n:
            return {"peak_flops": flops, "peak_bw": bw, "peak_source": label}
    return None


def _probe(device, n: int = 1024, copy_mb: int = 64, reps: int = 3) -> dict:
    """Best of a few reps of an n x n matmul and a copy_mb MB copy: a floor on the peak, labelled as measured."""
    import torch

    dev = torch.device(device)
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    src = torch.empty(copy_mb * 2**20 // 4, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    mm, cp = [], []
    for _ in range(reps + 1):  # the first rep warms up allocators and kernels; min() discards it in practice
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        mm.append(time.perf_counter() - t)
        t = time.perf_counter()
        dst.copy_(src)
        sync()
        cp.append(time.perf_counter() - t)
    return {"peak_flops": 2 * n**3 / min(mm), "peak_bw": 2 * src.numel() * 4 / min(cp),  # read + write
            "peak_source": f"measured ({dev.type}, {str(dtype).replace('torch.', '')} {n}^3 matmul, "
                           f"{copy_mb} MB copy)"}


def measure_peaks(device="cpu") -> dict:
    """{"peak_flops": FLOP/s, "peak_bw": bytes/s, "peak_source": str}: spec for known GPUs, else a ~0.1 s probe."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        spec = lookup_gpu(torch.cuda.get_device_name(dev))
        if spec:
            return spec
    # a GPU needs a far bigger problem than a CPU core to get near its peak; both stay well under a second
    return _probe(dev) if dev.type == "cpu" else _probe(dev, n=8192, copy_mb=1024)
