"""Block-size configs: tuned JSON per GPU (written by tools/tune.py), else a default that fits the device.

configs/<gpu>.json maps "E=..,d=..,f=..,T=..,dtype=.." (T = token count rounded up to a power of two) to
{"gemm": {BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages}, "xty": {BLOCK_K, BLOCK_N, BLOCK_R, ...}}.
GROUP_M (launch-order swizzle, grouped_gemm.swizzle_tile), ROWS_PER_SPLIT and SPLIT_BELOW_TILES (dW row
splits, grouped_xty) may be missing from a table entry: they default to 8, 512 and 1024. Optional "up_act" /
"bwd_act" sections override the "gemm" keys (not BLOCK_M) for the forward / backward activation kernels
(activation.kernel_cfg).
A shape without an entry takes the entry with the same E, d, f, dtype and the nearest token bucket, then the
default. Under the interpreter the cost is per program, not per FLOP, so the default there is big tiles.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
from pathlib import Path

import torch

CONFIG_DIR = Path(__file__).parent / "configs"

INTERPRETER_DEFAULT = {"gemm": {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8},
                       "xty": {"BLOCK_K": 64, "BLOCK_N": 128, "BLOCK_R": 128, "ROWS_PER_SPLIT": 256}}


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def device_name(device) -> str:
    device = torch.device(device)
    if device.type == "cuda" and not interpreting():
        return re.sub(r"[^A-Za-z0-9]+", "_", torch.cuda.get_device_name(device)).strip("_")
    return "interpreter"


def token_bucket(T: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(T, 1))))


def shape_key(E: int, d: int, f: int, T: int, dtype: torch.dtype) -> str:
    return f"E={E},d={d},f={f},T={token_bucket(T)},dtype={str(dtype).replace('torch.', '')}"


def gpu_default(dtype: torch.dtype) -> dict:
    # fp32 tiles are twice as big: two pipeline stages keep the SwiGLU kernel (x, W_up, W_gate tiles) under
    # the H100's 227 KB of shared memory.
    stages = 3 if dtype in (torch.float16, torch.bfloat16) else 2
    return {"gemm": {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 4,
                     "num_stages": stages},
            # 8 warps: with 4, the dual (dW_up + dW_gate) variant spills on sm_80 (compile_check)
            "xty": {"BLOCK_K": 64, "BLOCK_N": 128, "BLOCK_R": 64, "ROWS_PER_SPLIT": 512, "SPLIT_BELOW_TILES": 1024,
                    "num_warps": 8, "num_stages": stages},
            # The activation kernels' heavier epilogues spill at 64x128 with 4 warps (activation.kernel_cfg).
            "up_act": {"num_warps": 8},
            "bwd_act": {"BLOCK_N": 64, "num_warps": 8}}


@functools.lru_cache(maxsize=None)
def _load(name: str) -> dict:
    path = CONFIG_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


_override: dict | None = None


@contextlib.contextmanager
def override(cfg: dict):
    """Run the ops with `cfg` whatever the tables say (tune.py times candidates this way)."""
    global _override
    prev, _override = _override, cfg
    try:
        yield
    finally:
        _override = prev


def get_config(device, E: int, d: int, f: int, T: int, dtype: torch.dtype) -> dict:
    """Block sizes for this layer shape on `device`. Called on every forward and backward, so the lookup
    (device-name regex, JSON table, nearest-bucket search) runs once per (device, shape, token bucket) and is
    cached; `clear_cache()` drops it (after a new table was written). The returned dict is shared: don't mutate.
    """
    if _override is not None:
        return _override
    # interpreting() is part of the key: tests switch TRITON_INTERPRET on and off within one process.
    return _resolve(torch.device(device), interpreting(), E, d, f, token_bucket(T), dtype)


@functools.lru_cache(maxsize=256)
def _resolve(device: torch.device, _interp: bool, E: int, d: int, f: int, bucket: int, dtype: torch.dtype) -> dict:
    name = device_name(device)
    if name == "interpreter":
        return INTERPRETER_DEFAULT
    table = _load(name)
    key = shape_key(E, d, f, bucket, dtype)
    if key in table:
        return table[key]
    prefix, suffix = key.split(",T=")[0] + ",T=", "," + key.split(",")[-1]
    same_shape = [(k, v) for k, v in table.items() if k.startswith(prefix) and k.endswith(suffix)]
    if same_shape:
        want = math.log2(bucket)

        def dist(item):
            return abs(math.log2(int(item[0].split(",T=")[1].split(",")[0])) - want)

        return min(same_shape, key=dist)[1]
    return gpu_default(dtype)


def clear_cache() -> None:
    _load.cache_clear()
    _resolve.cache_clear()
