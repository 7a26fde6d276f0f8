"""`moebench run SUITE --until-decided` on a real seconds-long suite: rounds of seeds, the record, the stop reason,
the report's section, and a second invocation that resumes without retraining a finished run."""
from __future__ import annotations

import re

import pytest
import yaml

from moebench import io as R
from moebench.analysis import sequential as S
from moebench.cli import main
from moebench.cli.rounds import judge, parse_duration, round_estimate_s, seeds_for
from tests.helpers import tiny

# two variants with the same config: the same seed trains the same model, so their difference is exactly 0 and
# the claim stays undecided at every look (p = 0.5); min_tokens_per_param 0 keeps the tiny runs out of the gate
SAME = {"dense": {}, "twin": {}}
UNDECIDED = {"name": "twin beats dense", "kind": "loss_better", "variant": "twin", "baseline": "dense",
             "min_tokens_per_param": 0}


def write_suite(tmp_path, claim: dict):
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(tiny(**{"variants": SAME, "train.seeds": [0, 1], "train.steps": 8,
                                        "eval.interval": 4, "claims": [claim]})))
    return p


def test_rounds_until_max_seeds_then_a_rerun_resumes(tmp_path, capsys):
    suite = write_suite(tmp_path, UNDECIDED)
    args = ["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
            "--until-decided", "--max-seeds", "3", "--budget", "2h"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "--until-decided: round 1 of at most 2: 2 seeds per variant (0, 1)" in out
    assert re.search(r"^--until-decided: round 2 of at most 2: 3 seeds per variant \(0, 1, 2; 2 new runs, about "
                     r"\d+ s of the \d+ s left\)$", out, re.M)
    assert "--until-decided: 2 round(s), 3 seeds per variant (seeds 0, 1, 2); stopped: max seeds" in out
    res = tmp_path / "res" / "tiny"
    rec = S.read_record(res)
    assert rec.stop == S.MAX_SEEDS and rec.looks_planned == (2, 3) and rec.seeds == (0, 1, 2)
    assert [lk.seeds for lk in rec.looks] == [2, 3] and rec.budget_s == 7200
    (state,) = rec.final
    assert state.state == S.CONTINUE and state.p == pytest.approx(0.5)
    assert rec.looks[-1].nominal_p == pytest.approx(S.Design((2, 3)).nominal(1)) and rec.looks[-1].nominal_p < 0.025
    assert R.read_suite(res)["train"]["seeds"] == [0, 1, 2]  # the results folder names every seed it holds
    for v in SAME:
        assert sorted(p.name for p in (res / v).iterdir()) == ["seed-0", "seed-1", "seed-2"]
    readme = (tmp_path / "rep" / "tiny" / "README.md").read_text()
    assert "## Sequential decision (--until-decided)" in readme
    assert "stopped: max seeds (3 per variant) reached" in readme
    summaries = {p: p.read_text() for p in res.glob("*/seed-*/summary.json")}
    # a look judges its own seeds only, also when the folder already holds later ones (a rerun's round 1)
    assert [v.numbers["n"] for v in judge(res, [0, 1])] == [[2, 2]]
    assert [v.numbers["n"] for v in judge(res, [0, 1, 2])] == [[3, 3]]

    assert main(args) == 0  # again: every run is finished, the same looks give the same record
    out = capsys.readouterr().out
    # round 1 skips its 4 runs, round 2 the 2 it adds; nothing trains
    assert out.count("already finished with this config, skipped") == 4 + 2 and ": training" not in out
    assert {p: p.read_text() for p in res.glob("*/seed-*/summary.json")} == summaries
    again = S.read_record(res)
    assert again.looks == rec.looks and again.final == rec.final
    assert main(["report", str(res), "--out", str(tmp_path / "rep2")]) == 0  # report alone reads the record
    assert "stopped: max seeds" in capsys.readouterr().out

    # a plain run adds a seed afterwards: the record no longer describes the runs, so it is not applied (its
    # boundary was spent on other data) and the report and console say so
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep3"),
                 "--set", "train.seeds=[0, 1, 2, 3]"]) == 0
    out = capsys.readouterr().out
    assert "sequential.json not applied: its last look used seeds 0, 1, 2 of every variant" in out
    readme = (tmp_path / "rep3" / "tiny" / "README.md").read_text()
    assert "## Sequential decision" not in readme and "sequential.json not applied" in readme


def test_a_gate_stops_the_rounds(tmp_path, capsys):
    gated = {**UNDECIDED, "min_tokens_per_param": 1000}  # tiny runs see far fewer tokens per parameter
    suite = write_suite(tmp_path, gated)
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                 "--until-decided", "--max-seeds", "3", "--quiet"]) == 0
    rec = S.read_record(tmp_path / "res" / "tiny")
    assert rec.stop == S.GATE and len(rec.looks) == 1 and rec.final[0].why.startswith("gate")
    assert not (tmp_path / "res" / "tiny" / "dense" / "seed-2").exists()


@pytest.mark.parametrize("flags, message", [
    (["--budget", "2h"], "--budget: only with --until-decided"),
    (["--until-decided", "--budget", "soon"], "--budget: not a duration"),
    (["--until-decided", "--max-seeds", "1"], "--max-seeds 1: below the 2 seeds"),
    (["--until-decided", "--only", "dense"], "--until-decided: not with --only"),
])
def test_bad_flags_are_one_line_errors_before_anything_is_written(tmp_path, capsys, flags, message):
    suite = write_suite(tmp_path, UNDECIDED)
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_durations_seeds_and_round_estimates():
    assert [parse_duration(t) for t in ("30m", "2h", "5400s", "1h30m", "90")] == [1800, 7200, 5400, 5400, 90]
    with pytest.raises(ValueError):
        parse_duration("2 weeks")
    assert seeds_for([3, 7], 5) == [3, 7, 8, 9, 10]

    class O:
        def __init__(self, wall):
            self.status, self.summary = "ok", {"wall_time_s": wall}

    assert round_estimate_s([O(10), O(20)], 4, 2) == 30  # 2 batches of 2 at once, 15 s each
    assert round_estimate_s([O(10)], 3, None) == 30


def test_a_round_that_cannot_fit_the_budget_is_not_started(tmp_path, capsys, monkeypatch):
    from moebench.cli import rounds

    # round 2's estimate is made longer than any budget: with warm caches round 1 of this tiny suite can finish
    # inside the 1 s budget and then round 2 would fit (the wall clock must not decide what the test checks)
    monkeypatch.setattr(rounds, "round_estimate_s", lambda outcomes, new, jobs: 3600.0)
    suite = write_suite(tmp_path, UNDECIDED)
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                 "--until-decided", "--max-seeds", "3", "--budget", "1s", "--quiet"]) == 0
    rec = S.read_record(tmp_path / "res" / "tiny")
    # round 1 always runs; round 2 (2 new runs at the finished runs' mean wall time) does not fit in what is left
    assert rec.stop == S.BUDGET and len(rec.looks) == 1 and rec.seeds == (0, 1) and rec.budget_s == 1
    assert rec.stop_why.startswith("budget: round 2 (2 new runs, about")
    assert not (tmp_path / "res" / "tiny" / "dense" / "seed-2").exists()
    assert "stopped: budget" in capsys.readouterr().out
