"""What each CLI command does, as functions of parsed arguments; the pipeline reads top to bottom:
suite -> plan -> runs -> results -> report."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from moebench.config.suite import Suite, load_suite
from moebench.errors import UserError
from moebench.io import SIDEBYSIDE
from moebench.plan import plan_suite

PLAN_COLUMNS = ("name", "kind", "params_total", "params_active", "params_embedding", "train_flops_per_token",
                "forward_flops_per_token", "matched_to", "flop_ratio")


def human(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and abs(x) < 10:
        return f"{x:.3f}"
    if isinstance(x, (int, float)):
        for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
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
    """The suite a `run` / `plan` command line asks for (file, --preset, --set), on every rank alike."""
    return load_suite(args.suite, args.overrides, args.preset)


def cmd_plan(args) -> int:
    plan = plan_suite(suite_from_args(args))
    rows = [r.to_dict() for r in plan.rows]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"suite {plan.suite.name}: {len(rows)} variants x {len(plan.suite.train.seeds)} seeds, "
              f"vocab {plan.vocab_size}, seq_len {plan.suite.corpus.seq_len}")
        print(format_table(rows, PLAN_COLUMNS))
        for r in plan.rows:
            if r.solved:
                print(f"  {r.name}: solved " + ", ".join(f"{k} = {v}" for k, v in r.solved.items()))
    return 0


EXIT_RUNS_FAILED = 3  # the suite ran, but at least one run failed (NaN loss, a crashed rank): see the report


def cmd_run(args) -> int:
    """Every check that can fail runs before anything on disk changes: the suite validated and planned (devices
    and backends included), the results and reports directories writable, the token caches built and checked,
    no finished run of another config in the way; then, holding results/<suite>/.lock, the runs."""
    from moebench.distributed.env import teardown
    from moebench.plan import run_specs
    from moebench.training.finish import finish_runs
    from moebench.training.lock import suite_lock
    from moebench.training.rundirs import check_reruns, check_writable
    from moebench.training.runner import DataCache, run_plan

    suite = suite_from_args(args)
    if args.only:
        unknown = [v for v in args.only if v not in suite.variants]
        if unknown:
            raise UserError(f"--only: no variant named {', '.join(map(repr, unknown))}; "
                            f"the suite has {', '.join(suite.variants)}")
    plan = plan_suite(suite)
    reports = (args.reports or Path(suite.report.out))
    check_writable(args.results, "--results")
    check_writable(reports, "--reports")
    specs = run_specs(plan, args.only)
    check_reruns(specs, args.results, args.force)
    data = DataCache()
    for spec in specs:  # builds (or rebuilds, saying so) and checks the token caches; a bad seq_len fails here
        data(spec)
    log = (lambda *a, **k: None) if args.quiet else (lambda msg: print(msg, flush=True))
    log(format_table([r.to_dict() for r in plan.rows], PLAN_COLUMNS))
    t0 = time.time()
    with suite_lock(args.results / suite.name, wait=getattr(args, "wait", False), log=log):
        outcomes = run_plan(plan, args.results, force=args.force, only=args.only, quiet=args.quiet, log=log,
                            data=data)
        teardown()  # [distributed] every rank is done training: post-training work runs here alone
        finish_runs([o.spec for o in outcomes], args.results, log)
        stale_timing = args.results / suite.name / SIDEBYSIDE
        if getattr(args, "sidebyside", False) or any(c.kind == "throughput_ratio" for c in suite.claims):
            sidebyside(specs, [o for o in outcomes if not o.failed], args.results / suite.name, log)
        elif stale_timing.exists() and any(o.status in ("ok", "failed") for o in outcomes):
            stale_timing.unlink()  # it timed models that were just retrained: no longer theirs
            log(f"removed {stale_timing}: runs were retrained (rerun with --sidebyside to time them)")
        failed = [o for o in outcomes if o.failed]
        log(f"suite {suite.name}: {len(outcomes)} runs ({len(failed)} failed) in {time.time() - t0:.0f} s; "
            f"results in {args.results / suite.name}")
        for o in failed:  # on stderr even with --quiet: the exit status alone does not say which
            f = o.summary.get("failure") or {}
            print(f"moebench: FAILED {o.spec.variant} seed {o.spec.seed} at step {f.get('step', '?')}: "
                  f"{f.get('reason', '?')}", file=sys.stderr, flush=True)
        out = write_report(args.results / suite.name, reports / suite.name)
    if out:
        log(f"report: {out}")
    return EXIT_RUNS_FAILED if failed else 0


def sidebyside(specs, ok, suite_dir: Path, log) -> None:
    """Time the finished variants' training steps interleaved (training/sidebyside.py) into sidebyside.json."""
    from moebench.training import sidebyside as sbs

    done = {o.spec.variant for o in ok}
    log("timing training steps side by side (interleaved, one process)")
    rec = sbs.measure([s for s in specs if s.variant in done], suite_dir.parent, log=log)
    if rec is not None:
        log(f"side-by-side timing: {rec['rounds']} rounds -> {sbs.write(suite_dir, rec)}")
    elif (suite_dir / SIDEBYSIDE).exists():  # an older timing must not stand for these runs
        (suite_dir / SIDEBYSIDE).unlink()


def write_report(results_dir: Path, out_dir: Path) -> Path | None:
    from moebench.report.render import write_report as render

    return render(results_dir, out_dir)


def cmd_report(args) -> int:
    if not (args.results_dir / "suite.yaml").exists():
        raise UserError(f"{args.results_dir}: not a suite results directory (no suite.yaml); "
                        "pass results/<suite>/")
    import yaml

    try:
        name = (yaml.safe_load((args.results_dir / "suite.yaml").read_text()) or {}).get("name", args.results_dir.name)
    except (OSError, yaml.YAMLError, AttributeError):
        raise UserError(f"{args.results_dir / 'suite.yaml'}: unreadable; rerun `moebench run` on the suite to "
                        "rewrite it") from None
    out = write_report(args.results_dir, args.out or Path("reports") / name)
    print(f"report: {out}")
    return 0


def cmd_eval(args) -> int:
    from moebench import io as R
    from moebench.evals.harness import run_lm_eval

    res = run_lm_eval(args.run_dir, args.tasks, args.limit)
    summary_path = args.run_dir / R.SUMMARY
    if summary_path.exists():
        summary = R.read_json(summary_path)
        summary.setdefault("lm_eval", {}).update(res)
        R.atomic_write_json(summary_path, summary)
    print(json.dumps(res, indent=2))
    return 0


def cmd_compare(args) -> int:
    from moebench.report.compare import compare

    print(compare(args.a, args.b))
    return 0


def cmd_bench(args) -> int:
    import re

    import torch

    from moebench.training.env import device_name
    from moebench.kernels.bench import format_table as kernel_table, run_kernel_bench
    from moebench.io import atomic_write_text

    rows = run_kernel_bench()
    table = kernel_table(rows)
    print(json.dumps(rows, indent=2) if args.json else table)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = device_name(device)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name() if device.type == "cuda" else "cpu").strip("-")
    out = Path(args.out) / f"{slug}.md"
    atomic_write_text(out, f"# MoE kernel benchmark: {name}\n\n{table}\n")
    print(f"saved: {out}", file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from moebench.analysis import check
    from moebench import io as R

    tol = check.parse_tolerances(args.tolerance)
    if args.ab:
        from moebench.analysis.ab import AB_TOLERANCE, ab_compare

        ok, table = ab_compare(args.results_dir, args.ab, probes=args.probes,
                               tolerance=tol.get("ab_throughput", AB_TOLERANCE))
        print(table)
        return 0 if ok else 1
    if args.update_baseline:
        path = args.update_baseline
        old = None
        if path.exists():
            try:
                old = check.load_baseline(path)
            except UserError:
                old = None  # a malformed old baseline is what --update-baseline is for
        new = check.build_baseline(args.results_dir, old)
        if tol:
            new["tolerance"] = {**new["tolerance"], **tol}
        R.atomic_write_json(path, new)
        print(check.describe_update(old, new))
        print(f"baseline written: {path}")
        return 0
    ok, table, _ = check.compare_to_baseline(args.results_dir, check.load_baseline(args.baseline), tol)
    print(table)
    return 0 if ok else 1
