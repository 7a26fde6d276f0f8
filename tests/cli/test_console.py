"""What the console says: the claims table after `report` (and `run`, tests/cli/test_end_to_end.py), --version."""
import re
import subprocess
import sys

from moebench.cli import main
from moebench.report.render import console_claims, one_line
from tests.synth import experts_stats, write_run, write_suite

CLAIMS = [
    {"kind": "loss_better", "variant": "moe", "baseline": "dense", "metric": "val_bpb", "name": "moe is better"},
    {"kind": "load_balance", "variant": "moe", "min_entropy": 0.99, "name": "moe is balanced"},
]


def results(root):
    d = write_suite(root, name="synth", claims=CLAIMS)
    for s in (0, 1):
        write_run(d, "dense", s, [4.0, 3.5, 3.0, 2.8 + 0.01 * s])
        write_run(d, "moe", s, [3.8, 3.0, 2.7, 2.5 - 0.01 * s], experts=experts_stats(entropy=0.9))
    return d


def test_report_prints_each_verdict_with_key_number_and_reason(tmp_path, capsys):
    d = results(tmp_path)
    assert main(["report", str(d), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "claims: 1 PASS, 1 FAIL"
    better = next(x for x in lines if "moe is better" in x)
    assert re.match(r"PASS +moe is better +improvement = 0\.\d+ +val_bpb ", better)
    balanced = next(x for x in lines if "moe is balanced" in x)
    assert balanced.startswith("FAIL") and "entropy = 0.9" in balanced
    assert all(len(x) < 250 for x in lines)  # one line per claim, not the report's paragraph
    assert lines[-1] == f"report: {tmp_path / 'rep' / 'README.md'}"


def test_one_line_reason_keeps_the_first_clause_and_cuts_long_ones():
    assert one_line("gate a failed; gate b failed (numbers alone: PASS)") == "gate a failed"
    cut = one_line("x" * 300)
    assert len(cut) == 100 and cut.endswith("…")
    assert console_claims([]) == "claims: none in this suite"


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "moebench", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"moebench {version('moebench')}"


def _actions(parser, prog="moebench"):
    import argparse

    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _actions(sub, f"{prog} {name}")
        elif not isinstance(a, argparse._HelpAction):
            yield prog, a


def test_every_option_and_argument_has_help():
    from moebench.cli import build_parser

    missing = [f"{prog} {a.option_strings[0] if a.option_strings else a.dest}"
               for prog, a in _actions(build_parser()) if not a.help]
    assert missing == []
    assert sum(1 for _ in _actions(build_parser())) > 40  # every sub-command's options were walked


def test_steps_below_the_warmup_suggest_lowering_train_warmup_steps(capsys):
    from pathlib import Path

    suite = Path(__file__).resolve().parents[2] / "suites/quickstart.yaml"
    assert main(["plan", str(suite), "--set", "train.steps=30"]) == 2
    err = capsys.readouterr().err
    assert "train.warmup_steps: must be < the number of steps (got 30 >= 30)" in err
    assert "--set train.warmup_steps=3" in err


def test_source_paths_the_report_cites_exist():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    cited = {m for p in (repo / "moebench/report").glob("*.py")
             for m in re.findall(r"\bmoebench/[\w/]+\.py\b", p.read_text())}
    assert "moebench/plan/flops.py" in cited
    assert [c for c in sorted(cited) if not (repo / c).exists()] == []
