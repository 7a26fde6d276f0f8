"""`--shard K/N`: the K-th of N disjoint slices of a suite's runs, so a Slurm job array, a Kubernetes indexed job
or several machines sharing one results directory can split a suite.

The split is round-robin over run_specs order (variant-major, then seed): slice K takes runs K, K+N, K+2N, ...
(1-based), so every slice gets a mix of variants and seeds rather than one variant's seeds, the slices are
disjoint, their union is the whole suite, and every machine computes the same split from the same suite alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, TypeVar

from moebench.errors import UserError

T = TypeVar("T")
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as Slurm's SLURM_ARRAY_TASK_ID with --array=1-N
    count: int

    def select(self, items: Sequence[T]) -> list[T]:
        return list(items[self.index - 1 :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """'K/N' with 1 <= K <= N -> Shard; anything else is a one-line UserError naming --shard."""
    m = _SHARD.match(str(text))
    if not m:
        raise UserError(f"--shard: expected K/N with 1 <= K <= N (e.g. --shard 2/4), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise UserError(f"--shard: {k}/{n} is not a slice; K must be between 1 and N (e.g. --shard 2/4)")
    return Shard(k, n)
