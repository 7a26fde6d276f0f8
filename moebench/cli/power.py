"""`moebench plan SUITE --power [--pilot RESULTS]`: per claim, the noise its rule assumes, the effect it tests,
the seeds that give its rule 80% power there, and the compute time that takes. The one `plan` mode that may import
torch and train (a short pilot when no results exist); plain `plan` never imports this module.

Noise source, first found: --pilot RESULTS (a finished results folder of the suite); results/<suite>/ when it holds
finished runs of the compared variants; a pilot already trained under results/<suite>/pilot/; else a new pilot
there (2 seeds of each compared variant, PILOT_FRACTION of the steps), after the checks `run` makes before writing.
A pilot's noise is that of a truncated run, which the output says.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

from moebench.config.suite import Suite, load_suite
from moebench.errors import UserError

PILOT_FRACTION = 0.25
PILOT_SEEDS = (0, 1)


def compared_variants(suite: Suite) -> list[str]:
    out: list[str] = []
    for c in suite.claims:
        out += [v for v in c.compared() if v in suite.variants and v not in out]
    return out


def _finished(rs, variants: list[str]) -> bool:
    return bool(variants) and all(len(rs.seed_values(v, "val_loss")) >= 2 for v in variants)


def pilot_steps(suite: Suite) -> int:
    return max(4, math.ceil(suite.train.steps * PILOT_FRACTION))


def _pilot_suite(args, suite: Suite) -> Suite:
    steps = pilot_steps(suite)
    sets = [f"train.seeds={list(PILOT_SEEDS)}", f"train.steps={steps}",
            f"eval.interval={max(1, min(suite.eval.interval, steps // 4))}",
            *([] if suite.train.warmup_fraction is not None else
              [f"train.warmup_steps={min(suite.train.warmup_steps, steps // 4)}"])]
    return load_suite(args.suite, [*args.overrides, *sets], args.preset)


def run_pilot(args, suite: Suite, root: Path, log) -> None:
    """Train the pilot under `root` (results/<suite>/pilot/), after the checks `run` makes before writing."""
    from moebench.plan import plan_suite, run_specs
    from moebench.cli.checks import memory_check
    from moebench.runs import pool
    from moebench.runs.finish import finish_runs
    from moebench.runs.lock import suite_lock
    from moebench.runs.rundirs import check_reruns, check_writable
    from moebench.runs.runner import DataCache, prepare_suite_dir
    from moebench.training.trackers import check_trackers

    pilot = _pilot_suite(args, suite)
    check_trackers(pilot.track)
    plan = plan_suite(pilot, memory_check(args, pilot))
    check_writable(root, "results/<suite>/pilot")
    specs = run_specs(plan, compared_variants(pilot))
    check_reruns(specs, root, False)
    data = DataCache()
    for spec in specs:  # builds and checks the token caches before anything is trained
        data(spec)
    log(f"pilot: {len(specs)} runs ({len(PILOT_SEEDS)} seeds of {', '.join(compared_variants(pilot))}, "
        f"{pilot.train.steps} of {suite.train.steps} steps) under {root}")
    with suite_lock(root / pilot.name, log=log):
        prepare_suite_dir(plan, root)
        outcomes = pool.run_sequential(specs, root, force=False, quiet=True, log=log, data=data)
        finish_runs([o.spec for o in outcomes], root, log)


def noise_results(args, suite: Suite, log):
    """(ResultSet, where it came from, truncated note)."""
    from moebench.analysis.resultset import load_results
    from moebench import io as R

    variants = compared_variants(suite)
    if args.pilot is not None:
        d = Path(args.pilot)
        if not (d / "suite.yaml").is_file():
            raise UserError(f"--pilot {d}: not a results folder of a suite (no suite.yaml)")
        name = R.read_suite(d).get("name")
        if name != suite.name:
            raise UserError(f"--pilot {d}: results of suite {name!r}, not {suite.name!r}")
        rs = load_results(d)
        if not _finished(rs, variants):
            raise UserError(f"--pilot {d}: needs 2 or more finished seeds of each of {', '.join(variants)}")
        return rs, f"--pilot {d}"
    stored = Path(args.results) / suite.name
    if (stored / "suite.yaml").is_file():
        rs = load_results(stored)
        if _finished(rs, variants):
            return rs, f"stored results {stored}"
    root = stored / "pilot"
    if not (root / suite.name / "suite.yaml").is_file() or not _finished(load_results(root / suite.name), variants):
        run_pilot(args, suite, root, log)
    return load_results(root / suite.name), f"pilot {root / suite.name}"


def claim_plans(suite: Suite, rs, jobs: int, max_seeds: int) -> list:
    """analysis/power_plan.py's plans for the suite's claims, each run's wall scaled to the suite's steps (a pilot
    is truncated; stored results may predate a change of steps); a sweep's sizes keep their own steps."""
    from moebench.analysis.power_plan import claim_plans as plans

    return plans(suite.claims, rs, jobs, max_seeds, None if suite.sweep else suite.train.steps)


def format_plans(plans: list, jobs: int) -> str:
    lines = []
    for p in plans:
        lines.append(f"claim {p.claim!r} ({p.kind})")
        if not p.noise:
            lines.append(f"  {p.note}")
            continue
        lines += [f"  noise:   {p.noise}", f"  effect:  {p.effect}",
                  f"  seeds for 80% power: {p.seeds_text(' per variant')}"]
        if p.compute_s is not None:
            lines.append(f"  compute: {p.compute_text()} with --jobs {jobs} (wall per run as measured in "
                         "the results, scaled to the suite's steps)")
        if p.note:
            lines.append(f"  {p.note}")
    return "\n".join(lines)


def cmd_plan_power(args, suite: Suite) -> int:
    import json

    from moebench.analysis import power

    log = (lambda msg: None) if args.json else (lambda msg: print(msg, flush=True))
    if not any(c.kind in power.POWER_MODELS for c in suite.claims):  # nothing to simulate: train no pilot
        kinds = ", ".join(sorted({c.kind for c in suite.claims})) or "none"
        print(f"suite {suite.name}: no claim of a kind with a power model (its kinds: {kinds}; with one: "
              f"{', '.join(power.POWER_MODELS.names())})")
        return 0
    rs, source = noise_results(args, suite, log)
    truncated = source.startswith("pilot")
    plans = claim_plans(suite, rs, args.jobs, power.MAX_SEEDS)
    if args.json:
        print(json.dumps({"noise_from": source, "truncated": truncated, "claims": [asdict(p) for p in plans]},
                         indent=2))
        return 0
    print(f"suite {suite.name}: power of each claim's rule at the noise of {source}"
          + (f" (a truncated pilot: {pilot_steps(suite)} of {suite.train.steps} steps, so the noise is that of a "
             f"shorter run than the suite's)" if truncated else ""))
    print(format_plans(plans, args.jobs))
    return 0
