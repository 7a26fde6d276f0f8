"""A seconds-long suite through the CLI: results layout, skip, resume after a kill, NaN handling."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moebench import io as R
from moebench.cli import main
from tests.cli import paused_cli as pc
from tests.helpers import tiny

REPO = Path(__file__).resolve().parents[2]


def write_suite(tmp_path, **changes) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(tiny(**changes)))
    return p


def losses(run: Path) -> list:
    return [(r["kind"], r["step"], r.get("loss", r.get("val_loss"))) for r in R.read_metrics(run / R.METRICS)]


def test_run_writes_results_and_report(tmp_path, capsys):
    suite = write_suite(tmp_path, claims=[{"name": "moe balanced", "kind": "load_balance", "variant": "moe",
                                           "min_entropy": 0.5}])
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "report:" in out
    assert re.search(r"^  moe: solved expert_d_ff = \d+$", out, re.M)  # the plan print shows solved widths
    # progress as plain lines (stdout is not a terminal here) with the step rate and the time left
    assert re.search(r"^  dense seed 0: step 8/12 .* tok/s, [\d.]+ step/s, ETA \d+s \(suite \d+s\)\)$", out, re.M)
    assert re.search(r"^  moe seed 0: step 8/12 .* step/s, ETA \d+s\)$", out, re.M)  # the last run: no suite part
    # the verdict on the console, one line: one seed is below the gate, so INCONCLUSIVE with the reason
    assert re.search(r"^INCONCLUSIVE +moe balanced +entropy = [\d.]+ +moe has 1 finished seed\(s\), need 2$", out,
                     re.M)
    for variant in ("dense", "moe"):
        rd = tmp_path / "res" / "tiny" / variant / "seed-0"
        s = R.read_json(rd / R.SUMMARY)
        assert s["status"] == "ok" and s["steps"] == 12 and s["tokens"] == 12 * 4 * 32
        assert set(s["final"]) >= {"val_loss", "val_bpb", "test_loss", "test_ppl"}
        assert s["peak_memory_bytes"] > 0 and s["peak_memory_method"].startswith("cpu")
        assert s["env"]["torch"] and s["config_hash"]
        # the locked environment: its hash, and whether this interpreter runs exactly its versions
        assert s["env"]["lock_sha256"] == R.sha256_file(REPO / "requirements" / "test.lock")
        assert s["env"]["lock_state"] in ("locked", "unlocked")
        assert (s["env"]["lock_state"] == "unlocked") == bool(s["env"]["lock_differ"])
        # PTB bytes: ~5.1M training tokens, of which this run saw 1,536 once
        assert s["unique_train_tokens"] > 4_000_000 and s["epochs"] == s["tokens"] / s["unique_train_tokens"]
        assert abs(s["unigram_ce_val"] - 2.9841) < 1e-3  # PTB bytes' unigram plateau (add-one smoothed), nats
        evals = [r for r in R.read_metrics(rd / R.METRICS) if r["kind"] == "eval"]
        assert [r["step"] for r in evals] == [4, 8, 12]
        assert (rd / R.CONFIG).exists() and (rd / R.FINAL_MODEL).exists() and not (rd / R.CHECKPOINT).exists()
    moe = R.read_json(tmp_path / "res" / "tiny" / "moe" / "seed-0" / R.SUMMARY)
    assert moe["backend"] == "torch" and len(moe["experts"]["layers"]) == 2
    readme = (tmp_path / "rep" / "tiny" / "README.md").read_text()
    assert f"environment lock: requirements/test.lock sha256 {s['env']['lock_sha256'][:12]}" in readme
    assert re.search(r"\| moe \| all of 2; 4 experts, top-2 \| expert_d_ff \d+ \(solved\) \|", readme)


def test_rerun_skips_finished_and_force_redoes(tmp_path, capsys):
    suite = write_suite(tmp_path)
    args = ["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep")]
    assert main(args) == 0
    s1 = (tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY).read_text()
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("already finished with this config, skipped") == 2
    assert (tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY).read_text() == s1
    assert main(args + ["--force", "--only", "dense"]) == 0
    assert "skipped" not in capsys.readouterr().out.split("[1/1]")[1].splitlines()[0]


def test_seeds_are_reproducible(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["run", str(write_suite(tmp_path)), "--results", str(tmp_path / name), "--quiet",
                     "--reports", str(tmp_path / "rep"), "--only", "moe"]) == 0
        # --quiet drops the progress, never the verdicts and where the report is
        assert capsys.readouterr().out.splitlines() == ["claims: none in this suite",
                                                        f"report: {tmp_path / 'rep' / 'tiny' / 'README.md'}"]
    assert losses(tmp_path / "a/tiny/moe/seed-0") == losses(tmp_path / "b/tiny/moe/seed-0")


def test_nan_loss_fails_that_run_and_the_suite_goes_on(tmp_path, capsys):
    suite = write_suite(tmp_path, **{"train.lr": 1e6, "train.grad_clip": 0, "train.steps": 40,
                                     "train.warmup_steps": 0, "train.optimizer": "sgd"})
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep")]) == 3
    s = R.read_json(tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY)
    assert s["status"] == "failed" and "not finite" in s["failure"]["reason"] and s["failure"]["step"] < 40
    assert (tmp_path / "res/tiny/moe/seed-0" / R.SUMMARY).exists()


def test_kill_mid_run_then_rerun_equals_uninterrupted(tmp_path):
    """SIGKILL the CLI during the second run; the rerun skips the first and resumes the second from its
    last checkpoint; every loss equals an uninterrupted run's."""
    changes = {"train.steps": 60, "train.checkpoint_every": 5, "eval.interval": 20}
    suite = write_suite(tmp_path, **changes)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "moebench", "run", str(suite), "--reports", str(tmp_path / "rep")]
    ref = subprocess.run(cmd + ["--results", str(tmp_path / "ref"), "--quiet"], env=env, capture_output=True)
    assert ref.returncode == 0, ref.stderr.decode()[-2000:]

    res = tmp_path / "res"
    # the moe run stops itself after its step-5 checkpoint: the kill lands there, whatever the machine's load
    paused = [sys.executable, str(pc.SCRIPT)] + cmd[3:] + ["--results", str(res)]
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen(paused, env={**env, "MOEBENCH_TEST_PAUSE": "moe:5"}, stdout=out, stderr=out)
        pc.wait_for(lambda: pc.state(proc.pid) in ("T", "Z", None), "the moe run to pause at step 5")
        assert pc.state(proc.pid) == "T", (tmp_path / "out.txt").read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (res / "tiny/dense/seed-0" / R.SUMMARY).exists() and not (res / "tiny/moe/seed-0" / R.SUMMARY).exists()
    assert (res / "tiny/moe/seed-0" / R.CHECKPOINT).exists()

    again = subprocess.run(cmd + ["--results", str(res)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[1/2] dense seed 0: already finished" in again.stdout
    assert "resuming from step" in again.stdout
    for v in ("dense", "moe"):
        assert losses(res / f"tiny/{v}/seed-0") == losses(tmp_path / f"ref/tiny/{v}/seed-0")
        a = R.read_json(res / f"tiny/{v}/seed-0" / R.SUMMARY)["final"]
        b = R.read_json(tmp_path / f"ref/tiny/{v}/seed-0" / R.SUMMARY)["final"]
        assert a == b


def test_sigterm_checkpoints_and_exits_130(tmp_path):
    suite = write_suite(tmp_path, **{"train.steps": 40, "train.checkpoint_every": 1000, "variants.moe": None})
    suite.write_text(suite.read_text().replace("moe: null\n", ""))
    cmd = [sys.executable, str(pc.SCRIPT), "run", str(suite), "--results", str(tmp_path / "res"), "--quiet"]
    # paused before step 3: the SIGTERM waits, pending, and is handled the moment the run continues
    proc = subprocess.Popen(cmd, env={**os.environ, "MOEBENCH_TEST_PAUSE": "dense:2"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    pc.wait_for(lambda: pc.state(proc.pid) in ("T", "Z", None), "the run to pause at step 2")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=pc.PATIENCE_S)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert (tmp_path / "res/tiny/dense/seed-0" / R.CHECKPOINT).exists()


def test_lm_eval_tasks_land_in_the_summary(tmp_path):
    suite = write_suite(tmp_path, **{"eval.lm_eval": {"tasks": ["ptb_ppl"], "limit": 1}, "train.steps": 4,
                                     "train.warmup_steps": 0})
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                 "--only", "dense", "--quiet"]) == 0
    lm = R.read_json(tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY)["lm_eval"]["ptb_ppl"]
    assert lm["bits_per_byte"] > 0 and lm["word_perplexity"] > 1 and "version" in lm
    report = (tmp_path / "rep/tiny/README.md").read_text()
    assert "## lm-evaluation-harness" in report and "ptb_ppl.word_perplexity" in report


def test_inference_section_and_measured_flops_land_in_summary(tmp_path):
    suite = write_suite(tmp_path, **{"inference": {"batch_sizes": [1, 4], "repeats": 1,
                                                   "prune": {"drop_least": [1], "min_load": [0.5]}},
                                     "train.steps": 4, "train.warmup_steps": 0, "eval.test": False})
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                 "--quiet"]) == 0
    moe = R.read_json(tmp_path / "res/tiny/moe/seed-0" / R.SUMMARY)
    # dropless top-2: FlopCounterMode sees exactly the analytic forward FLOPs
    assert moe["flops_measured"]["forward"] == pytest.approx(moe["flops_per_token"]["forward"], rel=1e-9)
    inf = moe["inference"]
    assert [r["batch_size"] for r in inf["speed"]] == [1, 4] and inf["speed"][0]["tokens_per_s"] > 0
    drop1 = next(p for p in inf["pruning"] if p.get("drop_least") == 1)
    assert all(len(v) == 1 for v in drop1["dropped"].values()) and drop1["weights_bytes"] < inf["weights_bytes"]
    dense = R.read_json(tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY)
    assert "pruning" not in dense["inference"] and dense["inference"]["speed"][1]["expert_batch_max_over_mean"] is None
    report = (tmp_path / "rep/tiny/README.md").read_text()
    assert "## FLOP accounting" in report and "## Forward speed" in report and "## Expert pruning" in report


def test_every_router_trains_in_a_suite_and_writes_expert_statistics(tmp_path):
    from moebench.models.routers import ROUTERS

    variants = {"dense": {}}
    for r in ROUTERS:
        variants[r.replace("_", "-")] = {"num_experts": 4, "top_k": 1 if r in ("switch", "hash") else 2,
                                         "router": r, "expert_d_ff": 32, "capacity_factor": 1.5}
    suite = write_suite(tmp_path, **{"variants": variants, "match.strict": False, "train.steps": 3,
                                     "train.warmup_steps": 0, "eval.interval": 3, "eval.test": False})
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                 "--quiet"]) == 0
    for r in ROUTERS:
        s = R.read_json(tmp_path / "res/tiny" / r.replace("_", "-") / "seed-0" / R.SUMMARY)
        e = s["experts"]
        assert s["status"] == "ok" and len(e["layers"]) == 2, r
        assert sum(e["layers"][0]["load"]) == pytest.approx(1.0, abs=1e-5) and 0 <= e["entropy"] <= 1  # 6 decimals
        assert {"max_load_x_E", "cv", "dead_experts", "drop_fraction", "router_entropy", "z_loss"} <= set(e)


def test_full_disk_is_a_clear_error_and_finished_runs_survive(tmp_path, capsys, monkeypatch):
    import errno

    suite = write_suite(tmp_path, **{"train.steps": 4, "train.warmup_steps": 0, "eval.test": False})
    args = ["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"), "--quiet"]
    assert main(args + ["--only", "dense"]) == 0
    before = (tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY).read_text()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "Traceback" not in err
    assert (tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY).read_text() == before
    assert not (tmp_path / "res/tiny/moe/seed-0" / R.SUMMARY).exists()
    monkeypatch.undo()
    assert main(args) == 0  # space is back: the rerun finishes what was missing
    assert R.read_json(tmp_path / "res/tiny/moe/seed-0" / R.SUMMARY)["status"] == "ok"
