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


def test_a_sweep_under_jobs_2_keeps_its_sizes_apart(tmp_path, capsys):
    # the same (variant, seed) at every size: the scheduler keys runs by (variant@size, seed), so each run's
    # outcome carries its own summary (run --until-decided's round estimate reads its wall time), its summary
    # gets what ran beside it, its progress names the size, and a finished run of another config is refused
    from moebench.config.suite import load_suite
    from moebench.plan import plan_suite, run_specs
    from moebench.runs import pool

    suite = tmp_path / "sweep.yaml"
    suite.write_text(yaml.safe_dump(tiny_sweep(**{"train.seeds": [0], "train.threads": 1}), sort_keys=False))
    specs = run_specs(plan_suite(load_suite(str(suite), [], None)))
    logged = []
    outcomes = pool.run_pool(specs, tmp_path / "res", pool.workers_for(specs[0], 2), force=False, quiet=False,
                             log=logged.append)
    assert [o.spec.ident for o in outcomes] == [s.ident for s in specs] and len(specs) == 6
    for o in outcomes:
        assert o.status == "ok" and o.summary["size"] == o.spec.size and o.summary["wall_time_s"] > 0
        on_disk = R.read_json(tmp_path / "res/tiny" / o.spec.key / "seed-0" / R.SUMMARY)
        assert on_disk["concurrent_runs"]["jobs"] == 2, o.spec.key
    assert any("moe@l seed 0" in line for line in logged), logged

    code = main(["run", str(suite), "--set", "train.lr=0.001", "--results", str(tmp_path / "res"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "6 finished run(s) were trained with another config" in err and "dense@s/seed-0" in err
