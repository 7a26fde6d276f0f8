"""What each CLI command does, as functions of parsed arguments; the pipeline reads top to bottom:
suite -> plan -> runs -> results -> report."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from moebench.config.suite import Suite, load_suite
from moebench.errors import UserError
from moebench import io as R
from moebench.io import REPORTS_ROOT, SIDEBYSIDE
from moebench.plan import plan_suite

from .checks import memory_check, runs_at_once

PLAN_COLUMNS = ("name", "kind", "params_total", "params_active", "params_embedding", "train_flops_per_token",
                "forward_flops_per_token", "matched_to", "flop_ratio")
# a sweep's grid: every variant at every size, with each size's token budget and total training FLOPs
SWEEP_COLUMNS = ("size", "name", "kind", "params_total", "params_active", "train_flops_per_token", "flop_ratio",
                 "steps", "tokens", "train_flops")


def human(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and abs(x) < 10:
        return f"{x:.3f}"
    if isinstance(x, (int, float)):
        for unit, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(x) >= div:
                return f"{x / div:.2f}{unit}"
        return str(int(x))
    return str(x)


def format_table(rows: list[dict], columns) -> str:
    cells = [[human(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def suite_from_args(args) -> Suite:
    """The suite a `run` / `plan` command line asks for (file, --preset, --set, --track), on every rank alike."""
    import dataclasses

    suite = load_suite(args.suite, args.overrides, args.preset)
    extra = [t for t in getattr(args, "track", None) or [] if t not in suite.track]
    if not extra:
        return suite
    track = suite.track + tuple(dict.fromkeys(extra))
    return dataclasses.replace(suite, track=track, raw={**suite.raw, "track": list(track)})


def plan_table(plan) -> str:
    """The plan's rows as a table; a sweep's grid (variants x sizes) with each size's budget and FLOPs."""
    if plan.suite.sweep is None:
        return format_table([r.to_dict() for r in plan.rows], PLAN_COLUMNS)
    per_step = plan.suite.train.batch_size * plan.suite.corpus.seq_len
    rows = [{**r.to_dict(), "tokens": r.steps * per_step,
             "train_flops": r.train_flops_per_token * r.steps * per_step} for r in plan.rows]
    return format_table(rows, SWEEP_COLUMNS)


def solved_lines(plan) -> list[str]:
    """The widths the plan solved from `auto` (expert_d_ff, d_ff), one line per variant that had one."""
    return [f"  {r.key}: solved " + ", ".join(f"{k} = {v}" for k, v in r.solved.items()) for r in plan.rows
            if r.solved]


def cmd_plan(args) -> int:
    suite = suite_from_args(args)
    if args.pilot is not None and not args.power:
        raise UserError("--pilot: only with --power (it names the results the power plan takes its noise from)")
    plan = plan_suite(suite, memory_check(args, suite))
    if args.power:  # the one plan mode that may import torch and train (a pilot): loaded only here
        from moebench.cli.power import cmd_plan_power

        return cmd_plan_power(args, plan.suite)
    rows = [r.to_dict() for r in plan.rows]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    s = plan.suite
    grid = (f"{len(s.variants)} variants x {len(s.sizes)} sizes x {len(s.train.seeds)} seeds = "
            f"{len(rows) * len(s.train.seeds)} runs" if s.sweep is not None
            else f"{len(rows)} variants x {len(s.train.seeds)} seeds")
    print(f"suite {s.name}: {grid}, vocab {plan.vocab_size}, seq_len {s.corpus.seq_len}")
    print(plan_table(plan))
    for line in solved_lines(plan):
        print(line)
    return 0


EXIT_RUNS_FAILED = 3  # the suite ran, but at least one run failed (NaN loss, a crashed rank): see the report


def cmd_run(args) -> int:
    """Every check that can fail runs before anything on disk changes: the suite validated and planned (devices
    and backends included, and its memory estimate against the machine's), trackers installed, the results and
    reports directories writable, the token caches built and checked, no finished run of another config in the way; then, holding results/<suite>/.lock, the
    runs (one after another, --jobs at once, a --shard, or on Ray)."""
    from moebench.cli import rounds
    from moebench.distributed.groups import is_distributed, teardown
    from moebench.plan import run_specs
    from moebench.runs.finish import finish_runs
    from moebench.runs.lock import suite_lock
    from moebench.runs.rundirs import check_reruns, check_writable
    from moebench.runs.runner import DataCache, run_plan
    from moebench.training.trackers import check_trackers

    suite = suite_from_args(args)
    design = rounds.check_flags(args, suite)  # --until-decided / --budget / --max-seeds: its design, or None
    check_trackers(suite.track)  # an unknown or uninstalled tracker fails here, before anything is written
    if args.only:
        unknown = [v for v in args.only if v not in suite.variants]
        if unknown:
            raise UserError(f"--only: no variant named {', '.join(map(repr, unknown))}; "
                            f"the suite has {', '.join(suite.variants)}")
    plan = plan_suite(suite, memory_check(args, suite, *runs_at_once(args, suite)))
    reports = (args.reports or Path(suite.report.out))
    check_writable(args.results, "--results")
    check_writable(reports, "--reports")
    if not args.shard:  # the report folder must be new or a report's: found out now, not after training
        from moebench.report.render import check_report_dir

        check_report_dir(R.safe_join(reports, suite.name, what="name"))
    specs = run_specs(plan, args.only)
    check_reruns(specs, args.results, args.force)
    if design is not None:  # every seed a round may add: a finished run of another config fails here, not later
        check_reruns(rounds.all_specs(plan, design), args.results, args.force)
    data = DataCache()
    for spec in specs:  # builds (or rebuilds, saying so) and checks the token caches; a bad seq_len fails here
        data(spec)
    log = (lambda *a, **k: None) if args.quiet else (lambda msg: print(msg, flush=True))
    log(plan_table(plan))
    for line in solved_lines(plan):
        log(line)
    t0 = time.time()
    rendered = None
    with suite_lock(args.results / suite.name, wait=getattr(args, "wait", False), log=log):
        if is_distributed():  # [distributed] every rank trains every run together
            outcomes = run_plan(plan, args.results, force=args.force, only=args.only, quiet=args.quiet, log=log,
                                data=data)
        elif design is not None:  # rounds of seeds, a look after each (cli/rounds.py)
            outcomes, plan, _ = rounds.train_until_decided(plan, args, log, data, design, train_runs)
            specs = run_specs(plan)
        else:
            outcomes = train_runs(plan, args, log, data)
        teardown()  # [distributed] every rank is done training: post-training work runs here alone
        finish_runs([o.spec for o in outcomes], args.results, log)
        stale_timing = args.results / suite.name / SIDEBYSIDE
        asked = getattr(args, "sidebyside", False)
        if asked or any(c.kind == "throughput_ratio" for c in suite.claims):
            # asked for (--sidebyside): the full pass; for a throughput_ratio claim alone: a share of the wall
            sidebyside(specs, [o for o in outcomes if not o.failed and o.status != "crashed"],
                       args.results / suite.name, log, None if asked else time.time() - t0)
        elif stale_timing.exists() and any(o.status in ("ok", "failed") for o in outcomes):
            stale_timing.unlink()  # it timed models that were just retrained: no longer theirs
            log(f"removed {stale_timing}: runs were retrained (rerun with --sidebyside to time them)")
        failed = [o for o in outcomes if o.failed]
        crashed = [o for o in outcomes if o.status == "crashed"]
        log(f"suite {suite.name}: {len(outcomes)} runs ({len(failed) + len(crashed)} failed) in "
            f"{time.time() - t0:.0f} s; results in {args.results / suite.name}")
        for o in failed:  # on stderr even with --quiet: the exit status alone does not say which
            f = o.summary.get("failure") or {}
            print(f"moebench: FAILED {o.spec.key} seed {o.spec.seed} at step {f.get('step', '?')}: "
                  f"{f.get('reason', '?')}", file=sys.stderr, flush=True)
        if args.shard:
            print(f"shard {args.shard} done; run `moebench report {args.results / suite.name}` when all shards "
                  "finished", flush=True)
        else:
            rendered = write_report(args.results / suite.name, R.safe_join(reports, suite.name, what="name"))
    if rendered:  # the verdicts are what the suite was run for: printed even with --quiet
        print(console_claims(rendered.verdicts), flush=True)
        if rendered.sequential:
            print(rendered.sequential, flush=True)
        print(f"report: {rendered.readme}", flush=True)
    if crashed:  # a worker process died mid-run (killed, out of memory, a native crash): not the user's error
        print(f"moebench: error: {', '.join(f'{o.spec.key} seed {o.spec.seed}' for o in crashed)}: the worker "
              "process died; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 1
    return EXIT_RUNS_FAILED if failed else 0


def sidebyside(specs, ok, suite_dir: Path, log, suite_wall_s: float | None = None) -> None:
    """Time the finished variants' training steps interleaved (runs/sidebyside.py) into sidebyside.json: the full
    pass, or with `suite_wall_s` at most a small share of that wall (sidebyside.budget_s)."""
    from moebench.runs import sidebyside as sbs

    done = {o.spec.variant for o in ok}
    budget = sbs.MAX_SECONDS if suite_wall_s is None else sbs.budget_s(suite_wall_s)
    log(f"timing training steps side by side (interleaved, one process; up to {budget:.0f} s)")
    rec = sbs.measure([s for s in specs if s.variant in done], suite_dir.parent, max_seconds=budget, log=log)
    if rec is not None:
        log(f"side-by-side timing: {rec['rounds']} rounds -> {sbs.write(suite_dir, rec)}")
    elif (suite_dir / SIDEBYSIDE).exists():  # an older timing must not stand for these runs
        (suite_dir / SIDEBYSIDE).unlink()


def train_runs(plan, args, log, data=None) -> list:
    """The runs this invocation owns (--only, --shard), one after another, --jobs at once, or on Ray."""
    from moebench.plan import parse_shard, run_specs
    from moebench.runs.runner import prepare_suite_dir

    specs = run_specs(plan, args.only)
    if args.shard:
        shard = parse_shard(args.shard)
        R.atomic_write_json(args.results / plan.suite.name / R.PLANNED_RUNS,  # every shard: the same content
                            {"runs": [{"variant": s.key, "seed": s.seed} for s in specs]})
        specs = shard.select(specs)
        log(f"shard {shard}: {len(specs)} of the suite's runs")
    prepare_suite_dir(plan, args.results)  # every shard writes the same suite.yaml / plan.json, atomically
    if args.launcher == "ray":
        from moebench.runs.ray_pool import run_ray

        return run_ray(specs, args.results, address=args.address, force=args.force, log=log, quiet=args.quiet)
    from moebench.runs import pool

    workers = pool.workers_for(specs[0], args.jobs or 1) if specs else None
    if args.jobs == "auto" and workers:
        log(f"--jobs auto: {workers.jobs} at once")
    if workers is None or workers.jobs == 1 or len(specs) == 1:
        return pool.run_sequential(specs, args.results, force=args.force, quiet=args.quiet, log=log, data=data)
    log(f"training {len(specs)} runs, up to {workers.jobs} at once")
    return pool.run_pool(specs, args.results, workers, force=args.force, quiet=args.quiet, log=log)


def write_report(results_dir: Path, out_dir: Path, seeds_to_decide: bool | None = None):
    from moebench.report.render import render_report

    return render_report(results_dir, out_dir, seeds_to_decide)


def console_claims(verdicts) -> str:
    from moebench.report.render import console_claims as table

    return table(verdicts)


def report_dir(results_dir: Path) -> Path:
    """reports/<name>/ under the current directory, `name` the results' suite.yaml name: a name that is not one
    plain folder name (absolute, '..', a separator: a hand-edited file) is refused, never followed."""
    path = results_dir / "suite.yaml"
    suite = R.read_suite(results_dir)
    return R.safe_join(Path(REPORTS_ROOT), suite.get("name", results_dir.resolve().name),
                       what=f"{path}: name (pass --out to choose the report folder)")


def cmd_report(args) -> int:
    if not (args.results_dir / "suite.yaml").exists():
        raise UserError(f"{args.results_dir}: not a suite results directory (no suite.yaml); "
                        "pass results/<suite>/")
    rendered = write_report(args.results_dir, args.out or report_dir(args.results_dir), args.seeds_to_decide)
    for problem in rendered.damaged_files:  # in the report's "Damaged files" section, and said here
        print(f"moebench: {problem}; named in the report", file=sys.stderr, flush=True)
    print(console_claims(rendered.verdicts))
    if rendered.sequential:  # the rounds of a `run --until-decided`
        print(rendered.sequential)
    print(f"report: {rendered.readme}")
    return 0
