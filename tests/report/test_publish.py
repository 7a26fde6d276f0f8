"""`moebench publish`: one static site from report directories, relative links that all resolve, clear errors."""
import re
from pathlib import Path

import pytest
from tests.report.test_report_render import make_results

from moebench.cli import main
from moebench.io import EVIDENCE_ROOT as EVIDENCE
from moebench.report.publish import publish
from moebench.report.render import write_report

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("pub")
    for name in ("suite-a", "suite-b"):
        write_report(make_results(root / "res", name=name), root / "reports" / name)
    (root / "reports" / "notes").mkdir()  # not a report: no report.html
    return root / "reports"


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"#]+)', html)


def test_site_has_an_index_and_every_report_with_its_files(reports, tmp_path, capsys):
    site = tmp_path / "site"
    assert main(["publish", str(reports), "--out", str(site)]) == 0
    assert "site:" in capsys.readouterr().out
    index = (site / "index.html").read_text()
    assert "2 suites; claims: 6 PASS." in index and "suite-a</a>: 3 PASS" in index
    assert "switch speedup" in index and 'class="pass"' in index
    for name in ("suite-a", "suite-b"):
        got = {p.relative_to(site / name).as_posix() for p in (site / name).rglob("*") if p.is_file()}
        assert {"report.html", "README.md", "results.csv", "curves.csv", "verdicts.json",
                "plots/val_loss_vs_tokens.png"} <= got
        assert (site / name / "report.html").read_bytes() == (reports / name / "report.html").read_bytes()
    assert not (site / "notes").exists() and (site / ".nojekyll").exists()
    links = hrefs(index)
    assert links and all(not re.match(r"^(/|[a-z]+:)", h) for h in links)  # relative only
    assert all((site / h).is_file() for h in links)
    # README.md's image links resolve inside the site too
    readme = (site / "suite-a" / "README.md").read_text()
    assert all((site / "suite-a" / p).is_file() for p in re.findall(r"\]\((plots/[^)]+)\)", readme))


def test_republishing_replaces_the_site_and_keeps_what_publish_did_not_write(reports, tmp_path):
    site = tmp_path / "site"
    publish(reports, site)
    fresh = (site / "index.html").read_text()
    (site / "index.html").write_text("old")
    (site / "extra.html").write_text("the user's own page")
    publish(reports, site)
    assert (site / "index.html").read_text() == fresh and (site / "extra.html").read_text() == "the user's own page"


def test_the_committed_evidence_publishes(tmp_path):
    index = publish(REPO / EVIDENCE, tmp_path / "site")
    suites = sorted(p.parent.name for p in (REPO / EVIDENCE).glob("*/report.html"))
    assert suites and all(f'href="{s}/report.html"' in index.read_text() for s in suites)


@pytest.mark.parametrize("case,message", [
    ("missing", "reports directory not found"),
    ("empty", "no reports in it"),
    ("inside", "must not equal, contain or lie inside the reports"),
    ("occupied", "not a site moebench publish wrote"),
])
def test_bad_arguments_are_one_line_errors_that_change_nothing(reports, tmp_path, capsys, case, message):
    src, out = reports, tmp_path / "site"
    if case == "missing":
        src = tmp_path / "nope"
    elif case == "empty":
        src = tmp_path / "empty"
        src.mkdir()
    elif case == "inside":
        out = reports / "site"
    else:
        out.mkdir()
        (out / "mine.txt").write_text("keep")
    assert main(["publish", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert case != "occupied" or sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert not (reports / "site").exists()
