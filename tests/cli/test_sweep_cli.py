"""A three-size sweep through the CLI: the plan grid, runs keyed by size, a rerun that skips them, and the report's
scaling section and compute_multiplier verdict."""
import json

import yaml

from moebench import io as R
from moebench.analysis.resultset import load_results
from moebench.cli import main
from tests.helpers import tiny_sweep

CLAIM = {"kind": "compute_multiplier", "variant": "moe", "baseline": "dense", "min": 1.0, "n_boot": 100}


def test_sweep_plan_run_skip_report(tmp_path, capsys):
    suite = tmp_path / "sweep.yaml"
    suite.write_text(yaml.safe_dump(tiny_sweep(**{"train.seeds": [0], "claims": [CLAIM]}), sort_keys=False))
    assert main(["plan", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "2 variants x 3 sizes x 1 seeds = 6 runs" in out
    grid = [line.split() for line in out.splitlines() if line.split()[:1] in (["s"], ["m"], ["l"])]
    assert [(g[0], g[1]) for g in grid] == [(s, v) for s in "sml" for v in ("dense", "moe")]
    assert "moe@l: solved expert_d_ff" in out

    args = ["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep")]
    assert main(args) == 0
    capsys.readouterr()
    for key in ("dense@s", "moe@s", "dense@m", "moe@m", "dense@l", "moe@l"):
        s = R.read_json(tmp_path / "res/tiny" / key / "seed-0" / R.SUMMARY)
        assert s["status"] == "ok" and s["size"] == key.split("@")[1]
    assert R.read_json(tmp_path / "res/tiny/dense@l/seed-0" / R.SUMMARY)["steps"] == 20
    assert main(args) == 0
    assert capsys.readouterr().out.count("already finished with this config, skipped") == 6

    rs = load_results(tmp_path / "res/tiny")
    assert sorted(rs.runs["variant"]) == sorted(["dense@l", "dense@m", "dense@s", "moe@l", "moe@m", "moe@s"])
    readme = (tmp_path / "rep/tiny/README.md").read_text()
    # 20 steps leave every size on the byte-level plateau: the section says so, and why there is no fit
    assert "## Scaling sweep: loss vs compute" in readme and "Plateau check: " in readme
    assert "left out l, m, s (reference from the runs' summary.json)" in readme
    assert "No fit: no finished runs off the plateau" in readme
    verdict = json.loads((tmp_path / "rep/tiny/verdicts.json").read_text())[0]
    assert verdict["kind"] == "compute_multiplier" and verdict["verdict"] == "INCONCLUSIVE"
    assert "finished seed(s), need 2" in verdict["reason"]  # one seed: the gate holds it, with the numbers
