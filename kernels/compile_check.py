"""Compile every kernel for a GPU target without a GPU: `python -m moebench.kernels.compile_check [sm] [dtype]`.

The interpreter runs kernels as numpy and never lowers them, so it cannot see what only breaks in the real
compiler (layouts, dtype rules of tl.dot, shared memory). This lowers each kernel variant the ops launch down to
cubin with the ptxas that ships with triton, using the specialisation a real launch gets (unit strides become
constants, pointers and sizes are 16-divisible), and prints shared memory per kernel, which shows whether the
K loop was software-pipelined. Takes about a minute; run it after editing a kernel on a GPU-less machine.
"""
from __future__ import annotations

import os
import sys

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    raise SystemExit("unset TRITON_INTERPRET: this lowers kernels to GPU code")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from . import activation, grouped_gemm, grouped_xty, permute, routing  # noqa: E402

INDEX_ARGS = {"a_idx_ptr", "out_idx_ptr", "tok_ptr", "perm_ptr", "x_idx_ptr", "y_idx_ptr", "offsets_ptr",
              "counts_ptr", "ids_ptr", "sorted_tok_ptr", "idx_ptr"}
INT32_ARGS = {"block_expert_ptr", "block_start_ptr", "seg_end_ptr", "base_ptr", "hist_ptr"}
FP32_ARGS = {"scale_ptr", "sw_ptr", "dweight_ptr", "sorted_w_ptr", "probs_ptr"}
UNIT_STRIDES = {"stride_ak", "stride_a2k", "stride_wn", "stride_w2n", "stride_on", "stride_xk", "stride_hn",
                "stride_dk", "stride_yn", "stride_y2n", "stride_le"}


def lower(fn, consts: dict, dtype: str, target: GPUTarget, fp32_out=(), warps=4, stages=3):
    consts = {**{n: 1 for n in fn.arg_names if n in UNIT_STRIDES}, **consts}
    sig = {}
    for name in fn.arg_names:
        if name in consts:
            sig[name] = "constexpr"
        elif name in INDEX_ARGS:
            sig[name] = "*i64"
        elif name in INT32_ARGS:
            sig[name] = "*i32"
        elif name in FP32_ARGS or name in fp32_out:
            sig[name] = "*fp32"
        elif name.endswith("_ptr"):
            sig[name] = "*" + dtype
        else:
            sig[name] = "i32"
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names) if sig[n] != "constexpr"}
    kernel = triton.compile(ASTSource(fn, sig, constexprs=consts, attrs=attrs), target=target,
                            options={"num_warps": warps, "num_stages": stages})
    shown = {k: v for k, v in consts.items() if not k.startswith("stride")}
    print(f"ok  {fn.__name__:24s} smem {kernel.metadata.shared:>7d} B  {shown}", flush=True)


def main(sm: int = 90, dtype: str = "bf16") -> None:
    target = GPUTarget("cuda", sm, 32)
    prec = "tf32" if dtype == "fp32" else "ieee"
    stages = 2 if dtype == "fp32" else 3
    blk = dict(IS_F64=False, PRECISION=prec, BLOCK_M=64, BLOCK_N=128, BLOCK_K=64)
    lower(routing._softmax_topk_kernel, dict(K=8, K_P2=8, RENORM=True, BLOCK_T=128, BLOCK_E=64), dtype, target)
    lower(routing._chunk_hist_kernel, dict(BLOCK=256, BLOCK_E=64), dtype, target)
    lower(permute._chunk_scatter_kernel, dict(BLOCK=256, BLOCK_E=64), dtype, target)
    for act in (0, 1, 2):
        lower(activation._up_act_kernel, dict(ACT=act, **blk), dtype, target, stages=stages)
        lower(activation._down_bwd_act_kernel, dict(ACT=act, **blk), dtype, target, stages=stages)
    gemm = grouped_gemm._grouped_mm_kernel
    lower(gemm, dict(GATHER_A=False, DUAL_IN=False, SCALE=True, SCATTER_ADD=True, **blk), dtype, target,
          fp32_out=("out_ptr",), stages=stages)
    lower(gemm, dict(GATHER_A=False, DUAL_IN=True, SCALE=False, SCATTER_ADD=True, **blk), dtype, target,
          fp32_out=("out_ptr",), stages=stages)
    xty = dict(IS_F64=False, PRECISION=prec, BLOCK_K=64, BLOCK_N=128, BLOCK_R=64)
    lower(grouped_xty._xty_kernel, dict(GATHER_X=True, GATHER_Y=False, SCALE_Y=False, DUAL=True, **xty), dtype,
          target, stages=stages)
    lower(grouped_xty._xty_kernel, dict(GATHER_X=False, GATHER_Y=True, SCALE_Y=True, DUAL=False, **xty), dtype,
          target, stages=stages)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 90, sys.argv[2] if len(sys.argv) > 2 else "bf16")
