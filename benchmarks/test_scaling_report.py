"""Fit + report of a 36-run synthetic sweep (3 variants x 4 sizes x 3 seeds, losses from known power laws with
seed noise): the scaling section (plateau check, law fit with its lack-of-fit test and random-effect refit,
delta-method bands, two plots, tables) plus two compute_multiplier claims. Target: under 10 s on the 2-core CI
machine."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moebench.report.render import write_report  # noqa: E402
from tests.synth import write_run, write_suite  # noqa: E402

TOKENS_PER_STEP = (1000, 8000, 64000, 512000)
CLAIMS = [{"kind": "compute_multiplier", "variant": v, "baseline": "dense", "min": 1.0} for v in ("moe", "moe2")]


def synthetic_sweep(root: Path) -> Path:
    rng = np.random.default_rng(0)
    sizes = {f"s{i}": {"base": {"d_model": 8 * (i + 1)}} for i in range(len(TOKENS_PER_STEP))}
    d = write_suite(root, claims=CLAIMS, variants=("dense", "moe", "moe2"), sweep={"sizes": sizes})
    for variant, m in (("dense", 1.0), ("moe", 2.0), ("moe2", 1.5)):
        for i, tps in enumerate(TOKENS_PER_STEP):
            flops = 6e4 * 100 * tps
            for seed in range(3):
                loss = 1.5 + (m * flops / 1e9) ** -0.3 + rng.normal(0, 0.01)
                write_run(d, variant, seed, [loss], tokens_per_step=tps, flops_per_token=6e4, size=f"s{i}")
    return d


def test_fit_and_report_36_runs(benchmark, tmp_path):
    d = synthetic_sweep(tmp_path)
    readme = benchmark.pedantic(write_report, args=(d, tmp_path / "rep"), rounds=1, iterations=1)
    assert "Scaling sweep" in readme.read_text()
