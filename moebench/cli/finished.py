"""The commands that read finished results (eval, export, publish, compare, bench, check): each imports its
library lazily, so `moebench --help` and `plan` stay light."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from moebench import io as R
from moebench.errors import UserError


def cmd_eval(args) -> int:
    """lm-eval scores of a finished run, added to its summary while holding the run's lock (training/lock.py):
    two evals of one run, or an eval and a `run --force` retraining it, never interleave their writes."""
    from moebench.evals.harness import run_lm_eval
    from moebench.runs.lock import run_lock_dir, suite_lock

    if not args.run_dir.is_dir():  # before the lock, which would create the folder
        raise UserError(f"{args.run_dir}: not a run directory (pass results/<suite>/<variant>/seed-<n>/)")
    say = lambda msg: print(f"moebench: {msg}", file=sys.stderr, flush=True)  # noqa: E731 - stdout is the JSON
    with suite_lock(run_lock_dir(args.run_dir), wait=args.wait, log=say, cmd="eval"):
        res = run_lm_eval(args.run_dir, args.tasks, args.limit)  # reads the run through evals.load.read_run
        summary_path = args.run_dir / R.SUMMARY
        if summary_path.exists():
            legacy = R.is_legacy_run(args.run_dir)
            summary = R.read_json(summary_path)
            summary.setdefault("lm_eval", {}).update(res)
            if legacy:  # a manifest now would vouch for a summary nobody checked: the run stays unverified
                R.atomic_write_json(summary_path, summary)
                say(f"{args.run_dir}: {R.LEGACY} (no {R.MANIFEST}: written before run manifests); scores added, "
                    "the run stays unverified")
            else:
                R.write_summary(args.run_dir, summary)  # and its manifest
    print(json.dumps(res, indent=2))
    return 0


def cmd_export(args) -> int:
    from moebench.evals.export import export_hf

    done = export_hf(args.run_dir, args.out)
    print(f"exported {args.run_dir} as {done.arch} to {done.out}")
    print(done.note)
    return 0


def cmd_publish(args) -> int:
    from moebench.report.publish import publish

    index = publish(args.reports_dir, args.out, docs=args.docs)
    print(f"site: {index} (open it in a browser, or serve {args.out} with GitHub Pages)")
    return 0


def cmd_compare(args) -> int:
    from moebench.report.compare import compare

    print(compare(args.a, args.b, force=args.force))
    return 0


def cmd_bench(args) -> int:
    import re

    import torch

    from moebench.io import atomic_write_text
    from moebench.models.expert_bench import format_table as kernel_table, run_kernel_bench
    from moebench.training.env import device_name

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
        if legacy := check.legacy_note(new):
            print(legacy)
        print(f"baseline written: {path}")
        return 0
    ok, table, _ = check.compare_to_baseline(args.results_dir, check.load_baseline(args.baseline), tol)
    print(table)
    return 0 if ok else 1
