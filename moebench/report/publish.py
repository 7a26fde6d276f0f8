"""`moebench publish REPORTS_DIR --out SITE`: one static site from the committed reports, ready for GitHub Pages.

SITE/index.html lists every suite with its verdict counts and claims table and links to SITE/<suite>/report.html
(the report's self-contained page, copied with its plots, CSVs, verdicts.json and README.md beside it). Every
link is relative, so the site works from the file system (file://) and under any Pages sub-path, with no server.
A report directory is one that holds report.html and verdicts.json (what `moebench run` / `report` write).
With --docs DIR (the project's docs/), SITE/docs/ holds its files as they are and each markdown file rendered as a
page (docpages.py), linked from the index; the marker lists them like every other file publish writes.
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import shutil
from collections import Counter
from pathlib import Path

from moebench import io as R
from moebench.analysis.claims import Verdict
from moebench.errors import UserError

from . import docpages
from .render import STYLE, html_table
from .tables import claims_table

INDEX = "index.html"
NOJEKYLL = ".nojekyll"
# written last into every site publish writes: which files are its own. Only a folder holding it is replaced, and
# only the files it lists are ever removed (never a folder's other content, never recognised by index.html).
MARKER = ".moebench-site.json"
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


def index_html(entries: list[ReportEntry], docs: list[docpages.DocPage] = ()) -> str:
    esc = html.escape
    total = counts_text([v for e in entries for v in e.verdicts])
    parts = [f"<h1>moebench reports</h1>\n<p>{len(entries)} suites; claims: {esc(total)}.</p>",
             "<ul>\n" + "\n".join(f'<li><a href="#{esc(e.name)}">{esc(e.name)}</a>: {esc(counts_text(e.verdicts))}'
                                  "</li>" for e in entries) + "\n</ul>"]
    if docs:
        parts.append("<h2>Documentation</h2>\n<ul>\n" + "\n".join(
            f'<li><a href="{esc(docpages.DOCS_DIR)}/{esc(d.html_rel)}">{esc(d.title)}</a> '
            f'(<a href="{esc(docpages.DOCS_DIR)}/{esc(d.rel)}">markdown</a>)</li>' for d in docs) + "\n</ul>")
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


def _site_files(dirs: list[Path]) -> dict[str, Path]:
    """Every file of the site but the index, as {path in the site: source file}."""
    out = {}
    for d in dirs:
        for name in PAGE_FILES:
            if (d / name).is_file():
                out[f"{d.name}/{name}"] = d / name
        if (d / "plots").is_dir():  # README.md's images (report.html embeds its own)
            out.update({f"{d.name}/{p.relative_to(d).as_posix()}": p for p in sorted((d / "plots").rglob("*"))
                        if p.is_file()})
    return out


def _check_out(out: Path, sources: list[Path]) -> list[str]:
    """What a previous publish wrote to `out` (its marker's list; [] for a new or empty folder). UserError if `out`
    overlaps a source, is a file, or holds anything publish did not write there."""
    o = out.resolve()
    for src in sources:
        s = src.resolve()
        if o == s or s in o.parents or o in s.parents:
            raise UserError(f"--out {out}: must not equal, contain or lie inside the reports or docs it publishes "
                            f"({src})")
    R.check_out_dir(out, "--out")
    if not out.exists() or not any(out.iterdir()):
        return []
    if not (out / MARKER).is_file():
        raise UserError(f"--out {out}: not empty and not a site moebench publish wrote (no {MARKER}); publish "
                        "writes only into an empty folder or its own earlier site: choose a new --out")
    try:
        written = R.read_json(out / MARKER)["files"]
    except (OSError, ValueError, TypeError, KeyError):
        raise UserError(f"{out / MARKER}: unreadable (damaged or hand-edited); choose a new --out") from None
    if not isinstance(written, list):
        raise UserError(f"{out / MARKER}: files is not a list (damaged or hand-edited); choose a new --out")
    for rel in written:
        R.safe_relpath(out, rel, f"{out / MARKER}: files")
    return written


def _check_foreign(out: Path, new: list[str], old: list[str]) -> None:
    """UserError if writing `new` into `out` would replace a file publish did not write, or write through a file or
    a link that is not its own folder."""
    mine = set(old)
    for rel in new:
        parts = rel.split("/")
        for i in range(1, len(parts)):  # the folders on the way: real folders, or absent
            d = out.joinpath(*parts[:i])
            if d.is_symlink() or (d.exists() and not d.is_dir()):
                raise UserError(f"--out {out}: {d} is not a folder publish made; move it away or choose a new --out")
        if rel not in mine and os.path.lexists(out / rel):
            raise UserError(f"--out {out}: {out / rel} exists and publish did not write it; move it away or "
                            "choose a new --out")


def _install(tmp: Path, out: Path, new: list[str], old: list[str]) -> None:
    """Move the files built in `tmp` into `out`: what the last publish wrote and this one does not is removed
    (with the folders that leaves empty); nothing else there is touched."""
    stale = [R.safe_relpath(out, rel, MARKER) for rel in old if rel not in set(new)]
    R.atomic_write_json(out / MARKER, {"written_by": "moebench publish", "files": sorted(set(old) | set(new))})
    for rel in new:
        dest = R.safe_relpath(out, rel, MARKER)
        dest.parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).replace(dest)
    for p in stale:
        if p.is_file() or p.is_symlink():
            p.unlink()
        for d in p.parents:
            if d == out or out not in d.parents:
                break
            try:
                d.rmdir()  # only if empty: a file someone else put beside ours keeps its folder
            except OSError:
                break
    R.atomic_write_json(out / MARKER, {"written_by": "moebench publish", "files": sorted(new)})


def publish(reports_dir: Path, out: Path, docs: Path | None = None) -> Path:
    """Write the site to `out` (an empty folder or an earlier site of publish's), with the markdown folder `docs`
    if given; the index page's path."""
    root, out = Path(reports_dir), Path(out)
    if not root.is_dir():
        raise UserError(f"{root}: reports directory not found")
    if docs is not None and not Path(docs).is_dir():
        raise UserError(f"--docs {docs}: not a directory")
    dirs = find_reports(root)
    if not dirs:
        raise UserError(f"{root}: no reports in it (a report is <suite>/report.html with verdicts.json, as written "
                        "by moebench run / moebench report)")
    if docs is not None and docpages.DOCS_DIR in {d.name for d in dirs}:
        raise UserError(f"{root}/{docpages.DOCS_DIR}: a report named like the site's docs folder; rename it or "
                        "publish without --docs")
    old = _check_out(out, [root, *dirs, *([Path(docs)] if docs is not None else [])])
    entries = [read_entry(d) for d in dirs]
    files = _site_files(dirs)
    doc_pages = docpages.pages(Path(docs)) if docs is not None else []
    if docs is not None:
        files.update(docpages.doc_files(Path(docs)))
    # rendered pages, unless docs/ itself holds a file of that name (then it is copied as it is)
    rendered = {f"{docpages.DOCS_DIR}/{d.html_rel}": d for d in doc_pages
                if f"{docpages.DOCS_DIR}/{d.html_rel}" not in files}
    new = sorted([*files, *rendered, INDEX, NOJEKYLL])
    if out.exists():
        _check_foreign(out, new, old)
    tmp = R.make_temp_dir(out.parent, f".{out.name}.")
    try:
        for rel, src in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)  # copyfile, not copy2: the site's modes follow the umask, not the source's
        for rel, page in rendered.items():
            text = files[f"{docpages.DOCS_DIR}/{page.rel}"].read_text(encoding="utf-8")
            (tmp / rel).write_text(docpages.page_html(page.title, text, STYLE, rel.count("/")), encoding="utf-8")
        (tmp / INDEX).write_text(index_html(entries, doc_pages), encoding="utf-8")
        (tmp / NOJEKYLL).write_text("", encoding="utf-8")  # GitHub Pages: serve files as they are
        out.mkdir(parents=True, exist_ok=True)
        _install(tmp, out, new, old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / INDEX
