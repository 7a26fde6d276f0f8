"""Median wall time of a callable, synchronising the GPU so queued kernels are counted."""
from __future__ import annotations

import statistics
import time

import torch


def median_ms(fn, device, warmup: int = 2, reps: int = 5) -> float:
    device = torch.device(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
