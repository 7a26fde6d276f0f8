"""A suite's runs in parallel (--jobs), in shards (--shard) and on Ray (--launcher ray) equal a sequential run."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from moebench import io as R
from moebench.cli import main
from tests.cli import paused_cli as pc
from tests.helpers import tiny

# min_tokens_per_param 0: a tiny run is far from one token per parameter, and these claims must reach a verdict
CLAIMS = [{"kind": "loss_better", "variant": "moe", "baseline": "dense", "metric": "val_bpb",
           "min_tokens_per_param": 0},
          {"kind": "memory_ratio", "variant": "moe", "baseline": "dense", "max": 2.0, "min_tokens_per_param": 0}]
SUITE = {"train.seeds": [0, 1], "train.steps": 8, "claims": CLAIMS}
RUNS = [(v, s) for v in ("dense", "moe") for s in (0, 1)]
# measured, not computed: they legitimately differ between two runs of the same suite (and the host's load)
WALL_CLOCK_COLUMNS = {"wall_time_s", "tokens_per_s_median", "step_time_median_s", "peak_flops", "peak_bw",
                      "load_avg_start", "load_avg_end", "concurrent_runs_mean", "concurrent_runs_max"}


def write_suite(tmp_path, **changes) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(tiny(**changes)))
    return p


def losses(run: Path) -> list:
    """Every metrics row's kind, step and loss columns (train loss and aux loss, eval losses)."""
    cols = ("loss", "aux_loss", "val_loss", "val_bpb")
    return [(r["kind"], r["step"], *(r.get(c) for c in cols)) for r in R.read_metrics(run / R.METRICS)]


def finals(root: Path) -> dict:
    return {k: R.read_json(R.run_dir(root, "tiny", *k) / R.SUMMARY)["final"] for k in RUNS}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The suite run sequentially (--jobs 1), results and report."""
    d = tmp_path_factory.mktemp("ref")
    suite = write_suite(d, **SUITE)
    assert main(["run", str(suite), "--results", str(d / "res"), "--reports", str(d / "rep"), "--quiet"]) == 0
    return d


def test_jobs_2_equals_jobs_1_bit_for_bit_and_records_what_ran_beside(tmp_path, reference, capsys):
    suite = write_suite(tmp_path, **SUITE)
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                 "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "up to 2 at once" in out and "[4/4] moe seed 1: val loss" in out
    assert "  moe seed 1: step 8/8 train" in out  # the plain progress lines of a sequential run, from metrics.jsonl
    for k in RUNS:
        assert losses(R.run_dir(tmp_path / "res", "tiny", *k)) == losses(R.run_dir(reference / "res", "tiny", *k))
    assert finals(tmp_path / "res") == finals(reference / "res")
    par = [R.read_json(R.run_dir(tmp_path / "res", "tiny", *k) / R.SUMMARY) for k in RUNS]
    assert all(s["concurrent_runs"]["launcher"] == "local" and s["concurrent_runs"]["jobs"] == 2 for s in par)
    assert max(s["concurrent_runs"]["max"] for s in par) == 1  # never more than one other run beside it
    assert all(s["load_avg_1m"]["start"] is not None for s in par)
    seq = R.read_json(R.run_dir(reference / "res", "tiny", "dense", 0) / R.SUMMARY)["concurrent_runs"]
    assert (seq["launcher"], seq["max"], seq["mean"]) == ("sequential", 0, 0.0)
    table = (tmp_path / "rep/tiny/README.md").read_text()
    assert "runs beside (mean, max)" in table and "load avg (start, end)" in table


def _report_without_measurements(rep: Path) -> dict:
    """README.md, results.csv and verdicts.json with what a rerun legitimately changes masked: the Date line, the
    total wall time, the variants table's tokens/s and sharing columns, the utilisation section (measured FLOP/s
    against a measured CPU peak) and the wall-clock columns of results.csv."""
    lines, skip, cols = [], False, []
    for line in (rep / "README.md").read_text().splitlines():
        if line.startswith("## "):
            skip = line.startswith("## Utilisation")
        if skip or line.startswith("Date:") or line.startswith("- total training wall time"):
            continue
        cells = line.split(" | ")
        if "tokens/s" in cells:
            cols = [i for i, c in enumerate(cells) if c.rstrip(" |") in ("tokens/s", "runs beside (mean, max)",
                                                                         "load avg (start, end)")]
        elif cols and line.startswith("| ") and len(cells) > max(cols):
            line = " | ".join("*" if i in cols else c for i, c in enumerate(cells))
        else:
            cols = [] if not line.startswith("|") else cols
        lines.append(line)
    csv = pd.read_csv(rep / "results.csv")
    csv = csv.drop(columns=[c for c in csv.columns if c in WALL_CLOCK_COLUMNS])
    rows = csv.astype(object).where(csv.notna(), None).to_dict("records")  # NaN != NaN: compare as None
    return {"readme": lines, "csv": rows, "verdicts": json.loads((rep / "verdicts.json").read_text())}


def test_shards_into_one_results_dir_then_report_equal_a_full_run(tmp_path, reference, capsys):
    suite = write_suite(tmp_path, **SUITE)
    for k in (1, 2):
        assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                     "--shard", f"{k}/2"]) == 0
        out = capsys.readouterr().out
        assert f"shard {k}/2: 2 of the suite's runs" in out
        assert f"shard {k}/2 done; run `moebench report {tmp_path / 'res' / 'tiny'}` when all shards finished" in out
        assert not (tmp_path / "rep").exists()  # a shard writes no report
        if k == 1:  # a report before every shard finished judges nothing on half the runs
            assert main(["report", str(tmp_path / "res/tiny"), "--out", str(tmp_path / "early")]) == 0
            early = pd.read_csv(tmp_path / "early/results.csv")
            assert sorted(early["status"]) == ["incomplete", "incomplete", "ok", "ok"]
            verdicts = json.loads((tmp_path / "early/verdicts.json").read_text())
            assert {v["verdict"] for v in verdicts} == {"INCONCLUSIVE"}
    assert main(["report", str(tmp_path / "res/tiny"), "--out", str(tmp_path / "rep/tiny")]) == 0
    got = _report_without_measurements(tmp_path / "rep/tiny")
    want = _report_without_measurements(reference / "rep/tiny")
    assert got["csv"] == want["csv"]
    assert got["verdicts"] == want["verdicts"] and {v["verdict"] for v in want["verdicts"]} - {"INCONCLUSIVE"}
    assert got["readme"] == want["readme"]
    assert (tmp_path / "res/tiny/plan.json").read_text() == (reference / "res/tiny/plan.json").read_text()
    assert (tmp_path / "res/tiny/suite.yaml").read_text() == (reference / "res/tiny/suite.yaml").read_text()


def test_ray_launcher_runs_the_suite(tmp_path, reference, capsys):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install -e '.[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        suite = write_suite(tmp_path, **SUITE)
        assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                     "--launcher", "ray"]) == 0
    finally:
        ray.shutdown()
    assert "[4/4] moe seed 1: val loss" in capsys.readouterr().out
    for k in RUNS:
        assert losses(R.run_dir(tmp_path / "res", "tiny", *k)) == losses(R.run_dir(reference / "res", "tiny", *k))
        assert R.read_json(R.run_dir(tmp_path / "res", "tiny", *k) / R.SUMMARY)["concurrent_runs"]["launcher"] == "ray"
    assert (tmp_path / "rep/tiny/README.md").exists()


@pytest.mark.parametrize("flags, message", [
    (["--jobs", "0"], "--jobs"), (["--jobs", "two"], "--jobs"), (["--shard", "3/2"], "--shard"),
    (["--shard", "x"], "--shard"), (["--address", "h:1"], "--address"),
    (["--launcher", "ray", "--jobs", "2"], "--jobs"), (["--nproc", "2", "--jobs", "2"], "--nproc"),
])
def test_bad_flags_are_exit_2_before_anything_is_written(tmp_path, capsys, flags, message):
    suite = write_suite(tmp_path)
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_ray_missing_is_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert main(["run", str(write_suite(tmp_path)), "--results", str(tmp_path / "res"), "--launcher", "ray"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err and not (tmp_path / "res").exists()


def test_a_nan_run_fails_alone_under_jobs_2(tmp_path):
    suite = write_suite(tmp_path, **{"train.lr": 1e6, "train.grad_clip": 0, "train.steps": 40,
                                     "train.warmup_steps": 0, "train.optimizer": "sgd"})
    assert main(["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"),
                 "--jobs", "2", "--quiet"]) == 3  # 3: a run failed
    s = R.read_json(tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY)
    assert s["status"] == "failed" and "not finite" in s["failure"]["reason"] and s["failure"]["step"] < 40
    assert (tmp_path / "res/tiny/moe/seed-0" / R.SUMMARY).exists() and (tmp_path / "rep/tiny/README.md").exists()


def _paused(cmd: list, pause: str, out: Path) -> subprocess.Popen:
    """`moebench run --jobs 2` through tests/cli/paused_cli.py: the workers training `pause`'s variant stop
    themselves at its step (their checkpoint of that step written), the others run on."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", MOEBENCH_TEST_PAUSE=pause)
    with open(out, "w") as f:
        return subprocess.Popen([sys.executable, str(pc.SCRIPT)] + cmd, env=env, stdout=f, stderr=f)


def _stopped_workers(proc, n: int, why: str, also=lambda: True) -> list[int]:
    stopped = lambda: [w for w in pc.children(proc.pid) if pc.state(w) == "T"]  # noqa: E731
    pc.wait_for(lambda: proc.poll() is not None or (len(stopped()) >= n and also()), why)
    assert proc.poll() is None, f"the suite ended before {why}"
    return stopped()


def test_kill_9_during_jobs_2_then_rerun_resumes_and_equals_uninterrupted(tmp_path, reference):
    """SIGKILL `moebench run --jobs 2` once a run has finished and another has a checkpoint: its workers die with
    it, the rerun skips the finished runs and resumes the others; every loss equals the sequential run's."""
    suite = write_suite(tmp_path, **{**SUITE, "train.steps": 60, "train.checkpoint_every": 5, "eval.interval": 20})
    ref = tmp_path / "ref"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "moebench", "run", str(suite), "--reports", str(tmp_path / "rep"), "--jobs", "2"]
    done = subprocess.run(cmd[:-2] + ["--results", str(ref), "--quiet"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    res = tmp_path / "res"
    # the dense runs finish; the moe runs stop themselves after their step-5 checkpoint, so the kill lands while a
    # run is finished and another is half done, whatever the machine's load
    proc = _paused(cmd[3:] + ["--results", str(res)], "moe:5", tmp_path / "out.txt")
    dirs = [R.run_dir(res, "tiny", *k) for k in RUNS]
    _stopped_workers(proc, 1, "a finished run and a moe run paused at step 5",
                     also=lambda: any((d / R.SUMMARY).exists() for d in dirs))
    workers = pc.children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # a worker that outlived its parent would go on writing into the results directory
    pc.wait_for(lambda: all(pc.state(w) in (None, "Z") for w in workers), "the workers to die with their parent")
    finished = [d for d in dirs if (d / R.SUMMARY).exists()]
    assert 0 < len(finished) < len(dirs)
    assert any((d / R.CHECKPOINT).exists() and not (d / R.SUMMARY).exists() for d in dirs)

    again = subprocess.run(cmd + ["--results", str(res)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already finished with this config, skipped") == len(finished)
    assert "resuming from step" in again.stdout
    for k in RUNS:
        assert losses(R.run_dir(res, "tiny", *k)) == losses(R.run_dir(ref, "tiny", *k))
    assert finals(res) == finals(ref)


def test_sigterm_stops_every_worker_at_a_checkpoint_and_exits_130(tmp_path):
    suite = write_suite(tmp_path, **{"train.steps": 40, "train.checkpoint_every": 1000})
    cmd = ["run", str(suite), "--results", str(tmp_path / "res"), "--quiet", "--jobs", "2"]
    metrics = [R.run_dir(tmp_path / "res", "tiny", v, 0) / R.METRICS for v in ("dense", "moe")]
    # both workers stop themselves before step 3; the parent's SIGTERM reaches them as a pending signal, and only
    # once it waits in both (seen in /proc) do they continue: then each stops at its next step boundary
    proc = _paused(cmd, "dense,moe:2", tmp_path / "out.txt")
    workers = _stopped_workers(proc, 2, "both runs paused at step 2")
    proc.send_signal(signal.SIGTERM)
    pc.wait_for(lambda: all(pc.pending(w, signal.SIGTERM) for w in workers), "the parent to relay SIGTERM")
    for w in workers:
        os.kill(w, signal.SIGCONT)
    proc.wait(timeout=pc.PATIENCE_S)
    err = (tmp_path / "out.txt").read_text()
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    for m in metrics:  # both runs stopped at a step boundary with a checkpoint (checkpoint_every is 1000)
        assert (m.parent / R.CHECKPOINT).exists() and not (m.parent / R.SUMMARY).exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through Linux /proc")
def test_a_worker_killed_mid_run_fails_only_its_run_and_a_rerun_resumes_it(tmp_path):
    suite = write_suite(tmp_path, **{"train.steps": 60, "train.checkpoint_every": 5, "eval.interval": 100})
    cmd = ["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep"), "--jobs", "2"]
    ckpts = [R.run_dir(tmp_path / "res", "tiny", v, 0) / R.CHECKPOINT for v in ("dense", "moe")]
    # the dense run stops itself after its step-5 checkpoint; that worker is the one killed, the moe run goes on
    proc = _paused(cmd, "dense:5", tmp_path / "out.txt")
    (victim,) = _stopped_workers(proc, 1, "the dense run paused at step 5")
    os.kill(victim, signal.SIGKILL)
    proc.wait(timeout=pc.PATIENCE_S)
    err = (tmp_path / "out.txt").read_text()
    assert proc.returncode == 1, err[-2000:]
    assert "the worker process died; rerun the same command to resume" in err and "Traceback" not in err
    summaries = [(c.parent / R.SUMMARY).exists() for c in ckpts]
    assert summaries.count(True) == 1  # the other run finished beside it
    assert (tmp_path / "rep/tiny/README.md").exists()
    again = subprocess.run([sys.executable, "-m", "moebench"] + cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from step" in again.stdout and "already finished" in again.stdout
