"""Compile every kernel for a GPU target without a GPU, and report registers, spills and shared memory.

    python -m moebench.kernels.compile_check --all      # every variant, sm_90 and sm_80, bf16 and fp16
    python -m moebench.kernels.compile_check 90 bf16    # one target

The interpreter runs kernels as numpy and never lowers them, so it cannot see what only breaks in the real
compiler (layouts, dtype rules of tl.dot, shared memory, register pressure). This lowers each kernel variant
the ops launch down to cubin with the ptxas that ships with triton, using the specialisation a real launch
gets (unit strides become constants, pointers and sizes are 16-divisible), and reads ptxas's own report
(`-v`, which triton always passes) for registers, spilled bytes and shared memory. Triton's compile cache is
bypassed so every run really compiles and reports.

Exit status: 1 if any variant fails to compile or a default-config variant (what the ops launch unless told
otherwise) spills registers; non-default variants (the atomic combine, GROUP_M=1) are reported only.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
from dataclasses import dataclass, field

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    raise SystemExit("unset TRITON_INTERPRET: this lowers kernels to GPU code")
# Triton 3.9 warns that its FP-fusion default will flip; pin today's default (fused) so the check lowers what
# a real launch compiles and the log stays quiet.
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from . import activation, combine, grouped_gemm, grouped_xty, permute, routing  # noqa: E402
from .config import gpu_default  # noqa: E402

INDEX_ARGS = {"a_idx_ptr", "out_idx_ptr", "tok_ptr", "perm_ptr", "inv_perm_ptr", "x_idx_ptr", "y_idx_ptr",
              "offsets_ptr", "counts_ptr", "ids_ptr", "sorted_tok_ptr", "idx_ptr", "src_ptr", "start_ptr"}
INT32_ARGS = {"block_expert_ptr", "block_start_ptr", "seg_end_ptr", "base_ptr", "hist_ptr", "split_expert_ptr",
              "split_start_ptr", "n_splits_ptr", "first_split_ptr"}
FP32_ARGS = {"scale_ptr", "sw_ptr", "dweight_ptr", "sorted_w_ptr", "probs_ptr", "part_ptr", "part2_ptr"}
UNIT_STRIDES = {"stride_ak", "stride_a2k", "stride_wn", "stride_w2n", "stride_on", "stride_xk", "stride_hn",
                "stride_dk", "stride_yn", "stride_y2n", "stride_le", "stride_dwn", "stride_pn", "stride_rn"}


@dataclass
class Variant:
    fn: object
    consts: dict
    fp32_out: tuple = ()
    warps: int = 4
    stages: int = 3
    default: bool = True  # launched by the ops with the default config (spills here fail the check)
    note: str = ""


@dataclass
class Result:
    name: str
    label: str
    sm: int
    dtype: str
    default: bool
    ok: bool
    regs: int = -1
    spill_bytes: int = -1
    smem: int = -1
    seconds: float = 0.0
    error: str = field(default="", repr=False)


def variants(dtype: str) -> list[Variant]:
    cfg = gpu_default(_torch_dtype(dtype))
    g, x = cfg["gemm"], cfg["xty"]
    prec = "tf32" if dtype == "fp32" else "ieee"
    st, xst = g["num_stages"], x["num_stages"]
    blk = dict(IS_F64=False, PRECISION=prec, BLOCK_M=g["BLOCK_M"], BLOCK_N=g["BLOCK_N"], BLOCK_K=g["BLOCK_K"],
               GROUP_M=g["GROUP_M"])
    xty = dict(IS_F64=False, PRECISION=prec, BLOCK_K=x["BLOCK_K"], BLOCK_N=x["BLOCK_N"], BLOCK_R=x["BLOCK_R"])
    bt, bn = combine.combine_blocks()
    hist_b, hist_e = routing.hist_block(64)
    topk_t, topk_e = routing.topk_blocks(1 << 16, 64)
    mm = grouped_gemm._grouped_mm_kernel
    out = [
        Variant(routing._softmax_topk_kernel, dict(K=8, K_P2=8, RENORM=True, BLOCK_T=topk_t, BLOCK_E=topk_e),
                note="E=64 k=8"),
        Variant(routing._chunk_hist_kernel, dict(BLOCK=hist_b, BLOCK_E=hist_e), note="E=64"),
        Variant(permute._chunk_scatter_kernel, dict(BLOCK=hist_b, BLOCK_E=hist_e), note="E=64"),
    ]
    b = activation.kernel_cfg(g, cfg.get("bwd_act"))
    bwd = {**blk, "BLOCK_N": b["BLOCK_N"], "BLOCK_K": b["BLOCK_K"]}
    u = activation.kernel_cfg(g, cfg.get("up_act"))
    up = {**blk, "BLOCK_N": u["BLOCK_N"], "BLOCK_K": u["BLOCK_K"]}
    for act in (0, 1, 2):
        out.append(Variant(activation._up_act_kernel, dict(ACT=act, **up), warps=u["num_warps"],
                           stages=u["num_stages"]))
        out.append(Variant(activation._down_bwd_act_kernel, dict(ACT=act, ATOMIC_DW=False, **bwd),
                           warps=b["num_warps"], stages=b["num_stages"]))
    out += [
        # forward down projection (one row per assignment) and backward dX (dual input), as launched
        Variant(mm, dict(GATHER_A=False, DUAL_IN=False, SCALE=True, SCATTER_ADD=False, **blk), stages=st),
        Variant(mm, dict(GATHER_A=False, DUAL_IN=True, SCALE=False, SCATTER_ADD=False, **blk), stages=st),
        Variant(combine._combine_kernel, dict(IS_F64=False, BLOCK_T=bt, BLOCK_N=bn)),
        Variant(grouped_xty._xty_kernel, dict(GATHER_X=True, GATHER_Y=False, SCALE_Y=False, DUAL=True, **xty),
                warps=x["num_warps"], stages=xst),
        Variant(grouped_xty._xty_kernel, dict(GATHER_X=False, GATHER_Y=True, SCALE_Y=True, DUAL=False, **xty),
                warps=x["num_warps"], stages=xst),
        Variant(grouped_xty._split_reduce_kernel, dict(DUAL=True, IS_F64=False, BLOCK_K=x["BLOCK_K"],
                                                       BLOCK_N=x["BLOCK_N"]), warps=grouped_xty.REDUCE_WARPS),
        Variant(grouped_xty._split_reduce_kernel, dict(DUAL=False, IS_F64=False, BLOCK_K=x["BLOCK_K"],
                                                       BLOCK_N=x["BLOCK_N"]), warps=grouped_xty.REDUCE_WARPS),
        # opt-in paths: the atomic combine, and no launch-order swizzle
        Variant(mm, dict(GATHER_A=False, DUAL_IN=False, SCALE=True, SCATTER_ADD=True, **blk), fp32_out=("out_ptr",),
                stages=st, default=False, note="atomic_combine"),
        Variant(mm, dict(GATHER_A=False, DUAL_IN=True, SCALE=False, SCATTER_ADD=True, **blk), fp32_out=("out_ptr",),
                stages=st, default=False, note="atomic_combine"),
        Variant(activation._down_bwd_act_kernel, dict(ACT=2, ATOMIC_DW=True, **bwd), warps=b["num_warps"],
                stages=b["num_stages"], default=False, note="atomic_combine"),
        Variant(mm, dict(GATHER_A=False, DUAL_IN=False, SCALE=True, SCATTER_ADD=False, **{**blk, "GROUP_M": 1}),
                stages=st, default=False),
    ]
    return out


def _torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


PTXAS_RE = {"regs": re.compile(r"Used (\d+) registers"),
            "spill_st": re.compile(r"(\d+) bytes spill stores"), "spill_ld": re.compile(r"(\d+) bytes spill loads")}


def label(v: Variant) -> str:
    keys = ("ACT", "GATHER_A", "GATHER_X", "GATHER_Y", "DUAL_IN", "DUAL", "SCALE", "SCALE_Y", "SCATTER_ADD",
            "ATOMIC_DW", "GROUP_M")
    parts = [f"{k}={int(v.consts[k]) if isinstance(v.consts[k], bool) else v.consts[k]}" for k in keys
             if k in v.consts]
    short = {"BLOCK_M": "m", "BLOCK_T": "t", "BLOCK": "c", "BLOCK_K": "k", "BLOCK_N": "n", "BLOCK_R": "r"}
    tile = "".join(f"{a}{v.consts[k]}" for k, a in short.items() if k in v.consts)
    return " ".join([f"{tile} w{v.warps}"] + parts + ([v.note] if v.note else []))


def lower(v: Variant, dtype: str, target: GPUTarget) -> Result:
    fn = v.fn
    consts = {**{n: 1 for n in fn.arg_names if n in UNIT_STRIDES}, **v.consts}
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in INDEX_ARGS:
            sig[name] = "*i64"
        elif name in INT32_ARGS:
            sig[name] = "*i32"
        elif name in FP32_ARGS or name in v.fp32_out:
            sig[name] = "*fp32"
        elif name.endswith("_ptr"):
            sig[name] = "*" + dtype
        else:
            sig[name] = "i32"
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names) if sig[n] != "constexpr"}
    res = Result(fn.__name__, label(v), target.arch, dtype, v.default, ok=False)
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        # Triton prints ptxas's -v report when dump_ptxas_log is on; always_compile skips the cache.
        with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
            knobs.nvidia.dump_ptxas_log = True
            knobs.compilation.always_compile = True
            kernel = triton.compile(ASTSource(fn, sig, constexprs=consts, attrs=attrs), target=target,
                                    options={"num_warps": v.warps, "num_stages": v.stages})
        text = log.getvalue()
        found = {k: [int(m) for m in r.findall(text)] for k, r in PTXAS_RE.items()}
        res.regs = max(found["regs"], default=-1)
        res.spill_bytes = sum(found["spill_st"]) + sum(found["spill_ld"])
        res.smem = kernel.metadata.shared
        res.ok = res.regs >= 0
        if not res.ok:
            res.error = "no ptxas report found"
    except Exception as exc:  # a compile error is a result to report, not a crash of the whole check
        res.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]
    res.seconds = time.perf_counter() - t0
    return res


def format_table(results: list[Result]) -> str:
    head = f"{'kernel':22s} {'variant':76s} {'sm':>3s} {'dtype':5s} {'regs':>4s} {'spill B':>7s} {'smem B':>7s} " \
           f"{'s':>5s}  status"
    lines = [head, "-" * len(head)]
    for r in results:
        status = "ok" if r.ok and r.spill_bytes == 0 else ("SPILL" if r.ok else f"FAIL {r.error}")
        if status == "SPILL" and not r.default:
            status = "spill (opt-in variant)"
        lines.append(f"{r.name:22s} {r.label:76s} {r.sm:>3d} {r.dtype:5s} {r.regs:>4d} {r.spill_bytes:>7d} "
                     f"{r.smem:>7d} {r.seconds:>5.1f}  {status}")
    return "\n".join(lines)


def _lower_task(task: tuple[int, str, int]) -> Result:
    sm, dtype, i = task
    r = lower(variants(dtype)[i], dtype, GPUTarget("cuda", sm, 32))
    print(f"{'ok ' if r.ok else 'FAIL'} sm_{sm} {dtype} {r.name} {r.label} ({r.seconds:.1f} s)", file=sys.stderr,
          flush=True)
    return r


def run(targets: list[tuple[int, str]], jobs: int = 1) -> list[Result]:
    """Lower every variant for every (sm, dtype); `jobs` worker processes (compiles are independent and
    single-threaded, so two jobs nearly halve the wall time on two free cores). Results keep the task order."""
    tasks = [(sm, dtype, i) for sm, dtype in targets for i in range(len(variants(dtype)))]
    if jobs <= 1:
        return [_lower_task(t) for t in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: workers inherit the imported kernels; nothing here has touched a GPU driver.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_lower_task, tasks))


def failures(results: list[Result]) -> list[Result]:
    return [r for r in results if not r.ok or (r.default and r.spill_bytes > 0)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m moebench.kernels.compile_check", description=__doc__.split("\n")[0])
    p.add_argument("sm", nargs="?", type=int, default=90, help="compute capability, e.g. 90 or 80")
    p.add_argument("dtype", nargs="?", default="bf16", choices=("bf16", "fp16", "fp32"))
    p.add_argument("--all", action="store_true", help="sm_90 and sm_80, bf16 and fp16")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel compile processes")
    args = p.parse_args(argv)
    targets = [(sm, dt) for sm in (90, 80) for dt in ("bf16", "fp16")] if args.all else [(args.sm, args.dtype)]
    t0 = time.perf_counter()
    results = run(targets, args.jobs)
    print(format_table(results))
    bad = failures(results)
    print(f"\n{len(results)} variants lowered in {time.perf_counter() - t0:.0f} s; "
          f"{len(bad)} failure(s) (compile error, or spills in a default config)")
    for r in bad:
        print(f"  {r.name} {r.label} sm_{r.sm} {r.dtype}: {r.error or f'{r.spill_bytes} bytes spilled'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
