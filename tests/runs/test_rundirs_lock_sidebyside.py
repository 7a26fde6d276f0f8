"""Run-directory states (damaged, stale), archiving, the results lock with --wait, and the side-by-side timing."""
import subprocess
import sys
import threading
import time

import pytest

from moebench import io as R
from moebench.config.suite import build_suite
from moebench.errors import UserError
from moebench.plan import plan_suite, run_specs
from moebench.runs.lock import suite_lock
from moebench.runs.rundirs import archive_run, config_diff, run_state
from moebench.runs.runner import run_one
from moebench.runs.sidebyside import measure
from tests.helpers import tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both tiny variants trained once (real runs through run_one); tests copy what they change."""
    root = tmp_path_factory.mktemp("runs")
    specs = run_specs(plan_suite(build_suite(tiny())))
    for spec in specs:
        assert run_one(spec, root, quiet=True, log=lambda *a: None).status == "ok"
    return root, specs


def test_states_of_a_finished_run(trained, tmp_path):
    import shutil

    root, specs = trained
    shutil.copytree(root / "tiny", tmp_path / "tiny")
    spec = specs[0]
    rd = R.run_dir(tmp_path, spec.suite, spec.variant, spec.seed)
    assert run_state(rd, spec) == "done"
    s = R.read_json(rd / R.SUMMARY)
    assert s["integrity"][R.METRICS]["rows"] == len(R.read_metrics(rd / R.METRICS))
    assert s["integrity"][R.FINAL_MODEL]["sha256"] == R.sha256_file(rd / R.FINAL_MODEL)
    other = run_specs(plan_suite(build_suite(tiny(**{"train.lr": 1e-3}))))[0]
    assert run_state(rd, other) == "stale"
    with open(rd / R.FINAL_MODEL, "r+b") as f:  # one flipped byte in the weights
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    assert run_state(rd, spec) == "damaged"
    assert "model.safetensors: checksum differs" in R.verify_run(rd, s)


def test_config_diff_and_archive_never_overwrite(tmp_path):
    assert config_diff({"train": {"lr": 1, "steps": 2}, "config_hash": "a"},
                       {"train": {"lr": 2, "steps": 2}, "config_hash": "b"}) == ["train.lr: 1 -> 2"]
    for i in range(2):
        rd = tmp_path / "s" / "dense" / "seed-0"
        rd.mkdir(parents=True)
        (rd / "x").write_text(str(i))
        dest = archive_run(rd, "h1")
        assert (dest / "x").read_text() == str(i)
        assert not rd.exists()
    assert sorted(p.name for p in (tmp_path / "s/superseded").iterdir()) == ["h1", "h1-2"]


def test_lock_refuses_then_waits(tmp_path):
    with suite_lock(tmp_path / "s"):
        with pytest.raises(UserError, match=r"in use by another moebench run \(pid \d+ on .* since "):
            with suite_lock(tmp_path / "s"):
                pass
    # No timing in this test: the holder keeps the lock until told to let go (a line on its stdin), and writes a
    # marker file while it still holds it, so "we got the lock after the holder let go" is an ordering the test
    # can check on a loaded machine (it used to sleep 2 s and poll the holder's exit, a race under load).
    marker = tmp_path / "holder-releasing"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys; from pathlib import Path; from moebench.runs.lock import suite_lock\n"
                               f"with suite_lock({str(tmp_path / 's')!r}):\n"
                               " print('held', flush=True); sys.stdin.readline()\n"
                               f" Path({str(marker)!r}).write_text('releasing')\n"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        said = []

        def log(msg):  # called once the waiter has found the lock busy: only then may the holder let go
            said.append(msg)
            holder.stdin.write("go\n")
            holder.stdin.flush()

        with suite_lock(tmp_path / "s", wait=True, poll_s=0.01, log=log):
            assert marker.read_text() == "releasing"  # we got it only after the holder let go
        assert len(said) == 1 and "waiting for" in said[0]
        assert holder.wait(timeout=600) == 0  # a bound on a bug, not a timing
    finally:
        if holder.poll() is None:
            holder.kill()


def test_sidebyside_times_variants_interleaved(trained):
    root, specs = trained
    rec = measure(specs, root, rounds=3, steps=1, log=lambda *a: None)
    assert rec["rounds"] == 3 and set(rec["step_time_s"]) == {"dense", "moe"}
    assert all(len(t) == 3 and min(t) > 0 for t in rec["step_time_s"].values())
    assert rec["env"]["device_name"] and len(rec["loadavg"]) == 2


def test_sidebyside_stops_at_its_budget_but_not_before_min_rounds(trained):
    """A zero budget still gives MIN_ROUNDS rounds (a ratio needs some); the budget is a share of the suite's wall,
    floored and capped."""
    from moebench.runs import sidebyside as sbs

    root, specs = trained
    rec = measure(specs, root, rounds=sbs.MIN_ROUNDS + 4, steps=1, max_seconds=0.0, log=lambda *a: None)
    assert rec["rounds"] == sbs.MIN_ROUNDS and rec["budget_s"] == 0.0 and rec["wall_s"] > 0
    assert sbs.budget_s(0.0) == sbs.MIN_SECONDS and sbs.budget_s(1e6) == sbs.MAX_SECONDS
    assert sbs.budget_s(300.0) == pytest.approx(sbs.SHARE * 300.0)
