"""`moebench plan SUITE --power`: per claim the noise, the effect, the seeds for 80% power and their compute time,
from a real (tiny) run of the suite given with --pilot, or from a pilot it trains under results/<suite>/pilot/."""
import json
from pathlib import Path

import pytest

from moebench.cli import main

REPO = Path(__file__).resolve().parents[2]
SUITE = str(REPO / "suites/switch-equal-flops.yaml")
# the suite at a few seconds a run: same variants and claims, a tiny model and few steps
TINY = ["--set", "train.steps=16", "--set", "eval.interval=4", "--set", "eval.tokens=1024", "--set",
        "base.d_model=16", "--set", "base.d_ff=32", "--set", "corpus.seq_len=16", "--set", "train.warmup_steps=2"]


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    root = tmp_path_factory.mktemp("power")
    assert main(["run", SUITE, *TINY, "--set", "train.seeds=[0,1,2]", "--results", str(root / "res"),
                 "--reports", str(root / "rep"), "--quiet"]) == 0
    return root / "res/switch-equal-flops-cpu"


def test_plan_power_prints_seeds_and_time_per_claim(pilot, capsys):
    assert main(["plan", SUITE, *TINY, "--power", "--pilot", str(pilot), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    print(out)
    blocks = out.split("\nclaim ")[1:]
    assert len(blocks) == 3  # the suite's three claims
    for b in blocks:
        assert "noise:" in b and "effect:" in b and "seeds for 80% power:" in b
        seeds = b.split("seeds for 80% power: ")[1].split("\n")[0]
        assert "per variant (" in seeds and seeds.split()[0] in {">", *map(str, range(2, 65))}
        assert "compute: " in b and "with --jobs 2" in b  # a lower bound ("> ...") beyond 64 seeds
    assert "val_bpb seed sd" in out and "per-seed log time to target (steps) sd" in out


def test_plan_power_json_names_its_noise_source(pilot, capsys):
    assert main(["plan", SUITE, *TINY, "--power", "--pilot", str(pilot), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["truncated"] is False and got["noise_from"] == f"--pilot {pilot}"
    assert [c["kind"] for c in got["claims"]] == ["speedup_to_loss", "speedup_to_loss", "loss_better"]


def test_seeds_and_compute_time_follow_the_power_model():
    """Known seeds: switch8 0.10 better than dense in val_bpb at seed sds 0.05 and 0.08, 3 seeds each, 2 s per
    step over 100 steps; the suite trains train.steps steps, so a run takes 2 s x those."""
    from moebench.analysis import power
    from moebench.cli.power import claim_plans
    from moebench.config.suite import load_suite
    from tests.synth import memory_results, run_record

    recs = [run_record("s", v, s, [2.0, 1.9], every=50, wall_per_step=2.0, final={"val_bpb": m + sd * z})
            for v, m, sd in (("switch8", 2.90, 0.05), ("dense", 3.00, 0.08)) for s, z in enumerate((-1, 0, 1))]
    suite = load_suite(Path(SUITE))
    lb = next(p for p in claim_plans(suite, memory_results(recs), 2, 64) if p.kind == "loss_better")
    spec = next(c for c in suite.claims if c.kind == "loss_better")
    model = power.claim_power(spec, memory_results(recs))
    assert model.tested == pytest.approx(0.10)
    n = lb.seeds
    assert n is not None and model.pass_rate(0.10, n) >= 0.8 > model.pass_rate(0.10, n - 1)
    run_s = 2.0 * suite.train.steps
    assert lb.runs == 2 * n and lb.compute_s == pytest.approx(n * 2 * run_s / 2)
    assert "val_bpb seed sd 0.05 (variant) and 0.08 (baseline)" in lb.noise and lb.noise.endswith("from 3+3 seeds")


def test_plan_power_trains_a_pilot_only_under_results_suite_pilot(tmp_path, capsys):
    res = tmp_path / "res"
    assert main(["plan", SUITE, *TINY, "--power", "--results", str(res)]) == 0
    out = capsys.readouterr().out
    assert "truncated pilot: 4 of 16 steps" in out and "seeds for 80% power" in out
    written = {p.relative_to(res).parts[:2] for p in res.rglob("*") if p.is_file()}
    assert written == {("switch-equal-flops-cpu", "pilot")}
    assert sorted(p.name for p in (res / "switch-equal-flops-cpu/pilot/switch-equal-flops-cpu").iterdir()
                  if p.is_dir() and not p.name.startswith(".")) == ["dense", "switch8"]


def test_plan_power_refuses_a_pilot_of_another_suite_or_without_power(tmp_path, pilot, capsys):
    assert main(["plan", SUITE, "--pilot", str(pilot)]) == 2
    assert "--pilot: only with --power" in capsys.readouterr().err
    assert main(["plan", SUITE, "--power", "--pilot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no suite.yaml" in err[0]


def test_the_pilot_keeps_a_warmup_fraction():
    # a suite with train.warmup_fraction (scaling.yaml): the pilot's shorter runs warm up for the same share of
    # their steps, rather than being refused for setting warmup_steps beside it
    from types import SimpleNamespace

    from moebench.cli.power import _pilot_suite, pilot_steps
    from moebench.config.suite import load_suite

    path = str(REPO / "suites/scaling.yaml")
    suite = load_suite(path, [], None)
    pilot = _pilot_suite(SimpleNamespace(suite=path, overrides=[], preset=None), suite)
    assert suite.train.warmup_fraction == pilot.train.warmup_fraction == 0.05
    assert pilot.train.warmup_steps == 0 and pilot.train.steps == pilot_steps(suite)
