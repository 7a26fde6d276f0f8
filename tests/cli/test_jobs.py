"""A suite's runs in parallel (--jobs), in shards (--shard) and on Ray (--launcher ray) equal a sequential run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from moebench import io as R
from moebench.cli import main
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


def _wait(cond, proc, timeout=300):
    deadline = time.time() + timeout
    while not cond() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    return cond()


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
    proc = subprocess.Popen(cmd + ["--results", str(res)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dirs = [R.run_dir(res, "tiny", *k) for k in RUNS]
    mid = lambda: any((d / R.SUMMARY).exists() for d in dirs) and any(  # noqa: E731
        (d / R.CHECKPOINT).exists() and not (d / R.SUMMARY).exists() for d in dirs)
    assert _wait(mid, proc), "the suite finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sizes = {d: (d / R.METRICS).stat().st_size for d in dirs if (d / R.METRICS).exists()}
    time.sleep(2)
    assert sizes == {d: (d / R.METRICS).stat().st_size for d in sizes}, "a worker outlived its parent"
    finished = [d for d in dirs if (d / R.SUMMARY).exists()]
    assert 0 < len(finished) < len(dirs)

    again = subprocess.run(cmd + ["--results", str(res)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already finished with this config, skipped") == len(finished)
    assert "resuming from step" in again.stdout
    for k in RUNS:
        assert losses(R.run_dir(res, "tiny", *k)) == losses(R.run_dir(ref, "tiny", *k))
    assert finals(res) == finals(ref)


def test_sigterm_stops_every_worker_at_a_checkpoint_and_exits_130(tmp_path):
    suite = write_suite(tmp_path, **{"train.steps": 400, "train.checkpoint_every": 1000})
    cmd = [sys.executable, "-m", "moebench", "run", str(suite), "--results", str(tmp_path / "res"), "--quiet",
           "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = [R.run_dir(tmp_path / "res", "tiny", v, 0) / R.METRICS for v in ("dense", "moe")]
    assert _wait(lambda: all(m.exists() and m.stat().st_size > 0 for m in metrics), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    for m in metrics:  # both runs stopped at a step boundary with a checkpoint (checkpoint_every is 1000)
        assert (m.parent / R.CHECKPOINT).exists() and not (m.parent / R.SUMMARY).exists()


def _workers_of(pid: int) -> list[int]:
    """The spawned worker processes of `pid` (Linux /proc), not multiprocessing's resource tracker."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes through Linux /proc")
def test_a_worker_killed_mid_run_fails_only_its_run_and_a_rerun_resumes_it(tmp_path):
    suite = write_suite(tmp_path, **{"train.steps": 300, "train.checkpoint_every": 5, "eval.interval": 100})
    cmd = [sys.executable, "-m", "moebench", "run", str(suite), "--results", str(tmp_path / "res"), "--reports",
           str(tmp_path / "rep"), "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = [R.run_dir(tmp_path / "res", "tiny", v, 0) / R.CHECKPOINT for v in ("dense", "moe")]
    assert _wait(lambda: all(c.exists() for c in ckpts), proc), "a run finished before both had a checkpoint"
    victim = _workers_of(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-2000:]
    assert "the worker process died; rerun the same command to resume" in err and "Traceback" not in err
    summaries = [(c.parent / R.SUMMARY).exists() for c in ckpts]
    assert summaries.count(True) == 1  # the other run finished beside it
    assert (tmp_path / "rep/tiny/README.md").exists()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from step" in again.stdout and "already finished" in again.stdout
