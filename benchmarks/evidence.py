"""The project's committed evidence (evidence/<name>/: a report and, in results/, the results it was judged on).

    python benchmarks/evidence.py save results/NAME     # copy a finished run's results into evidence/NAME/results
                                                        # (no weights, thinned training rows), then write its report
    python benchmarks/evidence.py report [NAME ...]     # rewrite the reports from the committed results (no training)
    python benchmarks/evidence.py check [NAME ...]      # re-judge the committed results, compare with verdicts.json
    python benchmarks/evidence.py size                  # the committed results' size against the 5 MB budget
    python benchmarks/evidence.py table                 # the README's "What reproduces" rows, from verdicts.json

`report` is what to run after a claim rule changes: it re-judges every committed evidence/<name>/results with the
current code and rewrites evidence/<name>/ (README.md, report.html, verdicts.json, plots, csv), so the review shows
which published verdicts moved. CI runs the same comparison as `check` (tests/report/test_evidence.py).
Exit codes: 0 ok, 1 a verdict differs or the budget is exceeded, 2 a user error (one line).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moebench.errors import UserError  # noqa: E402
from moebench.io import EVIDENCE_ROOT, read_json  # noqa: E402
from moebench.report import evidence as E  # noqa: E402
from moebench.report.render import render_report  # noqa: E402

# the README table's order (headline claims first); folders not named here follow, by name
README_ORDER = ("switch-equal-flops-cpu", "scaling-cpu", "expert-scaling-cpu", "load-balance-cpu", "balancing-cpu",
                "capacity-factor-cpu", "router-zloss-cpu", "granularity-shared-cpu", "routing-variants-cpu",
                "inference-cpu", "flop-accounting-cpu", "quickstart")
BUDGET_BYTES = 5 * 1024 * 1024  # every evidence/<name>/results together (issue 22: at most 5 MB)


def _folders(root: Path, names: list[str]) -> list[Path]:
    folders = [root / n for n in names] if names else E.evidence_folders(root)
    for f in folders:
        if not (f / E.RESULTS / "suite.yaml").is_file():
            raise UserError(f"{f / E.RESULTS}: no committed results (save them with `python benchmarks/evidence.py "
                            "save results/NAME`)")
    return folders


def results_bytes(root: Path) -> int:
    return sum(p.stat().st_size for f in E.evidence_folders(root) for p in (f / E.RESULTS).rglob("*") if p.is_file())


def _worst_ratio(ratios) -> str:
    """flop_accounting's per-variant measured/analytic ratios: the one furthest from 1."""
    if not isinstance(ratios, dict) or not ratios:
        return ""
    worst = max(ratios, key=lambda k: abs(ratios[k] - 1))
    return f"worst {worst} {ratios[worst]:.4f}"


def table_rows(root: Path) -> list[str]:
    """One README row per committed claim: claim, paper, CPU verdict (key number), GPU verdict, report link."""
    import dataclasses

    from moebench.analysis.claims import Verdict
    from moebench.report.tables import key_number

    fields = {f.name for f in dataclasses.fields(Verdict)}
    rows = []
    order = {n: i for i, n in enumerate(README_ORDER)}
    for f in sorted(E.evidence_folders(root), key=lambda f: (order.get(f.name, len(order)), f.name)):
        for r in read_json(f / E.VERDICTS):
            v = Verdict(**{k: x for k, x in r.items() if k in fields})
            key = key_number(v) or _worst_ratio(v.numbers.get("ratio"))
            cell = f"**{v.verdict}**" + (f" ({key})" if key else "")
            name = f.name.removesuffix("-cpu")
            source = re.split(r": |; (?=[a-z])", v.source or "-")[0]  # the citation, not the quoted numbers
            source += ")" * (source.count("(") - source.count(")"))
            rows.append(f"| {v.name} | {source} | {cell} | pending (no GPU lent) | "
                        f"[{name}]({EVIDENCE_ROOT}/{f.name}/README.md) |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/evidence.py", description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO / EVIDENCE_ROOT, help="the evidence folder (default: evidence/)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save", help="copy results/NAME into evidence/NAME/results and write its report")
    s.add_argument("results_dir", type=Path)
    s.add_argument("--name", help="evidence/<name> (default: the results folder's name)")
    for cmd in ("report", "check"):
        sub.add_parser(cmd).add_argument("names", nargs="*", help="evidence/<name> folders (default: all)")
    sub.add_parser("size")
    sub.add_parser("table")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "save":
            folder = args.root / (args.name or args.results_dir.resolve().name)
            saved = E.save_results(args.results_dir, folder / E.RESULTS)
            render_report(saved.results, folder, seeds_to_decide=True)
            print(f"{folder}: {saved.runs} runs, {saved.bytes / 1024:.0f} KiB of results; report rewritten")
        elif args.cmd == "report":
            for f in _folders(args.root, args.names):
                render_report(f / E.RESULTS, f, seeds_to_decide=True)
                print(f"{f}: report rewritten from {f / E.RESULTS}")
        elif args.cmd == "check":
            bad = 0
            for f in _folders(args.root, args.names):
                diffs = E.differences(read_json(f / E.VERDICTS), E.rejudge(f / E.RESULTS))
                bad += bool(diffs)
                print(f"{f}: " + ("same verdicts" if not diffs else "\n  ".join(["differs:", *diffs])))
            return 1 if bad else 0
        elif args.cmd == "table":
            print("\n".join(table_rows(args.root)))
        if args.cmd in ("save", "size"):
            total = results_bytes(args.root)
            print(f"evidence results: {total / 1024 / 1024:.2f} MiB of {BUDGET_BYTES / 1024 / 1024:.0f} MiB")
            return 1 if total > BUDGET_BYTES else 0
    except UserError as e:
        print(f"evidence: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
