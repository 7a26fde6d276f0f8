"""Where a number was measured: versions, device, CPU model, git state. Recorded in every summary.json."""
from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import torch

from .lockfile import lock_state

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"


@lru_cache(maxsize=4)
def _peaks(device_type: str) -> tuple:
    from .peaks import measure_peaks

    return tuple(sorted(measure_peaks(device_type).items()))


def set_fp32_matmul(tf32: bool) -> None:
    """The run's fp32 matmul policy (train.tf32), set explicitly so a run never inherits it from a previous one
    in the same process or from torch's defaults (cuDNN's TF32 default is on, cuBLAS's off)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def fp32_matmul() -> str:
    """What fp32 matmuls on CUDA compute in: "tf32" or "ieee" (full fp32; CPU matmuls are always fp32)."""
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def environment(device: torch.device, dtype: str = "float32") -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 - triton is optional at run time on exotic platforms
        triton_version = None
    sha = _git("rev-parse", "HEAD")
    # reports/, results/ and evidence/ are outputs: writing them must not mark the code as dirty
    dirty = _git("status", "--porcelain", "--", ".", ":!reports", ":!results", ":!evidence")
    return {
        "git_sha": sha,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version,
        "device": device.type,
        "device_name": device_name(device),
        "cpu_model": cpu_model(),
        "hostname": socket.gethostname(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "param_bytes": 2 if dtype in ("bfloat16", "float16") else 4,
        "fp32_matmul": fp32_matmul(),  # train.tf32, applied by the trainer
        **lock_state(),  # the locked environment's hash, and whether every pinned version is the installed one
        **dict(_peaks(device.type)),  # device peak FLOP/s and bandwidth (spec sheet or measured probe)
    }
