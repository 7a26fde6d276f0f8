"""Commands own exactly what they write: publish never touches a folder it did not write, a name read from disk
never reaches a path outside its folder, files follow the umask."""
import os
import stat
from pathlib import Path

import pytest
import yaml
from tests.report.test_report_render import make_results

from moebench import io as R
from moebench.errors import UserError
from moebench.cli import main
from moebench.report.publish import MARKER, publish
from moebench.report.render import write_report


def tree(root: Path) -> dict:
    """Every path under root with its bytes (files) and mode: what 'byte-for-byte unchanged' compares."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None, p.lstat().st_mode)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    for name in ("suite-a", "suite-b"):
        write_report(make_results(root / "res", name=name), root / "reports" / name)
    return root / "reports"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_foreign_folder_with_its_own_index_is_left_byte_for_byte_unchanged(reports, tmp_path, capsys):
    docs = tmp_path / "docs"
    (docs / "blog").mkdir(parents=True)
    (docs / "index.html").write_text("<h1>my docs</h1>")
    (docs / "blog" / "post.html").write_text("a post")
    before = tree(docs)
    assert main(["publish", str(reports), "--out", str(docs)]) == 2
    assert MARKER in one_line_error(capsys)
    assert tree(docs) == before


@pytest.mark.parametrize("where", ["parent", "equal", "a report"])
def test_an_out_that_overlaps_the_reports_is_refused(reports, capsys, where):
    out = {"parent": reports.parent, "equal": reports, "a report": reports / "suite-a"}[where]
    before = tree(reports.parent)
    assert main(["publish", str(reports), "--out", str(out)]) == 2
    assert "must not equal, contain or lie inside" in one_line_error(capsys)
    assert tree(reports.parent) == before


def test_republishing_removes_only_what_publish_wrote(reports, tmp_path):
    site = tmp_path / "site"
    publish(reports, site)
    (site / "CNAME").write_text("bench.example.org")  # the user's own file in the site: kept
    (site / "suite-a" / "notes.txt").write_text("mine")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("suite-a",):  # suite-b is no longer published: its files go, and only its files
        os.symlink(reports / name, src / name)
    publish(src, site)
    assert (site / "CNAME").read_text() == "bench.example.org"
    assert (site / "suite-a" / "notes.txt").read_text() == "mine"
    assert not (site / "suite-b").exists() and (site / "suite-a" / "report.html").is_file()
    assert "suite-b" not in (site / "index.html").read_text()
    assert all(not f.startswith("suite-b/") for f in R.read_json(site / MARKER)["files"])


def test_a_file_in_the_way_of_the_site_is_refused_before_anything_is_written(reports, tmp_path, capsys):
    site = tmp_path / "site"
    publish(reports, site)
    (site / "suite-b").rename(tmp_path / "moved")
    (site / "suite-b").write_text("a file of the user's where publish wants a folder")
    before = tree(site)
    assert main(["publish", str(reports), "--out", str(site)]) == 2
    assert "suite-b" in one_line_error(capsys)
    assert tree(site) == before


@pytest.mark.parametrize("name", ["ABS", "../escaped", "..", "a/b", "tab\there"])
def test_a_hostile_suite_name_cannot_place_the_report_outside_reports(tmp_path, monkeypatch, capsys, name):
    d = make_results(tmp_path / "res", name="victim")
    name = str(tmp_path / "abs-target") if name == "ABS" else name
    suite = yaml.safe_load((d / "suite.yaml").read_text())
    (d / "suite.yaml").write_text(yaml.safe_dump({**suite, "name": name}))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    assert main(["report", str(d)]) == 2
    err = one_line_error(capsys)
    assert "suite.yaml: name" in err and "--out" in err
    assert tree(tmp_path) == before  # nothing written: not abs-target, not ../escaped, not reports/


def test_report_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    d = make_results(tmp_path / "res", name="s")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README.md").write_text("the project's own readme")
    before = tree(docs)
    assert main(["report", str(d), "--out", str(docs)]) == 2
    assert "not a moebench report" in one_line_error(capsys)
    assert tree(docs) == before


def test_a_hostile_integrity_name_is_named_not_read(tmp_path):
    d = make_results(tmp_path / "res", name="s")
    rd = d / "dense" / "seed-0"
    s = R.read_json(rd / R.SUMMARY)
    # written with its manifest (as a tool that recomputes checksums would): the name itself must be refused
    R.write_summary(rd, {**s, "integrity": {"../../../../etc/passwd": {"sha256": "x"}}})
    problem = R.verify_run(rd, R.read_json(rd / R.SUMMARY))
    assert problem and "integrity" in problem and "not a safe file or folder name" in problem


@pytest.mark.parametrize("name", ["", ".", "..", "/abs", "a/b", "a\\b", "nl\n", "nul\x00", "del\x7f", 3, None])
def test_the_path_helper_refuses_every_unsafe_name(tmp_path, name):
    with pytest.raises(UserError, match="not a safe file or folder name"):
        R.safe_join(tmp_path, name, what="x")


def modes(root: Path) -> set:
    return {(p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in root.rglob("*")}


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_results_reports_and_site_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        d = make_results(tmp_path / "res", name="s")  # the real producers' atomic writes
        write_report(d, tmp_path / "reports" / "s")
        publish(tmp_path / "reports", tmp_path / "site")
    finally:
        os.umask(old)
    for root in ("res", "reports", "site"):
        assert modes(tmp_path / root) == {(False, file_mode), (True, dir_mode)}, root
    assert stat.S_IMODE((tmp_path / "site").stat().st_mode) == dir_mode
