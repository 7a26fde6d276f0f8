"""Training tokens/s with and without torch.compile (train.compile) for the quickstart's dense and MoE models.

    python benchmarks/compile_speed.py [SUITE.yaml] [--variants dense,moe8] [--rounds 15] [--device cpu] [--dropless]

For each variant one eager and one compiled copy of the same model (same weights, each with its own AdamW) run
a full training step (forward, loss, backward, clip, optimizer) on one real-shaped batch, alternately, round by
round, so both see the same machine load; prints the compile time (the first compiled step, cold caches
unless TORCHINDUCTOR_CACHE_DIR holds this model already), each median tokens/s and compiled / eager, with the
load average before and after. A timing, meaningful on a quiet machine only, so not part of the test command.
`--dropless` drops the MoE variants' capacity limit: a dropless layer on the grouped path is traced whole, a
capacity-limited one runs its experts as one opaque op (docs/compile.md, models/compiled_experts.py).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_support import adamw_step, synced  # noqa: E402

from moebench.config.suite import load_suite  # noqa: E402
from moebench.models.backends import resolve_backend  # noqa: E402
from moebench.models.transformer import Transformer  # noqa: E402
from moebench.plan import plan_suite, run_specs  # noqa: E402
from moebench.training.trainer import compile_for_training  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[1] / "suites" / "quickstart.yaml"


def measure(spec, device: torch.device, rounds: int, dropless: bool) -> dict:
    cfg = spec.model
    if dropless and cfg.moe is not None:
        cfg = dataclasses.replace(cfg, moe=dataclasses.replace(cfg.moe, capacity_factor=None))
    backend = resolve_backend(spec.train.moe_backend, device) if cfg.moe else "torch"
    torch.manual_seed(0)
    eager_model = Transformer(cfg, backend).to(device)
    comp_model = copy.deepcopy(eager_model)
    x = torch.randint(0, cfg.vocab_size, (spec.train.batch_size, cfg.seq_len + 1), device=device)
    steps = {"eager": synced(adamw_step(eager_model, eager_model, spec.train, x), device),
             "compiled": synced(adamw_step(comp_model, compile_for_training(comp_model), spec.train, x), device)}
    t0 = time.perf_counter()
    steps["compiled"]()
    compile_s = time.perf_counter() - t0
    steps["compiled"]()
    steps["eager"]()
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(rounds):
        for name in (("eager", "compiled") if i % 2 == 0 else ("compiled", "eager")):
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    tokens = spec.train.batch_size * cfg.seq_len
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    return {"backend": backend, "compile_s": compile_s, **tps, "ratio": tps["compiled"] / tps["eager"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", nargs="?", default=str(QUICKSTART), help="a suite (default: the quickstart)")
    ap.add_argument("--variants", default="dense,moe8", help="comma-separated variant names of the suite")
    ap.add_argument("--rounds", type=int, default=15, help="timed steps per mode, alternating")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dropless", action="store_true", help="time the MoE variants without their capacity limit")
    args = ap.parse_args()
    device = torch.device(args.device)
    specs = {s.variant: s for s in run_specs(plan_suite(load_suite(Path(args.suite), []))) if s.seed == 0}
    threads = next(iter(specs.values())).train.threads
    if device.type == "cpu" and threads:
        torch.set_num_threads(threads)
    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, load {load0:.1f}")
    print(f"capacity limit: {'off (--dropless)' if args.dropless else 'as in the suite'}")
    print("variant | backend | compile s | eager tok/s | compiled tok/s | compiled/eager")
    for name in args.variants.split(","):
        r = measure(specs[name], device, args.rounds, args.dropless)
        print(f"{name} | {r['backend']} | {r['compile_s']:.1f} | {r['eager']:.0f} | {r['compiled']:.0f} | "
              f"{r['ratio']:.2f}", flush=True)
    print(f"load average before {load0:.1f}, after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
