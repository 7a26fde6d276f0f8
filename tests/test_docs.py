"""The docs: generated pages are current, the README is short, and every repository path they name exists."""
import re
from pathlib import Path

from moebench.cli.reference import pages

REPO = Path(__file__).resolve().parents[1]
# outputs a run or a command creates, not files of the repository
OUTPUTS = ("results", "reports/", "site", "ci-results", "ci-reports", "hf-", "my-", "out", "/tmp")


def test_generated_reference_pages_are_current():
    stale = [name for name, text in pages().items() if (REPO / "docs" / name).read_text(encoding="utf-8") != text]
    assert stale == [], f"stale: {stale}; run python -m moebench.cli.reference"


def test_readme_is_short():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) < 250


def _named_paths(doc: Path):
    text = doc.read_text(encoding="utf-8")
    for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+:", link):
            yield (doc.parent / link).resolve().relative_to(REPO).as_posix()
    for code in re.findall(r"`([^`\s]+)`", text):
        first = code.split("/")[0]
        # a folder of the repository first: not an absolute or climbing path (the docs show hostile ones as
        # examples), nor a path under a file
        if "/" in code and not re.search(r"[<>*{}$=:|\[\]]", code) and first not in ("", ".", "..") \
                and (REPO / first).is_dir():
            yield code.rstrip("/.,")


def test_every_repository_path_in_the_readme_and_docs_exists():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    missing = sorted({f"{d.relative_to(REPO)}: {p}" for d in docs for p in _named_paths(d)
                      if not p.startswith(OUTPUTS) and not (REPO / p).exists()})
    assert missing == []


def test_every_command_help_renders():
    """argparse %-formats each help string: a bare '%' in one ('2.5% over') crashed `moebench run --help`."""
    from moebench.cli import build_parser

    parser = build_parser()
    parser.format_help()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        assert f"moebench {name}" in sub.format_help()
