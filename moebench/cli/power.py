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
from dataclasses import asdict, dataclass
from pathlib import Path

from moebench.config.suite import Suite, load_suite
from moebench.errors import UserError

PILOT_FRACTION = 0.25
PILOT_SEEDS = (0, 1)


@dataclass(frozen=True)
class ClaimPlan:
    claim: str
    kind: str
    noise: str  # "" where the kind has no power model or the results no noise
    effect: str  # the effect tested, in words
    seeds: int | None  # per compared variant for 80% power; None: more than max_seeds (or not computable)
    max_seeds: int
    runs: int | None  # seeds x compared variants (at max_seeds where seeds is None: a lower bound)
    compute_s: float | None  # runs x their wall per full-length run / jobs (a lower bound where seeds is None)
    note: str


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
            f"train.warmup_steps={min(suite.train.warmup_steps, steps // 4)}"]
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


def _wall_per_run(rs, suite: Suite, variants: list[str]) -> float | None:
    """Sum over the variants of the mean wall of one full-length run: measured wall per step x the suite's steps."""
    total = 0.0
    for v in variants:
        walls, steps = rs.seed_values(v, "wall_time_s"), rs.seed_values(v, "steps")
        per_step = [w / s for w, s in zip(walls, steps) if s and w == w]
        if not per_step:
            return None
        total += sum(per_step) / len(per_step) * suite.train.steps
    return total


def _effect_words(model, c) -> tuple[str, str]:
    """The effect tested in words, and a note when the measured effect is no better than the claim's null."""
    t = model.tested
    if c.kind == "speedup_to_loss":
        note = "" if t > c.min else f"the measured speedup does not exceed the bar {c.min:g}x"
        return f"speedup {t:.3g}x on {c.axis} (measured; the bar is {c.min:g}x)", note
    if c.kind == "loss_better":
        note = "" if t > c.margin else f"the measured improvement does not exceed the margin {c.margin:g}"
        return f"improvement {t:.3g} in {c.metric} (measured; margin {c.margin:g})", note
    if c.kind == "monotonic":
        per = "log2(x)" if c.x else "variant index"
        note = "" if t > 0 else f"the measured slope is not {c.direction}"
        return f"slope {t:.3g} per {per}, {c.direction} (measured)", note
    return f"margin +-{t:.3g} (the claim's), true difference 0", ""


def claim_plans(suite: Suite, rs, jobs: int, max_seeds: int) -> list[ClaimPlan]:
    from moebench.analysis import power

    out = []
    for c in suite.claims:
        model = power.claim_power(c, rs) if c.kind in power.POWER_MODELS else None
        if model is None:
            why = ("no power model for this kind" if c.kind not in power.POWER_MODELS
                   else "the results give no seed noise for it")
            out.append(ClaimPlan(c.label(), c.kind, "", "", None, max_seeds, None, None, why))
            continue
        effect, note = _effect_words(model, c)
        seeds = model.seeds_for_power(model.tested, max_seeds=max_seeds) if not note else None
        variants = c.compared()
        wall = _wall_per_run(rs, suite, variants)
        runs = (seeds or max_seeds) * len(variants)
        compute = (seeds or max_seeds) * wall / jobs if wall is not None else None
        noise = f"{model.noise()}; from {'+'.join(map(str, model.n_now))} seeds"
        out.append(ClaimPlan(c.label(), c.kind, noise, effect, seeds, max_seeds, runs, compute,
                             note and f"{note}: no number of seeds gives its rule 80% power to PASS"))
    return out


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def format_plans(plans: list[ClaimPlan], jobs: int) -> str:
    lines = []
    for p in plans:
        lines.append(f"claim {p.claim!r} ({p.kind})")
        if not p.noise:
            lines.append(f"  {p.note}")
            continue
        more = "" if p.seeds else "> "
        seeds = f"{more}{p.seeds or p.max_seeds} per variant ({more}{p.runs} runs)"
        lines += [f"  noise:   {p.noise}", f"  effect:  {p.effect}", f"  seeds for 80% power: {seeds}"]
        if p.compute_s is not None:
            lines.append(f"  compute: {more}{_duration(p.compute_s)} with --jobs {jobs} (wall per run as measured in "
                         f"the results, scaled to the suite's steps)")
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
