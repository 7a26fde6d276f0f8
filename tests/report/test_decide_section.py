"""The report's "What would decide the open claims" section: the planner's figures for each INCONCLUSIVE
statistical claim, on request (`report --seeds-to-decide`) and after `run --until-decided`, never otherwise."""
from tests.synth import write_run, write_suite

from moebench.analysis import power
from moebench.analysis.power_plan import claim_plans
from moebench.analysis.resultset import load_results
from moebench.report.render import render_report, suite_claims

CLAIMS = [{"kind": "loss_better", "variant": "moe", "baseline": "dense", "metric": "val_loss", "name": "moe better"},
          {"kind": "loss_better", "variant": "dense", "baseline": "moe", "metric": "val_loss", "name": "dense better"}]


def _results(tmp_path):
    d = write_suite(tmp_path, name="decide", claims=CLAIMS, seeds=(0, 1, 2))
    # moe 0.05 better on average, seed sd about 0.05: undecided at 3 seeds, decidable with more
    for s, (a, b) in enumerate(((2.80, 2.72), (2.85, 2.83), (2.90, 2.85))):
        write_run(d, "dense", s, [4.0, 3.2, a])
        write_run(d, "moe", s, [4.0, 3.1, b])
    return d


def test_the_section_states_the_planners_seeds_for_each_open_claim(tmp_path):
    d = _results(tmp_path)
    rendered = render_report(d, tmp_path / "rep", seeds_to_decide=True)
    text = rendered.readme.read_text()
    assert {v.name: v.verdict for v in rendered.verdicts} == {"moe better": "INCONCLUSIVE",
                                                                 "dense better": "INCONCLUSIVE"}
    assert "## What would decide the open claims" in text
    rs = load_results(d)
    plans = {p.claim: p for p in claim_plans(suite_claims(rs), rs)}
    moe = plans["moe better"]
    assert moe.seeds is not None and 3 < moe.seeds <= power.MAX_SEEDS
    model = power.claim_power(suite_claims(rs)[0], rs)
    assert model.pass_rate(model.tested, moe.seeds) >= 0.8 > model.pass_rate(model.tested, moe.seeds - 1)
    section = text.split("## What would decide the open claims")[1].splitlines()
    row = next(line for line in section if line.startswith("| moe better |"))
    assert f"| {moe.seeds} ({moe.runs} runs) |" in row
    # the wrong-signed claim: no number of seeds, said so
    row = next(line for line in section if line.startswith("| dense better |"))
    assert "no number of seeds gives its rule 80% power to PASS" in row


def test_no_section_unless_asked_or_after_until_decided(tmp_path):
    d = _results(tmp_path)
    assert "What would decide" not in render_report(d, tmp_path / "rep").readme.read_text()
