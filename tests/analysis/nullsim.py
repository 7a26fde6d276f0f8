"""Simulated suites with a known truth, for the null-calibration tests: realistic eval curves (power-law decay,
per-seed offsets, eval noise, eval spacing of the shipped suites), built in memory through the real ResultSet
builder (tests/synth.py memory_results) so the real claim judges read them exactly as they read run directories.

Many independent simulated suites share one ResultSet (suite i's variants are named "<i>.a0", "<i>.a1", ...): a
judge reads only the variants its claim names, and building one frame for a batch instead of one per suite keeps
thousands of simulations within seconds."""
from __future__ import annotations

import numpy as np

from tests.synth import memory_results, run_record

# (eval interval, number of evals) of the shipped suites: CPU presets 200-320 steps at 50, GPU presets at 1000
SCHEDULES = ((50, 4), (50, 5), (50, 6), (1000, 10), (1000, 20))
VARIANTS = ("a0", "a1", "a2", "a3")  # a0 the baseline, a1 the variant of pair claims; all four for monotonic


def curve(rng, steps: np.ndarray, shape: dict, offset: float, noise: float, t0: float | None = None,
          t_end: float | None = None) -> np.ndarray:
    """L(t) = L_inf + A (t / t0)^-alpha + overfit (t / T)^3 + a per-seed offset + independent eval noise (t0, T:
    the first and last eval unless given, so a time-scaled variant keeps its baseline's curve)."""
    t = steps / (t0 or steps[0])
    base = shape["l_inf"] + shape["a"] * t ** -shape["alpha"] + shape["overfit"] * (steps / (t_end or steps[-1])) ** 3
    return base + offset + rng.normal(0.0, noise, len(steps))


def suite_records(rng, i: int, n_seeds: int, effects: dict | None = None, shifts: dict | None = None,
                  speedup: tuple | None = None, seeds: dict | None = None) -> list:
    """One simulated suite: every variant from the same distribution, except that variant v's curves sit
    effects[v] seed-sds lower (a real effect of that many noise-floor units). A third of the suites overfit
    (loss rising at the end), in every variant alike. `shifts` moves variant v's curves up by shifts[v] nats (a
    true difference of a fixed size, e.g. exactly an equivalence margin).

    `speedup` (S, (k_lo, k_hi)): a1 is exactly S times faster on steps (its curve is a0's at S x its step, the
    overfit term included) and trains for k / S of a0's steps, k drawn uniformly in [k_lo, k_hi] per suite: with k
    near 1 some a1 seeds end before reaching a0's final loss (censored). `seeds` {variant: seed list} replaces
    range(n_seeds) for the variants it names (different or unequal seeds in two variants)."""
    every, n_evals = SCHEDULES[rng.integers(len(SCHEDULES))]
    steps = every * np.arange(1, n_evals + 1)
    shape = {"l_inf": rng.uniform(1.0, 1.5), "a": rng.uniform(1.0, 2.0), "alpha": rng.uniform(0.3, 0.7),
             "overfit": rng.uniform(0.0, 0.1) if rng.random() < 1 / 3 else 0.0}
    sd_seed, sd_eval, rho = rng.uniform(0.02, 0.03), rng.uniform(0.005, 0.015), rng.uniform(0.0, 0.5)
    shared = rng.normal(0.0, sd_seed, n_seeds)  # same seed, same batches: part of the offset is shared
    if seeds:
        shared = rng.normal(0.0, sd_seed, 1 + max(max(x) for x in seeds.values()))
    recs = []
    for v in VARIANTS:
        shift = -(effects or {}).get(v, 0.0) * sd_seed + (shifts or {}).get(v, 0.0)
        v_every, v_steps, scale = every, steps, 1.0
        if speedup and v == "a1":
            scale = speedup[0]
            k = rng.uniform(*speedup[1])
            v_every = max(1, int(round(every * k / scale)))  # the truth stays exactly S at whatever steps it has
            v_steps = v_every * np.arange(1, n_evals + 1)
        for s in (seeds or {}).get(v, range(n_seeds)):
            off = np.sqrt(rho) * shared[s] + np.sqrt(1 - rho) * rng.normal(0.0, sd_seed) + shift
            walls = np.cumsum(np.full(n_evals, v_every * 0.5 * (1 + rng.normal(0.0, 0.03))))
            loss = curve(rng, v_steps * scale, shape, off, sd_eval, t0=steps[0], t_end=steps[-1])
            recs.append(run_record("sim", f"{i}.{v}", s, loss, every=int(v_every), walls=walls))
    return recs


def simulate(rng, n_suites: int, n_seeds: int, **kw):
    """n_suites independent simulated suites in one ResultSet."""
    return memory_results([r for i in range(n_suites) for r in suite_records(rng, i, n_seeds, **kw)])
