"""A/B speed probe: one process times a suite's variants side by side and prints their step times as JSON.

    python moebench/runs/abprobe.py SUITE.yaml ROUNDS

It is run as a script, with PYTHONPATH pointing at the code version under test (`moebench check --ab` runs it
alternately against the base commit's tree and HEAD's), so it uses only APIs both versions have: load_suite,
plan_suite, run_specs, Trainer, load_data. Weights are each variant's fresh initialisation (seed of the suite's
first seed): the same for both code versions, so the A/B comparison is like with like.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

WARMUP, STEPS = 3, 2


def probe(suite_path: str, rounds: int) -> dict:
    from moebench.config.suite import load_suite
    from moebench.plan import plan_suite, run_specs
    from moebench.training.trainer import Trainer, load_data

    specs = {}
    for s in run_specs(plan_suite(load_suite(Path(suite_path)))):
        specs.setdefault(s.variant, s)
    names = list(specs)
    data = load_data(specs[names[0]])
    times = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="moebench-ab-") as tmp:
        trainers = {n: Trainer(specs[n], Path(tmp) / n, data) for n in names}
        for tr in trainers.values():
            for _ in range(WARMUP):
                tr.train_step()
        for r in range(rounds):
            for n in names[r % len(names):] + names[:r % len(names)]:
                times[n].append(sum(trainers[n].train_step()["step_time"] for _ in range(STEPS)) / STEPS)
    return {"step_time_s": times, "matched_to": {n: specs[n].plan.matched_to for n in names}}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], int(sys.argv[2]))))
