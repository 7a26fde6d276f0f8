"""`moebench publish --docs DIR`: the docs folder in the site, as it is and rendered, linked from the index, listed
in the marker so a republish removes only its own files."""
from pathlib import Path

import pytest
from tests.report.test_output_ownership import reports, tree  # noqa: F401 - the module's reports fixture

from moebench import io as R
from moebench.cli import main
from moebench.report import docpages
from moebench.report.publish import MARKER

REPO = Path(__file__).resolve().parents[2]
GUIDE = """# A guide

Some text with `code`, **bold** and a [link to the other page](other.md#part) and [an address](https://x.org/a.md).

| case | exit |
|---|---|
| a <script>alert(1)</script> | 2 |

- one item
  continued here
- two

```yaml
name: <b>not bold</b>
```
"""


@pytest.fixture
def docs(tmp_path):
    d = tmp_path / "docs"
    (d / "img").mkdir(parents=True)
    (d / "guide.md").write_text(GUIDE)
    (d / "other.md").write_text("# Other\n\nback to [the guide](guide.md)\n")
    (d / "img" / "plot.png").write_bytes(b"\x89PNG not really")
    (d / ".hidden.md").write_text("# not published\n")
    return d


def _marker(site):
    return set(R.read_json(site / MARKER)["files"])


def test_the_docs_are_published_as_they_are_and_rendered(reports, docs, tmp_path):  # noqa: F811
    site = tmp_path / "site"
    assert main(["publish", str(reports), "--docs", str(docs), "--out", str(site)]) == 0
    for rel in ("guide.md", "other.md", "img/plot.png"):
        assert (site / "docs" / rel).read_bytes() == (docs / rel).read_bytes()
    assert not (site / "docs" / ".hidden.md").exists()
    page = (site / "docs" / "guide.html").read_text()
    assert "<h1>A guide</h1>" in page and "<code>code</code>" in page and "<strong>bold</strong>" in page
    assert '<a href="other.html#part">' in page and '<a href="https://x.org/a.md">' in page  # only relative .md
    assert "<table>" in page and "<script>" not in page and "&lt;script&gt;" in page  # escaped, never markup
    assert "<li>one item continued here</li>" in page and "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert '<a href="../index.html">' in page
    index = (site / "index.html").read_text()
    assert "<h2>Documentation</h2>" in index and '<a href="docs/guide.html">A guide</a>' in index
    assert '<a href="docs/other.md">markdown</a>' in index
    assert {"docs/guide.md", "docs/guide.html", "docs/other.md", "docs/other.html", "docs/img/plot.png"} <= _marker(site)


def test_a_republish_removes_only_its_own_doc_files(reports, docs, tmp_path):  # noqa: F811
    site = tmp_path / "site"
    assert main(["publish", str(reports), "--docs", str(docs), "--out", str(site)]) == 0
    (site / "docs" / "notes.txt").write_text("mine")  # a file the user put beside the docs
    (docs / "other.md").unlink()
    assert main(["publish", str(reports), "--docs", str(docs), "--out", str(site)]) == 0
    assert not (site / "docs" / "other.md").exists() and not (site / "docs" / "other.html").exists()
    assert (site / "docs" / "guide.html").exists() and (site / "docs" / "notes.txt").read_text() == "mine"
    assert main(["publish", str(reports), "--out", str(site)]) == 0  # without --docs: its doc files go
    assert not (site / "docs" / "guide.md").exists() and not (site / "docs" / "img").exists()
    assert (site / "docs" / "notes.txt").read_text() == "mine" and "Documentation" not in (site / "index.html").read_text()
    assert not any(f.startswith("docs/") for f in _marker(site))


@pytest.mark.parametrize("case", ["not a folder", "overlaps --out", "a report named docs"])
def test_a_bad_docs_folder_is_refused_before_writing(reports, docs, tmp_path, capsys, case):  # noqa: F811
    site, argv_docs = tmp_path / "site", docs
    if case == "not a folder":
        argv_docs = docs / "guide.md"
    elif case == "overlaps --out":
        site = docs / "site"
    else:
        (reports.parent / "more").mkdir()
        (reports.parent / "more" / "docs").symlink_to(reports / "suite-a")
        before = tree(reports.parent)
    root = reports.parent / "more" if case == "a report named docs" else reports
    capsys.readouterr()
    assert main(["publish", str(root), "--docs", str(argv_docs), "--out", str(site)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("--docs" in err or "docs" in err)
    assert not site.exists()
    if case == "a report named docs":
        assert tree(reports.parent) == before
        (reports.parent / "more" / "docs").unlink()
        (reports.parent / "more").rmdir()


def test_every_page_of_the_project_docs_renders(tmp_path):
    for page in docpages.pages(REPO / "docs"):
        text = (REPO / "docs" / page.rel).read_text(encoding="utf-8")
        out = docpages.page_html(page.title, text, "", 1)
        assert out.count("<table>") == out.count("</table>") and out.count("<pre>") == out.count("</pre>")
        assert page.title != page.rel  # every doc starts with a "# " title
