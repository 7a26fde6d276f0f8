"""Nothing lost, nothing silently wrong: the results lock, reruns that never destroy a finished run, damaged
files named and handled, checks that fail before anything on disk changes, failed runs visible (exit 3)."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from moebench import io as R
from moebench.cli import main
from tests.helpers import tiny

ONE = {"variants": {"dense": {}}}  # the dense variant alone: seconds to train


def suite_file(tmp_path, name="suite.yaml", **changes) -> Path:
    d = tiny(**changes)
    d["variants"] = {"dense": {}}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-run suite (dense, seed 0); tests copy it before changing anything."""
    root = tmp_path_factory.mktemp("finished")
    suite = suite_file(root)
    assert main(["run", str(suite), "--results", str(root / "res"), "--reports", str(root / "rep"), "--quiet"]) == 0
    return root


@pytest.fixture
def work(tmp_path, finished):
    shutil.copytree(finished / "res", tmp_path / "res")
    shutil.copy(finished / "suite.yaml", tmp_path / "suite.yaml")
    return tmp_path


def args(root: Path, *extra) -> list:
    return ["run", str(root / "suite.yaml"), "--results", str(root / "res"), "--reports", str(root / "rep"),
            *extra]


def snapshot(root: Path) -> dict:
    """Every path under root with its size and mtime: what 'nothing on disk changed' compares."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


RUN = "res/tiny/dense/seed-0"


# ------------------------------------------------------------------------------------------------ lock
def test_second_run_on_a_locked_results_dir_exits_2_naming_the_holder(work, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from moebench.runs.lock import suite_lock\n"
         f"with suite_lock({str(work / 'res/tiny')!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(work / "res")
        assert main(args(work)) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "in use by another moebench run" in err and "--wait" in err
        assert len(err.strip().splitlines()) == 1
        assert snapshot(work / "res") == before
    finally:
        holder.kill()
        holder.wait()
    assert main(args(work)) == 0  # the holder died: the OS released its lock, never stale


# ------------------------------------------------------------------------------------------------ reruns
def test_changed_config_keeps_finished_runs_and_force_archives_them(work, capsys):
    before = snapshot(work / "res")
    summary = (work / RUN / R.SUMMARY).read_text()
    assert main(args(work, "--set", "train.lr=0.001")) == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.003 -> 0.001" in err and "--force" in err and "dense/seed-0" in err
    assert snapshot(work / "res") == before  # kept, and suite.yaml / plan.json not rewritten

    old_hash = R.read_json(work / RUN / R.SUMMARY)["config_hash"]
    assert main(args(work, "--set", "train.lr=0.001", "--force", "--quiet")) == 0
    archived = work / "res/tiny/superseded" / old_hash / "dense/seed-0"
    assert (archived / R.SUMMARY).read_text() == summary
    assert R.read_json(work / RUN / R.SUMMARY)["config_hash"] != old_hash


def test_bad_seq_len_fails_before_anything_on_disk_changes(work, capsys):
    before = snapshot(work)
    assert main(args(work, "--set", "corpus.seq_len=100000000", "--force")) == 2
    assert "corpus.seq_len" in capsys.readouterr().err
    assert snapshot(work) == before


@pytest.mark.parametrize("flag", ["--reports", "--results"])
def test_results_or_reports_that_is_a_file_fails_before_training(work, capsys, flag):
    (work / "afile").write_text("x")
    argv = args(work, "--force")
    argv[argv.index(flag) + 1] = str(work / "afile" / "sub")
    before = snapshot(work)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and "afile" in err and len(err.strip().splitlines()) == 1
    assert snapshot(work) == before


# ------------------------------------------------------------------------------------------------ damage
@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_damaged_metrics_are_reported_then_retrained(work, capsys, damage):
    m = work / RUN / R.METRICS
    text = m.read_text()
    if damage == "truncate":
        m.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        lines = text.splitlines(keepends=True)
        m.write_text("".join(lines[:3] + ["{not json\n"] + lines[3:]))
    else:
        m.unlink()
    assert main(["report", str(work / "res/tiny"), "--out", str(work / "rep")]) == 0
    readme = (work / "rep/README.md").read_text()
    assert "## Failed runs" in readme and "damaged" in readme and "metrics.jsonl" in readme
    capsys.readouterr()
    assert main(args(work)) == 0
    out = capsys.readouterr().out
    assert "metrics.jsonl" in out and "retraining" in out
    assert R.read_json(work / RUN / R.SUMMARY)["status"] == "ok"
    assert list((work / "res/tiny/superseded").glob("damaged-*/dense/seed-0/summary.json"))


def test_corrupt_summary_is_damaged_for_report_and_retrained_by_run(work, capsys):
    (work / RUN / R.SUMMARY).write_text('{"status": "ok", "final": {')
    assert main(["report", str(work / "res/tiny"), "--out", str(work / "rep")]) == 0
    assert "summary.json: unreadable" in (work / "rep/README.md").read_text()
    capsys.readouterr()
    assert main(args(work)) == 0
    assert "summary.json: unreadable" in capsys.readouterr().out


def test_truncated_checkpoint_is_named_and_the_run_restarts_from_step_0(work, capsys):
    rd = work / RUN
    ref = [r["loss"] for r in R.read_metrics(rd / R.METRICS) if r["kind"] == "train"]
    (rd / R.SUMMARY).unlink()  # an interrupted run with a torn checkpoint
    (rd / R.CHECKPOINT).write_bytes(b"PK\x03\x04 torn")
    assert main(args(work)) == 0
    out = capsys.readouterr().out
    assert f"{rd / R.CHECKPOINT}: checkpoint is damaged" in out and "restarting from step 0" in out
    assert [r["loss"] for r in R.read_metrics(rd / R.METRICS) if r["kind"] == "train"] == ref


# ------------------------------------------------------------------------------------------------ exit 2
def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_directory_or_binary_file_as_suite_exits_2(tmp_path, capsys):
    assert main(["run", str(tmp_path)]) == 2
    assert "not a file" in _err_line(capsys)
    (tmp_path / "b.yaml").write_bytes(bytes(range(256)))
    assert main(["plan", str(tmp_path / "b.yaml")]) == 2
    assert "b.yaml" in _err_line(capsys)


def test_duplicate_yaml_key_exits_2_with_both_lines(tmp_path, capsys):
    text = yaml.safe_dump(tiny(), sort_keys=False) + "train: {steps: 3}\n"
    (tmp_path / "s.yaml").write_text(text)
    assert main(["plan", str(tmp_path / "s.yaml")]) == 2
    err = _err_line(capsys)
    first = 1 + next(i for i, line in enumerate(text.splitlines()) if line.startswith("train:"))
    assert "duplicate key 'train'" in err and f"first at line {first}" in err


@pytest.mark.parametrize("change,needle", [({"train.seeds": [-1]}, "train.seeds: must be >= 0"),
                                            ({"train.device": "cuda"}, "train.device: cuda")])
def test_plan_rejects_negative_seeds_and_a_missing_device(tmp_path, capsys, change, needle):
    if change.get("train.device") == "cuda":
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU: device cuda is valid here")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(tiny(**change)))
    assert main(["plan", str(tmp_path / "s.yaml")]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("n", ["0", "-2", "x"])
def test_nproc_must_be_a_positive_number(tmp_path, capsys, n):
    assert main(["run", str(suite_file(tmp_path)), f"--nproc={n}"]) == 2
    assert "--nproc" in _err_line(capsys)


def test_set_on_an_unknown_variant_names_it(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(tiny()))
    assert main(["plan", str(tmp_path / "s.yaml"), "--set", "variants.moe9.top_k=1"]) == 2
    err = _err_line(capsys)
    assert "no variant named 'moe9'" in err and "did you mean 'moe'" in err
    assert main(["plan", str(tmp_path / "s.yaml"), "--set", "variants.moe9={extends: moe, top_k: 1}"]) == 0


def test_cache_dir_that_is_a_file_exits_2(tmp_path, capsys, monkeypatch):
    (tmp_path / "cachefile").write_text("x")
    monkeypatch.setenv("MOEBENCH_CACHE", str(tmp_path / "cachefile"))
    assert main(["run", str(suite_file(tmp_path)), "--results", str(tmp_path / "r"),
                 "--reports", str(tmp_path / "p")]) == 2
    assert "MOEBENCH_CACHE" in _err_line(capsys)


# ------------------------------------------------------------------------------------------------ failures
def test_all_nan_suite_exits_3_and_the_report_says_where_and_why(tmp_path, capsys):
    suite = suite_file(tmp_path, **{"train.lr": 1e6, "train.grad_clip": 0, "train.warmup_steps": 0,
                                    "train.optimizer": "sgd", "train.steps": 40})
    argv = ["run", str(suite), "--results", str(tmp_path / "res"), "--reports", str(tmp_path / "rep")]
    assert main(argv) == 3
    step = R.read_json(tmp_path / "res/tiny/dense/seed-0" / R.SUMMARY)["failure"]["step"]
    assert f"FAILED dense seed 0 at step {step}" in capsys.readouterr().err
    readme = (tmp_path / "rep/tiny/README.md").read_text()
    section = readme.split("## Failed runs")[1].split("\n## ")[0]
    assert f"| dense | 0 | failed | {step} | loss is" in section
    assert f"seed 0 failed at step {step}" in readme.split("## Variants")[1].split("\n## ")[0]
    assert main(argv) == 3  # the rerun skips the finished-but-failed run and still counts it
    out = capsys.readouterr().out
    assert "(1 failed)" in out and "already finished with this config (FAILED)" in out


def test_no_library_warning_reaches_the_terminal(tmp_path):
    suite = suite_file(tmp_path, **{"train.lr": 1e6, "train.grad_clip": 0, "train.warmup_steps": 0,
                                    "train.optimizer": "sgd", "train.steps": 40})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    p = subprocess.run([sys.executable, "-m", "moebench", "run", str(suite), "--results", str(tmp_path / "res"),
                        "--reports", str(tmp_path / "rep"), "--quiet"], capture_output=True, text=True, env=env)
    assert p.returncode == 3, p.stderr[-2000:]
    assert "Warning" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == [l for l in p.stderr.strip().splitlines() if l.startswith("moebench:")]


def test_a_side_by_side_timing_does_not_outlive_the_models_it_timed(work, capsys):
    from moebench.runs.sidebyside import write

    write(work / "res/tiny", {"rounds": 1, "step_time_s": {"dense": [0.1]}})
    assert main(args(work, "--quiet")) == 0  # nothing retrained: the timing stays
    assert (work / "res/tiny" / R.SIDEBYSIDE).exists()
    assert main(args(work, "--force")) == 0  # retrained: the old timing is gone, and it says so
    assert not (work / "res/tiny" / R.SIDEBYSIDE).exists()
    assert "sidebyside.json: runs were retrained" in capsys.readouterr().out
    assert list((work / "res/tiny/superseded").glob("*/dense/seed-0/summary.json"))  # --force archived the run
