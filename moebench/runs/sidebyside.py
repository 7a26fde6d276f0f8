"""Training-step speed of several variants timed side by side, interleaved in one process.

Why: on a shared machine the load changes from one run to the next, so two runs trained one after the other see
different machines and their tokens/s are not comparable (the CI suite's MoE/dense ratio moved 39.5% between
back-to-back runs). Here every variant's model (its trained weights, so routing is realistic) takes a few real
training steps (Trainer.train_step: the same hot loop the runs used) in turn, round after round, the order
rotating each round; a load burst hits every variant of the rounds it spans. Each round gives a paired ratio of
two variants' tokens/s (the inverse ratio of their step times: batches are the suite's, so tokens per step are
equal); the ratio is the median of those over the rounds, and their spread is the noise band
(analysis.stats.sidebyside_ratio).

Written to results/<suite>/sidebyside.json; read by analysis (ResultSet.sidebyside) for the throughput_ratio
claims and by `moebench check` (analysis.stats.sidebyside_ratio).
"""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
import time
from pathlib import Path

from moebench import io as R
from moebench.errors import RunFailed
from moebench.models.weights import load_weights
from moebench.plan import RunSpec

from moebench.training.env import environment
from moebench.training.trainer import Trainer, load_data

FORMAT = 1
ROUNDS, STEPS_PER_ROUND, WARMUP_STEPS, MAX_SECONDS = 30, 2, 3, 120.0
MIN_ROUNDS = 8
# the pass may take this share of the suite's own wall (a short suite's timing must not cost as much as its
# training: issue 25 measured a fixed 21 s against a 144 s quickstart), never less than MIN_SECONDS
SHARE, MIN_SECONDS = 0.07, 8.0


def budget_s(suite_wall_s: float) -> float:
    """Seconds the side-by-side pass may take after a suite that took `suite_wall_s` (the rounds stop at the first
    round past it, and never before MIN_ROUNDS)."""
    return min(MAX_SECONDS, max(MIN_SECONDS, SHARE * suite_wall_s))


def _trainer(spec: RunSpec, results_root: Path, tmp: Path, data) -> Trainer:
    tr = Trainer(spec, tmp / spec.variant, data)
    weights = R.final_model(spec.run_dir(results_root))
    if weights is not None:  # trained routing (a fresh router spreads tokens more evenly than a trained one)
        tr.par.module.load_state_dict(load_weights(weights, tr.device))
    return tr


def _timed_steps(tr: Trainer, n: int) -> float:
    """Mean seconds per training step over n steps, by the trainer's own step clock."""
    return sum(tr.train_step()["step_time"] for _ in range(n)) / n


def measure(specs: list[RunSpec], results_root: Path, rounds: int = ROUNDS, steps: int = STEPS_PER_ROUND,
            max_seconds: float = MAX_SECONDS, log=print) -> dict | None:
    """Interleaved step times of one seed of each variant in `specs`; None if fewer than two variants. The
    clock for max_seconds starts here: loading the weights and the warm-up steps count against it."""
    t0 = time.perf_counter()
    first: dict[str, RunSpec] = {}
    for s in specs:
        first.setdefault(s.variant, s)
    if len(first) < 2:
        return None
    names = list(first)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="moebench-sbs-") as tmp:
        data = load_data(next(iter(first.values())))
        try:
            trainers = {n: _trainer(first[n], Path(results_root), Path(tmp), data) for n in names}
            for tr in trainers.values():
                _timed_steps(tr, WARMUP_STEPS)
            times: dict[str, list[float]] = {n: [] for n in names}
            for r in range(rounds):
                order = names[r % len(names):] + names[:r % len(names)]  # rotate: no variant always goes first
                for n in order:
                    times[n].append(_timed_steps(trainers[n], steps))
                if r + 1 >= MIN_ROUNDS and time.perf_counter() - t0 > max_seconds:
                    break
        except RunFailed as e:
            log(f"side-by-side timing skipped: {e}")
            return None
    dev = next(iter(trainers.values())).device
    env = environment(dev, next(iter(first.values())).train.dtype)
    out = {"format": FORMAT, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "method": (f"{len(times[names[0]])} rounds x {steps} training steps per variant, interleaved in one "
                      f"process (order rotating), after {WARMUP_STEPS} warm-up steps each; one seed's trained "
                      "weights; ratio of tokens/s = median over rounds of the per-round step-time ratio"),
           "rounds": len(times[names[0]]), "steps_per_round": steps, "loadavg": [load0, os.getloadavg()],
           "budget_s": max_seconds, "wall_s": time.perf_counter() - t0,
           "env": {k: env.get(k) for k in ("device_name", "cpu_model", "hostname", "git_sha", "torch")},
           "seeds": {n: first[n].seed for n in names}, "step_time_s": times}
    return out


def write(results_dir: Path, sbs: dict) -> Path:
    path = Path(results_dir) / R.SIDEBYSIDE
    R.write_recorded(path, sbs)  # and results/<suite>/manifest.json, so an edited timing is detected
    return path
