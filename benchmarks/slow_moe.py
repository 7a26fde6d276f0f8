"""A deliberately slowed MoE path, to prove `moebench check` catches a regression (never used by moebench).

    MOEBENCH_SLOW_MOE=N python benchmarks/slow_moe.py run suites/ci.yaml --results DIR

runs the normal CLI with the `torch` expert backend doing its forward work N+1 times, as a botched change to
the fast path would. The extra passes run without autograd, so losses and memory stay exactly as they were and
only speed regresses. The run still records backend `torch`, so its results compare with a
normal baseline. The variable is read here only; moebench itself never looks at it.
"""
from __future__ import annotations

import os
import sys


def install() -> int:
    """Wrap BACKENDS['torch'] when MOEBENCH_SLOW_MOE is set; returns the number of extra passes."""
    extra = int(os.environ.get("MOEBENCH_SLOW_MOE", "0") or 0)
    if extra <= 0:
        return 0
    import torch

    from moebench.models import backends

    fast = backends.BACKENDS["torch"]

    def slowed(x, assign, w_up, w_gate, w_down, activation):
        with torch.no_grad():
            for _ in range(extra):
                fast(x, assign, w_up, w_gate, w_down, activation)
        return fast(x, assign, w_up, w_gate, w_down, activation)

    backends.BACKENDS.replace("torch", slowed)
    return extra


if __name__ == "__main__":
    n = install()
    print(f"slow_moe: torch expert backend forward runs {n + 1}x", file=sys.stderr, flush=True)
    from moebench.cli import main

    sys.exit(main(sys.argv[1:]))
