"""The output side of the command line: a reader that goes away early is a quiet exit 141, and a hand-edited
config_hash cannot move a run outside its results folder."""
import fcntl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moebench import io as R
from moebench.cli import main
from tests.helpers import tiny

REPO = Path(__file__).resolve().parents[2]


def test_a_reader_that_closes_early_ends_the_command_quietly_with_141(tmp_path):
    d = tiny(**{"match.strict": False})
    d["variants"] = {f"d{i}": {} for i in range(60)}  # `plan --json`: ~28 kB, far more than the pipe holds
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(d))
    p = subprocess.Popen([sys.executable, "-m", "moebench", "plan", str(tmp_path / "s.yaml"), "--json"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    # the smallest pipe (one page): the writer cannot finish before the reader closes, whatever the timing
    fcntl.fcntl(p.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    assert p.stdout.readline().startswith(b"[")
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait() == 141 and err == b""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("hash")
    d = tiny()
    d["variants"] = {"dense": {}}
    (root / "suite.yaml").write_text(yaml.safe_dump(d))
    assert main(["run", str(root / "suite.yaml"), "--results", str(root / "res"), "--reports", str(root / "rep"),
                 "--quiet"]) == 0
    return root


def test_a_hostile_config_hash_cannot_move_a_run_outside_the_results(finished, capsys):
    root = finished
    rd = root / "res/tiny/dense/seed-0"
    summary = R.read_json(rd / R.SUMMARY)
    R.atomic_write_json(rd / R.SUMMARY, {**summary, "config_hash": "../../../../escaped"})
    edited = (rd / R.SUMMARY).read_text()
    args = ["run", str(root / "suite.yaml"), "--results", str(root / "res"), "--reports", str(root / "rep")]
    assert main(args) == 2  # a finished run of "another config": kept without --force
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main([*args, "--force", "--quiet"]) == 0
    outside = [p for p in root.parent.rglob("escaped")] + list(root.rglob("escaped"))
    assert not outside
    archived = list((root / "res/tiny/superseded").glob("damaged-*/dense/seed-0"))
    assert len(archived) == 1 and (archived[0] / R.SUMMARY).read_text() == edited
