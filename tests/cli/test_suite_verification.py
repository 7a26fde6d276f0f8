"""The rest of "one reader verifies what it trusts": a results folder's suite.yaml and plan.json (its manifest), the
token cache (a digest in each shard's header), runs from before manifests (labelled, not trusted silently), and
`eval` holding the run's lock."""
import fcntl
import os
import shutil

import pytest

from moebench import io as R
from moebench.cli import main
from moebench.data import cache
from moebench.runs import lock as L
from tests.cli.test_run_verification import edit_summary, trained  # noqa: F401 - the module's trained fixture


def _edit_suite_yaml(d):
    with open(d / R.SUITE_FILE, "a") as f:  # still the same suite to a YAML reader: only the checksum can tell
        f.write("# edited by hand\n")


def _flip_plan_json(d):
    text = (d / R.PLAN_FILE).read_text()
    i = next(i for i, c in enumerate(text) if c in "123456789")
    (d / R.PLAN_FILE).write_text(text[:i] + str(int(text[i]) - 1) + text[i + 1:])  # still valid JSON


def _copy(trained, tmp_path):  # noqa: F811
    shutil.copytree(trained / "res", tmp_path / "res")
    return tmp_path / "res/tiny"


@pytest.mark.parametrize("damage,name", [(_edit_suite_yaml, R.SUITE_FILE), (_flip_plan_json, R.PLAN_FILE)])
@pytest.mark.parametrize("command", ["report", "check", "compare", "run"])
def test_a_damaged_suite_file_is_named(trained, tmp_path, capsys, damage, name, command):  # noqa: F811
    d = _copy(trained, tmp_path)
    assert R.verify_suite_files(d) == ()  # the real producer recorded both
    damage(d)
    path = d / name
    capsys.readouterr()
    argv = {"report": ["report", str(d), "--out", str(tmp_path / "rep")],
            "check": ["check", str(d), "--baseline", str(trained / "base.json")],
            "compare": ["compare", str(trained / "res/tiny"), str(d)],
            "run": ["run", str(trained / "suite.yaml"), "--results", str(tmp_path / "res"), "--reports",
                    str(tmp_path / "rep"), "--quiet"]}[command]
    code = main(argv)
    out = capsys.readouterr()
    if command == "report":  # written, with the file named in its "Damaged files" section
        readme = (tmp_path / "rep" / "README.md").read_text()
        assert code == 0 and "## Damaged files" in readme and str(path) in readme
    elif command == "check":
        err = out.err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and str(path) in err and "checksum differs" in err
    elif command == "compare":
        assert code == 0 and "Damaged, left out" in out.out and str(path) in out.out
    else:  # resume: both are rewritten from the suite, after a line saying so; the folder verifies again
        lines = [ln for ln in out.err.splitlines() if str(path) in ln]
        assert code == 0 and len(lines) == 1 and "checksum differs" in lines[0] and "rewriting it" in lines[0]
        assert R.verify_suite_files(d) == ()
        assert path.read_bytes() == (trained / "res/tiny" / name).read_bytes()


def _flip_body(p):
    raw = bytearray(p.read_bytes())
    raw[100] ^= 1
    p.write_bytes(bytes(raw))


def _flip_n_bytes(p):  # a header field outside the body: version 2's digest did not cover it
    raw = bytearray(p.read_bytes())
    raw[24] ^= 1
    p.write_bytes(bytes(raw))


def _flip_magic(p):
    raw = bytearray(p.read_bytes())
    raw[0] ^= 1
    p.write_bytes(bytes(raw))


def _truncate(p):
    with open(p, "r+b") as f:
        f.truncate(1000)


@pytest.mark.parametrize("damage", [_flip_body, _flip_n_bytes, _flip_magic, _truncate])
def test_a_damaged_token_cache_is_named_and_rebuilt_by_run(trained, tmp_path, capsys, monkeypatch, damage):  # noqa: F811
    monkeypatch.setenv("MOEBENCH_CACHE", str(tmp_path / "cache"))
    _copy(trained, tmp_path)
    argv = ["run", str(trained / "suite.yaml"), "--results", str(tmp_path / "res"), "--reports",
            str(tmp_path / "rep"), "--quiet"]
    assert main(argv) == 0  # every run finished: only the token caches are built (into the empty cache)
    shards = sorted((tmp_path / "cache").glob("*.tok"))
    assert shards
    good = {p: p.read_bytes() for p in shards}
    damage(shards[0])
    capsys.readouterr()
    assert main(argv) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "token cache" in ln]
    assert len(err) == 1 and str(shards[0]) in err[0] and "damaged" in err[0] and "rebuilding" in err[0]
    assert {p: p.read_bytes() for p in shards} == good  # rebuilt from the corpus, the same bytes


def test_a_run_from_before_manifests_is_labelled_unverified(trained, tmp_path, capsys):  # noqa: F811
    d = _copy(trained, tmp_path)
    rd = d / "dense/seed-0"
    (rd / R.MANIFEST).unlink()  # what a run written before manifests looks like: everything else as the trainer left it
    capsys.readouterr()
    assert main(["report", str(d), "--out", str(tmp_path / "rep")]) == 0
    readme = (tmp_path / "rep" / "README.md").read_text()
    assert "## Unverified runs (legacy)" in readme and f"| dense | 0 | {R.LEGACY} |" in readme
    assert "## Failed runs" not in readme  # unverified, not damaged
    capsys.readouterr()
    assert main(["check", str(d), "--baseline", str(trained / "base.json")]) == 0
    assert f"{R.LEGACY}: dense seed 0" in capsys.readouterr().out
    assert main(["compare", str(trained / "res/tiny"), str(d)]) == 0
    out = capsys.readouterr().out
    assert R.LEGACY in out and "tiny: dense seed 0" in out and "Damaged" not in out
    # the control: the same folder with its manifest carries no label anywhere
    assert main(["report", str(trained / "res/tiny"), "--out", str(tmp_path / "rep2")]) == 0
    control = (tmp_path / "rep2" / "README.md").read_text()
    assert "Unverified" not in control and "Damaged files" not in control


def test_eval_of_a_legacy_run_adds_its_scores_but_keeps_it_unverified(trained, tmp_path, capsys):  # noqa: F811
    rd = _copy(trained, tmp_path) / "dense/seed-0"
    (rd / R.MANIFEST).unlink()
    edit_summary(rd)  # undetectable without a manifest: eval must not vouch for it by writing one
    capsys.readouterr()
    assert main(["eval", str(rd), "--tasks", "ptb_ppl", "--limit", "1"]) == 0
    err = capsys.readouterr().err
    assert R.LEGACY in err and str(rd) in err
    assert "ptb_ppl" in R.read_json(rd / R.SUMMARY)["lm_eval"] and not (rd / R.MANIFEST).exists()


def _hold(suite_dir):
    """The lock `moebench run` holds, taken here on a separate open file (flock excludes it within a process too)."""
    fd = os.open(suite_dir / L.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"cmd=run pid=4242 host=elsewhere since=then\n", 0)
    return fd


def test_eval_refuses_a_run_whose_lock_is_held(trained, tmp_path, capsys):  # noqa: F811
    d = _copy(trained, tmp_path)
    rd = d / "dense/seed-0"
    before = {p: p.read_bytes() for p in rd.iterdir()}
    fd = _hold(d)
    try:
        capsys.readouterr()
        assert main(["eval", str(rd), "--tasks", "ptb_ppl", "--limit", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "in use by another moebench run (pid 4242 on elsewhere" in err
        assert {p: p.read_bytes() for p in rd.iterdir()} == before  # summary and manifest untouched
    finally:
        os.close(fd)


def test_eval_with_wait_waits_for_the_holder(trained, tmp_path, capsys, monkeypatch):  # noqa: F811
    d = _copy(trained, tmp_path)
    rd = d / "dense/seed-0"
    fd = _hold(d)
    polls = []

    def holder_lets_go(_s):  # the waiter found the lock busy and sleeps: only now does the holder release it
        polls.append(_s)
        os.close(fd)

    monkeypatch.setattr(L.time, "sleep", holder_lets_go)
    capsys.readouterr()
    assert main(["eval", str(rd), "--tasks", "ptb_ppl", "--limit", "1", "--wait"]) == 0
    assert len(polls) == 1 and "waiting for" in capsys.readouterr().err
    assert "ptb_ppl" in R.read_json(rd / R.SUMMARY)["lm_eval"]
    assert R.verify_run(rd, R.read_json(rd / R.SUMMARY)) is None  # summary and manifest rewritten together
    assert (d / L.LOCK_NAME).read_text().startswith("cmd=eval ")  # the lock eval held names it


def test_eval_of_a_missing_run_creates_nothing(tmp_path):
    assert main(["eval", str(tmp_path / "res/tiny/dense/seed-9"), "--tasks", "ptb_ppl"]) == 2
    assert not (tmp_path / "res").exists()


def test_the_token_cache_digest_covers_the_header(tmp_path):
    path = tmp_path / "s.tok"
    cache.write_shard(path, ["hello world"], lambda s: list(s.encode()), vocab_size=256)
    cache.open_shard(path)
    _flip_n_bytes(path)
    with pytest.raises(ValueError, match="damaged"):
        cache.open_shard(path)
