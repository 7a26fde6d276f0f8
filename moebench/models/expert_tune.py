"""Pick block sizes by timing candidates on the current GPU; store the winner in moebench.kernels' configs.

Every candidate is timed on the whole layer forward+backward (what training pays for). The GEMM config
(BLOCK_M/N/K, warps, stages; shared by the four row-blocked kernels) is searched first with the default X^T Y
config, then the X^T Y config (weight-gradient kernels) with the GEMM winner fixed: two 1-D searches instead
of their product. Candidates that fail to compile (shared memory, registers) are skipped. Usage on a GPU machine:

    python -m moebench.models.expert_tune           # the bench shapes, every token bucket
"""
from __future__ import annotations

import itertools
import json

import torch

from moebench.kernels.config import CONFIG_DIR, clear_cache, device_name, gpu_default, override, shape_key
from moebench.kernels.timing import median_ms

from .expert_bench import GPU_SHAPES, _inputs


def gemm_candidates() -> list[dict]:
    out = []
    for bm, bn, bk, warps, stages in itertools.product((64, 128), (64, 128, 256), (32, 64), (4, 8), (3, 4)):
        if bm * bn >= 128 * 256 and warps == 4:
            continue  # too many accumulator registers per thread
        out.append({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "num_warps": warps, "num_stages": stages})
    return out


def xty_candidates() -> list[dict]:
    return [{"BLOCK_K": bk, "BLOCK_N": bn, "BLOCK_R": br, "num_warps": w, "num_stages": 3}
            for bk, bn, br, w in itertools.product((64, 128), (64, 128), (32, 64), (4, 8))]


def _time_layer(inputs, activation, device, cfg, warmup=2, reps=5) -> float:
    from moebench.kernels.moe_ops import triton_experts

    x, assign, w_up, w_gate, w_down = inputs
    params = [p for p in (x, assign.weight, w_up, w_gate, w_down) if p is not None]

    def step():
        y = triton_experts(x, assign.token_idx, assign.expert_idx, assign.weight, w_up, w_gate, w_down, activation)
        torch.autograd.grad(y, params, torch.ones_like(y))

    with override(cfg):
        return median_ms(step, device, warmup=warmup, reps=reps)


def tune_shape(shape: dict, T: int, dtype=torch.bfloat16, device="cuda", gemm_cands=None, xty_cands=None,
               verbose=True, warmup=2, reps=5) -> dict:
    """Best {"gemm": ..., "xty": ...} for one (shape, token count) on this GPU, with its fwd+bwd time."""
    device = torch.device(device)
    best = gpu_default(dtype)
    inputs = _inputs(shape, T, dtype, device)
    results = []
    for part, cands in (("gemm", gemm_cands or gemm_candidates()), ("xty", xty_cands or xty_candidates())):
        timed = []
        for cand in cands:
            cfg = {**best, part: cand}
            try:
                ms = _time_layer(inputs, shape["activation"], device, cfg, warmup, reps)
            except Exception as exc:  # out of shared memory / registers for this GPU: not a candidate
                if verbose:
                    print(f"  {part} {cand}: failed ({type(exc).__name__})")
                continue
            timed.append((ms, cand))
            if verbose:
                print(f"  {part} {cand}: {ms:.3f} ms")
        if timed:
            ms, cand = min(timed, key=lambda t: t[0])
            best = {**best, part: cand}
            results.append(ms)
    return {**best, "fwd_bwd_ms": results[-1] if results else None}


def write_config(entries: dict, device="cuda") -> str:
    """Merge {shape_key: config} into configs/<gpu>.json and return the file's path."""
    CONFIG_DIR.mkdir(exist_ok=True)
    path = CONFIG_DIR / f"{device_name(device)}.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    table.update(entries)
    path.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    clear_cache()
    return str(path)


def tune(shapes=None, dtype=torch.bfloat16, device="cuda", write=True, **kw) -> dict:
    """Tune every (shape, token bucket) and, with write=True, store the results for this GPU."""
    if not torch.cuda.is_available():
        raise RuntimeError("tuning times real kernels: it needs a CUDA GPU")
    entries = {}
    for shape in shapes or GPU_SHAPES:
        for T in shape["tokens"]:
            key = shape_key(shape["E"], shape["d"], shape["f"], T, dtype)
            print(f"tuning {shape['name']} {key}")
            entries[key] = tune_shape(shape, T, dtype, device, **kw)
    if write:
        print("wrote", write_config(entries, device))
    return entries


if __name__ == "__main__":
    tune()
