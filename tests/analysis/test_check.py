"""moebench check: synthetic results against a baseline (exit 0 / 1 / 2, the table), --update-baseline, and
one end-to-end run of a deliberately slowed MoE path (benchmarks/slow_moe.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moebench import io as R
from moebench.analysis.check import build_baseline, compare_to_baseline
from moebench.cli import main
from tests.helpers import tiny

REPO = Path(__file__).resolve().parents[2]
BASE = {"dense": dict(tps=[10000, 10400], mem=[100e6, 100e6], loss=[1.50, 1.52]),
        "moe": dict(tps=[7000, 7200], mem=[150e6, 150e6], loss=[1.48, 1.50])}


def write_results(root: Path, scale=None, suite="syn") -> Path:
    """results/<suite>/ with one summary.json per (variant, seed); scale: {(variant, field): factor}."""
    scale = scale or {}
    d = root / suite
    R.atomic_write_text(d / "suite.yaml", yaml.safe_dump({"name": suite, "variants": {"dense": {}, "moe": {}}}))
    for v, figs in BASE.items():
        for seed in (0, 1):
            f = {k: figs[k][seed] * scale.get((v, k), 1.0) for k in figs}
            R.atomic_write_json(R.run_dir(root, suite, v, seed) / R.SUMMARY, {
                "suite": suite, "variant": v, "seed": seed, "status": "ok", "kind": "dense" if v == "dense" else "moe",
                "matched_to": None if v == "dense" else "dense", "tokens_per_s_median": f["tps"],
                "peak_memory_bytes": int(f["mem"]), "final": {"val_loss": f["loss"], "val_bpb": f["loss"] / 0.693},
                "env": {"device_name": "CPU (test)"}})
            rows = [{"kind": "train", "step": i, "tokens_per_s": f["tps"]} for i in range(1, 11)]
            (R.run_dir(root, suite, v, seed) / R.METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


@pytest.fixture
def baseline(tmp_path) -> Path:
    path = tmp_path / "baseline.json"
    assert main(["check", str(write_results(tmp_path / "base")), "--update-baseline", str(path)]) == 0
    return path


def test_same_results_pass(tmp_path, baseline, capsys):
    capsys.readouterr()
    assert main(["check", str(write_results(tmp_path / "new")), "--baseline", str(baseline)]) == 0
    assert "all 6 checks within tolerance" in capsys.readouterr().out


def test_small_noise_passes(tmp_path, baseline):
    cur = write_results(tmp_path / "new", {("moe", "tps"): 0.97, ("dense", "tps"): 1.03, ("moe", "loss"): 1.004})
    ok, table, _ = compare_to_baseline(cur, json.loads(baseline.read_text()))
    assert ok, table


def test_slowed_moe_fails_with_table(tmp_path, baseline, capsys):
    capsys.readouterr()
    cur = write_results(tmp_path / "new", {("moe", "tps"): 0.5})
    assert main(["check", str(cur), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("throughput_ratio"))
    assert "moe/dense" in row and "REGRESSED" in row and "-50.0%" in row
    assert "1 of 6 checks REGRESSED: throughput_ratio moe/dense" in out
    # a looser tolerance from the command line lets the same results through
    assert main(["check", str(cur), "--baseline", str(baseline), "--tolerance", "throughput_ratio=0.55"]) == 0


def test_memory_and_quality_regressions(tmp_path, baseline):
    cur = write_results(tmp_path / "new", {("moe", "mem"): 1.2, ("dense", "loss"): 1.1})
    ok, table, rows = compare_to_baseline(cur, json.loads(baseline.read_text()))
    bad = {(r["metric"], r["what"]) for r in rows if r["status"] == "REGRESSED"}
    assert not ok and bad == {("memory_ratio", "moe/dense"), ("val_loss", "dense"), ("val_bpb", "dense")}, table


def test_quality_tolerance_widens_with_seed_spread(tmp_path):
    b = build_baseline(write_results(tmp_path / "base"))
    b["variants"]["dense"]["val_loss"] = [1.40, 1.60]  # a noisy pair of seeds
    cur = write_results(tmp_path / "new", {("dense", "loss"): 1.05})
    rows = {(r["metric"], r["what"]): r for r in compare_to_baseline(cur, b)[2]}
    assert rows[("val_loss", "dense")]["status"] == "ok"


def test_update_baseline_keeps_tolerance_and_says_what_changed(tmp_path, baseline, capsys):
    b = json.loads(baseline.read_text())
    b["tolerance"]["throughput_ratio"], b["noise"] = 0.3, {"note": "kept"}
    baseline.write_text(json.dumps(b))
    capsys.readouterr()
    assert main(["check", str(write_results(tmp_path / "new", {("moe", "tps"): 0.8})),
                 "--update-baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert "changes from the previous baseline" in out and "throughput_ratio" in out and "changed" in out
    new = json.loads(baseline.read_text())
    assert new["tolerance"]["throughput_ratio"] == 0.3 and new["noise"] == {"note": "kept"}
    assert new["ratios"]["moe/dense"]["throughput_ratio"] == pytest.approx(0.8 * 7200 / 10400)


def test_bad_input_exits_2(tmp_path, baseline, capsys):
    cur = write_results(tmp_path / "new")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1}')
    assert main(["check", str(cur), "--baseline", str(bad)]) == 2
    assert main(["check", str(cur), "--baseline", str(tmp_path / "none.json")]) == 2
    assert main(["check", str(tmp_path / "nowhere"), "--baseline", str(baseline)]) == 2
    assert main(["check", str(write_results(tmp_path / "o", suite="other")), "--baseline", str(baseline)]) == 2
    assert main(["check", str(cur), "--baseline", str(baseline), "--tolerance", "speed=1"]) == 2
    assert main(["check", str(cur)]) == 2  # --baseline or --update-baseline is required
    assert "moebench: error:" in capsys.readouterr().err


def test_slowed_moe_path_end_to_end(tmp_path):
    """A real tiny suite, then the same suite with the torch expert path doing 30x its forward work: check fails."""
    suite = tmp_path / "suite.yaml"
    # one thread: two threads on a busy 2-core box stall at every barrier, slowing whole runs 10-100x
    suite.write_text(yaml.safe_dump(tiny(**{"eval.test": False, "train.steps": 30, "eval.interval": 30,
                                            "train.threads": 1})))

    def run(results, slow):  # --sidebyside: the ratio is timed interleaved, so machine load cancels out
        cmd = [sys.executable, str(REPO / "benchmarks" / "slow_moe.py"), "run", str(suite), "--quiet",
               "--sidebyside", "--results", str(tmp_path / results), "--reports", str(tmp_path / "rep")]
        subprocess.run(cmd, env={**os.environ, "MOEBENCH_SLOW_MOE": slow}, check=True, cwd=REPO, timeout=1800)  # bounds a hang only
        return tmp_path / results / "tiny"

    base = build_baseline(run("base", "0"))
    assert base["ratios"]["moe/dense"]["throughput_method"] == "sidebyside"
    ok, table, rows = compare_to_baseline(run("slow", "29"), base)
    bad = {(r["metric"], r["what"]) for r in rows if r["status"] == "REGRESSED"}
    assert not ok and ("throughput_ratio", "moe/dense") in bad, table
    # the slowdown changes speed only: same losses, same memory accounting
    assert not {m for m, _ in bad} & {"val_loss", "val_bpb", "memory_ratio"}, table


def _with_sidebyside(suite_dir: Path, dense_s: float, moe_s: float, cpu="CPU (test)") -> Path:
    """The real writer (training/sidebyside.write) with a record of the shape measure() returns."""
    from moebench.runs.sidebyside import write

    write(suite_dir, {"format": 1, "rounds": 12, "steps_per_round": 2, "loadavg": [[4.0, 4.0, 4.0]] * 2,
                      "env": {"device_name": cpu}, "step_time_s": {"dense": [dense_s * (1 + 0.01 * (i % 3))
                                                                             for i in range(12)],
                                                                   "moe": [moe_s] * 12}})
    return suite_dir


def test_sidebyside_ratio_replaces_the_sequential_one_and_gates_only_on_the_same_processor(tmp_path):
    base_dir = _with_sidebyside(write_results(tmp_path / "base"), 0.10, 0.125)
    base = build_baseline(base_dir)
    assert base["ratios"]["moe/dense"]["throughput_method"] == "sidebyside"
    assert base["ratios"]["moe/dense"]["throughput_ratio"] == pytest.approx(0.101 / 0.125, rel=0.02)
    # the runs' own tokens/s say MoE is twice as slow (load during its run); side by side it is 25% slower
    slow = _with_sidebyside(write_results(tmp_path / "slow", {("moe", "tps"): 0.5}), 0.10, 0.125)
    ok, table, _ = compare_to_baseline(slow, base)
    assert ok, table
    worse = _with_sidebyside(write_results(tmp_path / "worse"), 0.10, 0.2)
    ok, table, rows = compare_to_baseline(worse, base)
    assert not ok and ("throughput_ratio", "REGRESSED") in {(r["metric"], r["status"]) for r in rows}, table
    base["env"]["device_name"] = "CPU (Intel Xeon, 1 threads)"  # a baseline from another processor: shown only
    ok, table, rows = compare_to_baseline(worse, base)
    assert ok and "info only" in table and "Intel Xeon" in table, table


def test_ab_probes_head_and_the_base_commit_alternately(tmp_path, capsys):
    """--ab exports the base commit with git archive and probes both code versions on this machine."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny(**{"train.threads": 1})))
    # the mechanics, not the speed (no timed assertion): a 99% tolerance cannot trip on a tiny model's noise
    assert main(["check", str(suite), "--ab", "HEAD", "--probes", "1", "--tolerance", "ab_throughput=0.99"]) == 0
    out = capsys.readouterr().out
    assert "probe 1/2 (head): moe/dense" in out and "probe 2/2 (base): moe/dense" in out
    assert "throughput_ratio  moe/dense  base" in out and "allowed -99%" in out
    assert main(["check", str(suite), "--ab", "no-such-ref"]) == 2
