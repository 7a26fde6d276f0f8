"""`moebench publish REPORTS_DIR --out SITE`: one static site from the committed reports, ready for GitHub Pages.

SITE/index.html lists every suite with its verdict counts and claims table and links to SITE/<suite>/report.html
(the report's self-contained page, copied with its plots, CSVs, verdicts.json and README.md beside it). Every
link is relative, so the site works from the file system (file://) and under any Pages sub-path, with no server.
A report directory is one that holds report.html and verdicts.json (what `moebench run` / `report` write).
"""
from __future__ import annotations

import dataclasses
import html
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from moebench.analysis.claims import Verdict
from moebench.errors import UserError

from .render import STYLE, html_table
from .tables import claims_table

INDEX = "index.html"
PAGE_FILES = ("report.html", "verdicts.json", "README.md", "results.csv", "curves.csv")
VERDICT_ORDER = ("PASS", "FAIL", "INCONCLUSIVE")


@dataclasses.dataclass(frozen=True)
class ReportEntry:
    name: str  # the report directory's name: the suite (with its preset)
    title: str
    verdicts: list[Verdict]


def find_reports(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).glob("*/report.html") if (p.parent / "verdicts.json").exists())


def read_entry(d: Path) -> ReportEntry:
    try:
        rows = json.loads((d / "verdicts.json").read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(Verdict)}
        verdicts = [Verdict(**{k: v for k, v in r.items() if k in fields}) for r in rows]
    except (ValueError, TypeError) as e:
        raise UserError(f"{d / 'verdicts.json'}: not a moebench verdicts file ({e})") from None
    head = (d / "README.md").read_text(encoding="utf-8").splitlines()[:1] if (d / "README.md").exists() else []
    title = head[0].lstrip("# ").strip() if head and head[0].startswith("# ") else d.name
    return ReportEntry(d.name, title, verdicts)


def counts_text(verdicts: list[Verdict]) -> str:
    c = Counter(v.verdict for v in verdicts)
    return ", ".join(f"{c[k]} {k}" for k in VERDICT_ORDER if c[k]) or "no claims"


def index_html(entries: list[ReportEntry]) -> str:
    esc = html.escape
    total = counts_text([v for e in entries for v in e.verdicts])
    parts = [f"<h1>moebench reports</h1>\n<p>{len(entries)} suites; claims: {esc(total)}.</p>",
             "<ul>\n" + "\n".join(f'<li><a href="#{esc(e.name)}">{esc(e.name)}</a>: {esc(counts_text(e.verdicts))}'
                                  "</li>" for e in entries) + "\n</ul>"]
    for e in entries:
        link = f"{esc(e.name)}/report.html"
        parts.append(f'<h2 id="{esc(e.name)}"><a href="{link}">{esc(e.name)}</a></h2>\n'
                     f"<p>{esc(e.title)}: {esc(counts_text(e.verdicts))}. "
                     f'<a href="{link}">full report</a>, <a href="{esc(e.name)}/README.md">markdown</a>, '
                     f'<a href="{esc(e.name)}/results.csv">results.csv</a>, '
                     f'<a href="{esc(e.name)}/verdicts.json">verdicts.json</a></p>')
        parts.append(html_table(claims_table(e.verdicts)) if e.verdicts else "<p>No claims.</p>")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>moebench reports</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _copy_report(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for name in PAGE_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    if (src / "plots").is_dir():  # README.md's images (report.html embeds its own)
        shutil.copytree(src / "plots", dst / "plots")


def publish(reports_dir: Path, out: Path) -> Path:
    """Write the site to `out` (replacing a previous site there); the index page's path."""
    root, out = Path(reports_dir), Path(out)
    if not root.is_dir():
        raise UserError(f"{root}: reports directory not found")
    dirs = find_reports(root)
    if not dirs:
        raise UserError(f"{root}: no reports in it (a report is <suite>/report.html with verdicts.json, as written "
                        "by moebench run / moebench report)")
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise UserError(f"--out {out}: must be outside the reports directory {root}")
    if out.exists() and any(out.iterdir()) and not (out / INDEX).exists():
        raise UserError(f"--out {out}: exists, is not empty and is not a published site (no {INDEX}); "
                        "choose a new directory")
    entries = [read_entry(d) for d in dirs]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for d in dirs:
            _copy_report(d, tmp / d.name)
        (tmp / INDEX).write_text(index_html(entries), encoding="utf-8")
        (tmp / ".nojekyll").write_text("", encoding="utf-8")  # GitHub Pages: serve files as they are
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / INDEX
