"""One reader verifies a run before any command trusts it: a bit-flipped weights file or a hand-edited
summary.json is named by export, eval, report and check; a run from before manifests is read as before."""
import shutil

import pytest
import yaml

from moebench import io as R
from moebench.cli import main
from tests.helpers import tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    d = tiny()
    d["variants"] = {"dense": {}}
    (root / "suite.yaml").write_text(yaml.safe_dump(d))
    assert main(["run", str(root / "suite.yaml"), "--results", str(root / "res"), "--reports", str(root / "rep"),
                 "--quiet"]) == 0
    assert main(["check", str(root / "res/tiny"), "--update-baseline", str(root / "base.json")]) == 0
    return root


def flip_weights(rd):
    data = bytearray((rd / R.FINAL_MODEL).read_bytes())
    data[-1] ^= 1
    (rd / R.FINAL_MODEL).write_bytes(bytes(data))
    return R.FINAL_MODEL


def edit_summary(rd):
    text = (rd / R.SUMMARY).read_text()
    s = R.read_json(rd / R.SUMMARY)
    loss = s["final"]["val_loss"]
    (rd / R.SUMMARY).write_text(text.replace(repr(loss), repr(loss - 0.5)))
    assert (rd / R.SUMMARY).read_text() != text
    return R.SUMMARY


@pytest.mark.parametrize("damage", [flip_weights, edit_summary])
@pytest.mark.parametrize("command", ["export", "eval", "report", "check", "compare"])
def test_a_damaged_file_is_named_by_every_command(trained, tmp_path, capsys, damage, command):
    shutil.copytree(trained / "res", tmp_path / "res")
    rd = tmp_path / "res/tiny/dense/seed-0"
    name = damage(rd)
    capsys.readouterr()
    argv = {"export": ["export", str(rd), "--out", str(tmp_path / "hf")],
            "eval": ["eval", str(rd), "--tasks", "ptb_ppl", "--limit", "1"],
            "report": ["report", str(tmp_path / "res/tiny"), "--out", str(tmp_path / "rep")],
            "check": ["check", str(tmp_path / "res/tiny"), "--baseline", str(trained / "base.json")],
            "compare": ["compare", str(trained / "res/tiny"), str(tmp_path / "res/tiny")]}[command]
    before = (rd / R.SUMMARY).read_bytes()
    code = main(argv)
    out = capsys.readouterr()
    if command == "report":  # the report is written, with the run marked damaged and the file named
        assert code == 0
        readme = (tmp_path / "rep" / "README.md").read_text()
        assert "damaged" in readme and name in readme
    elif command == "compare":  # a table of two result sets: the damaged run left out, and named below it
        assert code == 0 and "Damaged, left out" in out.out and str(rd / name) in out.out
    else:
        assert code == 2
        err = out.err.strip()
        assert len(err.splitlines()) == 1 and str(rd / name) in err and "damaged" in err
        assert not (tmp_path / "hf").exists()
    assert (rd / R.SUMMARY).read_bytes() == before  # eval did not rewrite the summary


def test_a_run_from_before_manifests_reads_as_before(trained, tmp_path):
    shutil.copytree(trained / "res", tmp_path / "res")
    rd = tmp_path / "res/tiny/dense/seed-0"
    (rd / R.MANIFEST).unlink()
    assert R.verify_run(rd, R.read_json(rd / R.SUMMARY)) is None
    edit_summary(rd)  # without a manifest a summary cannot be checked: legacy runs are unverified, not damaged
    assert R.verify_run(rd, R.read_json(rd / R.SUMMARY)) is None
    flip_weights(rd)  # their weights still are, by the summary's own integrity record
    assert "model.safetensors" in R.verify_run(rd, R.read_json(rd / R.SUMMARY))


def test_rewriting_a_summary_keeps_the_run_verified_and_never_blesses_damage(trained, tmp_path):
    shutil.copytree(trained / "res", tmp_path / "res")
    rd = tmp_path / "res/tiny/dense/seed-0"
    s = R.read_json(rd / R.SUMMARY)
    R.write_summary(rd, {**s, "lm_eval": {"ptb_ppl": {"ppl": 1.0}}})  # what `eval` does
    assert R.verify_run(rd, R.read_json(rd / R.SUMMARY)) is None
    flip_weights(rd)
    R.write_summary(rd, s)
    assert R.FINAL_MODEL in R.verify_run(rd, R.read_json(rd / R.SUMMARY))


@pytest.mark.parametrize("command", ["report", "check"])
def test_an_edited_sidebyside_timing_is_named_and_not_used(tmp_path, capsys, command):
    from tests.analysis.test_check import _with_sidebyside, write_results

    d = _with_sidebyside(write_results(tmp_path / "res"), 0.10, 0.125)
    base = tmp_path / "base.json"
    assert main(["check", str(d), "--update-baseline", str(base)]) == 0
    rec = R.read_json(d / R.SIDEBYSIDE)
    rec["step_time_s"]["dense"] = [t * 100 for t in rec["step_time_s"]["dense"]]  # step times x100 by hand
    (d / R.SIDEBYSIDE).write_text(yaml.safe_dump(rec))  # any bytes but the recorded ones
    capsys.readouterr()
    if command == "report":
        assert main(["report", str(d), "--out", str(tmp_path / "rep")]) == 0
        readme = (tmp_path / "rep" / "README.md").read_text()
        assert "Damaged files" in readme and str(d / R.SIDEBYSIDE) in readme and "side by side" not in readme.lower()
    else:
        assert main(["check", str(d), "--baseline", str(base)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(d / R.SIDEBYSIDE) in err
