"""The README's first command (`moebench suites/quickstart.yaml`, default output paths) changes no tracked file:
its results and reports land in git-ignored folders, never in evidence/, the project's committed reports."""
import subprocess
from pathlib import Path

from moebench.cli import build_parser
from moebench.config.suite import load_suite
from moebench.io import EVIDENCE_ROOT, REPORTS_ROOT, RESULTS_ROOT

REPO = Path(__file__).resolve().parents[1]


def git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def ignored(path: str) -> bool:
    return git("check-ignore", "-q", "--no-index", path).returncode == 0


def test_quickstart_defaults_write_only_ignored_paths():
    args = build_parser().parse_args(["run", str(REPO / "suites/quickstart.yaml")])
    suite = load_suite(args.suite, args.overrides, args.preset)
    reports = Path(args.reports or suite.report.out)
    assert (args.results, reports) == (Path(RESULTS_ROOT), Path(REPORTS_ROOT))
    assert reports != Path(EVIDENCE_ROOT)
    # what the run writes, as paths relative to the checkout (the README runs it from the root)
    for written in (f"{args.results}/quickstart/dense/seed-0/summary.json", f"{reports}/quickstart/README.md",
                    f"{reports}/quickstart/plots/speedup.png", f"{reports}/kernels/cpu.md"):
        assert ignored(written), f"{written} is not git-ignored"
    report_default = build_parser().parse_args(["report", "results/quickstart"]).out
    assert report_default is None  # cmd_report then uses REPORTS_ROOT/<suite>


def test_no_tracked_file_lives_where_a_run_writes():
    tracked = git("ls-files", "--", RESULTS_ROOT, REPORTS_ROOT).stdout.split()
    assert tracked == [f"{REPORTS_ROOT}/README.md", f"{RESULTS_ROOT}/README.md"]
    evidence = git("ls-files", "--", EVIDENCE_ROOT).stdout.split()
    assert f"{EVIDENCE_ROOT}/quickstart/README.md" in evidence
    assert not ignored(f"{EVIDENCE_ROOT}/quickstart/README.md")
