"""Kernel benchmark: expert-layer time and TFLOP/s for each backend, against a dense GEMM of the same FLOPs.

Active FLOPs only (what the tokens actually use): forward of a gated MLP is 6*T*k*d*f (three matmuls),
forward+backward 18*T*k*d*f; non-gated 4 and 12. The dense reference is one GEMM [T*k, d] @ [d, 3f] (2f if
not gated) timed in the same run, so `frac_dense` = dense time / path time says how much of the device's
achievable GEMM throughput the MoE path keeps, independent of clock and driver.
Model-level (it builds Assignments and compares against the torch backends), so it lives beside the backends,
not in kernels/ (which imports only torch and triton).
"""
from __future__ import annotations

import gc
import sys

import torch

from moebench.kernels.timing import median_ms

GPU_SHAPES = [
    # Mixtral-8x7B-like coarse experts
    {"name": "coarse", "E": 8, "k": 2, "d": 4096, "f": 14336, "activation": "swiglu",
     "tokens": [4096, 8192, 16384, 32768, 65536]},
    # fine-grained (DeepSeekMoE-like)
    {"name": "fine", "E": 64, "k": 8, "d": 2048, "f": 1024, "activation": "swiglu",
     "tokens": [4096, 8192, 16384, 32768, 65536]},
    # Qwen3-30B-A3B-like: the shape the research notes quote torch._grouped_mm (~242 TFLOP/s forward, H100) at
    {"name": "fine-128", "E": 128, "k": 8, "d": 2048, "f": 768, "activation": "swiglu",
     "tokens": [4096, 8192, 16384, 32768]},
]
# Same expert counts and top-k, sized so a 2-core CPU finishes in seconds.
CPU_SHAPES = [
    {"name": "coarse-small", "E": 8, "k": 2, "d": 256, "f": 896, "activation": "swiglu", "tokens": [512, 1024]},
    {"name": "fine-small", "E": 64, "k": 8, "d": 128, "f": 64, "activation": "swiglu", "tokens": [512, 1024]},
]


def _paths(device: torch.device) -> dict:
    from .backends import torch_grouped_experts, torch_loop_experts

    paths = {}
    if device.type == "cuda":
        from .backends import _triton

        paths["triton"] = _triton
    else:  # on a GPU a Python loop over 64-128 experts only slows the run down; on CPU it is the baseline
        paths["torch_sort_loop"] = torch_loop_experts
    if hasattr(torch, "_grouped_mm"):
        paths["torch_grouped_mm"] = torch_grouped_experts
    return paths


def _inputs(shape: dict, T: int, dtype, device, seed: int = 0):
    from .experts import Assignment

    # Generated on the device: the coarse shape's weights are ~1.4G numbers, slow to make on a CPU.
    gen = torch.Generator(device=device).manual_seed(seed)
    E, k, d, f = shape["E"], shape["k"], shape["d"], shape["f"]
    gated = shape["activation"] == "swiglu"

    def param(*s, fan):
        t = torch.randn(*s, generator=gen, device=device, dtype=dtype)
        return t.div_(fan ** 0.5).requires_grad_()

    x = param(T, d, fan=1)
    w_up, w_down = param(E, d, f, fan=d), param(E, f, d, fan=f)
    w_gate = param(E, d, f, fan=d) if gated else None
    w, idx = torch.randn(T, E, generator=gen, device=device).softmax(-1).topk(k)
    assign = Assignment(torch.arange(T, device=device).repeat_interleave(k), idx.reshape(-1),
                        w.reshape(-1).to(dtype).requires_grad_())
    return x, assign, w_up, w_gate, w_down


def _dense_ms(T, shape, dtype, device, warmup, reps):
    gated = shape["activation"] == "swiglu"
    a = torch.randn(T * shape["k"], shape["d"], device=device, dtype=dtype, requires_grad=True)
    b = torch.randn(shape["d"], (3 if gated else 2) * shape["f"], device=device, dtype=dtype, requires_grad=True)
    fwd = median_ms(lambda: a @ b, device, warmup, reps)

    def fwd_bwd():
        out = a @ b
        torch.autograd.grad(out, (a, b), torch.ones_like(out))

    return fwd, median_ms(fwd_bwd, device, warmup, reps)


def run_kernel_bench(shapes=None, dtype=None, device=None) -> list[dict]:
    """One row per (shape, tokens, path) with fwd / fwd+bwd median ms, TFLOP/s and fraction of dense."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = device.type == "cuda"
    shapes = shapes or (GPU_SHAPES if on_gpu else CPU_SHAPES)
    dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
    warmup, reps = (3, 10) if on_gpu else (1, 3)
    if not on_gpu:
        # stderr, so `--json` output on stdout stays parseable.
        print("triton rows: skipped: no GPU (interpreter timings say nothing about kernel speed)", file=sys.stderr)
    paths = _paths(device)
    dev_name = torch.cuda.get_device_name(device) if on_gpu else "cpu"
    rows = []
    for shape in shapes:
        mult = 6 if shape["activation"] == "swiglu" else 4
        for T in shape["tokens"]:
            flops_fwd = mult * T * shape["k"] * shape["d"] * shape["f"]
            base = {"shape": shape["name"], "E": shape["E"], "k": shape["k"], "d_model": shape["d"],
                    "expert_width": shape["f"], "tokens": T, "activation": shape["activation"],
                    "dtype": str(dtype).replace("torch.", ""), "device": dev_name}
            dense_fwd, dense_fb = _dense_ms(T, shape, dtype, device, warmup, reps)
            rows.append(_row(base, "dense_gemm", dense_fwd, dense_fb, flops_fwd, dense_fwd, dense_fb))
            if not on_gpu:
                rows.append({**base, "path": "triton", "note": "skipped: no GPU"})
            x, assign, w_up, w_gate, w_down = _inputs(shape, T, dtype, device)
            params = [p for p in (x, assign.weight, w_up, w_gate, w_down) if p is not None]
            for name, fn in paths.items():
                try:
                    def fwd():
                        return fn(x, assign, w_up, w_gate, w_down, shape["activation"])

                    def fwd_bwd():
                        y = fwd()
                        torch.autograd.grad(y, params, torch.ones_like(y))

                    with torch.no_grad():
                        t_fwd = median_ms(fwd, device, warmup, reps)
                    t_fb = median_ms(fwd_bwd, device, warmup, reps)
                    rows.append(_row(base, name, t_fwd, t_fb, flops_fwd, dense_fwd, dense_fb))
                except Exception as exc:  # one failing path (e.g. _grouped_mm on an old GPU) must not end the run
                    rows.append({**base, "path": name, "note": f"failed: {type(exc).__name__}: {exc}"[:160]})
            _add_ratios(rows, base)
            del x, assign, w_up, w_gate, w_down, params
            gc.collect()
            if on_gpu:
                torch.cuda.empty_cache()
    return rows


def _add_ratios(rows: list[dict], base: dict) -> None:
    """Time of torch._grouped_mm divided by each path's time, within one (shape, tokens): > 1 is faster."""
    mine = [r for r in rows if all(r.get(k) == v for k, v in base.items())]
    ref = next((r for r in mine if r["path"] == "torch_grouped_mm" and "fwd_ms" in r), None)
    for r in mine:
        if ref is not None and "fwd_ms" in r:
            r["fwd_vs_grouped_mm"] = ref["fwd_ms"] / r["fwd_ms"]
            r["fwd_bwd_vs_grouped_mm"] = ref["fwd_bwd_ms"] / r["fwd_bwd_ms"]


def _row(base, path, t_fwd, t_fb, flops_fwd, dense_fwd, dense_fb) -> dict:
    return {**base, "path": path, "fwd_ms": t_fwd, "fwd_bwd_ms": t_fb,
            "fwd_tflops": flops_fwd / t_fwd / 1e9, "fwd_bwd_tflops": 3 * flops_fwd / t_fb / 1e9,
            "fwd_frac_dense": dense_fwd / t_fwd, "fwd_bwd_frac_dense": dense_fb / t_fb, "note": ""}


COLUMNS = [("shape", "shape"), ("E", "E"), ("k", "k"), ("d_model", "d"), ("expert_width", "f"),
           ("tokens", "tokens"), ("path", "path"), ("fwd_ms", "fwd ms"), ("fwd_tflops", "fwd TFLOP/s"),
           ("fwd_frac_dense", "fwd / dense"), ("fwd_bwd_ms", "fwd+bwd ms"), ("fwd_bwd_tflops", "fwd+bwd TFLOP/s"),
           ("fwd_bwd_frac_dense", "fwd+bwd / dense"), ("fwd_vs_grouped_mm", "fwd / grouped_mm"),
           ("fwd_bwd_vs_grouped_mm", "fwd+bwd / grouped_mm"), ("note", "note")]


def format_table(rows: list[dict]) -> str:
    """Markdown table of run_kernel_bench rows; missing numbers (skipped or failed paths) print as '-'."""
    def cell(v):
        if v is None or v == "":
            return "-" if v is None else ""
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v).replace("|", "/")

    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, sep]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(key)) for key, _ in COLUMNS) + " |")
    if rows:
        r0 = rows[0]
        lines.append("")
        lines.append(f"device: {r0.get('device')}, dtype: {r0.get('dtype')}; TFLOP/s on active FLOPs "
                     "(6*T*k*d*f forward, 18*T*k*d*f forward+backward for SwiGLU; 4 and 12 otherwise); "
                     "'/ dense' = time of a dense GEMM with the same FLOPs divided by the path's time; "
                     "'/ grouped_mm' = torch._grouped_mm's time divided by the path's time (> 1: faster).")
    return "\n".join(lines)
