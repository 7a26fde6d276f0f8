"""The project's docs/ in the published site: each markdown file copied as it is and rendered as a simple HTML page
beside it (headings, paragraphs, lists, tables, code blocks, inline code, emphasis, links), so the site reads
without a markdown viewer. Everything from the file is HTML-escaped before any markup is added; a relative link to
a `.md` file points at its rendered `.html` page."""
from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path

from moebench import io as R

DOCS_DIR = "docs"  # where the docs go in the site: SITE/docs/
_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")
_LIST = re.compile(r"\A\s*(?:[-*]|\d+\.)\s+")


@dataclasses.dataclass(frozen=True)
class DocPage:
    rel: str  # path of the markdown file under the docs folder, '/'-separated
    title: str

    @property
    def html_rel(self) -> str:
        return self.rel[:-3] + ".html"


def doc_files(docs: Path) -> dict[str, Path]:
    """Every file under `docs` (hidden ones left out), as {path in the site: source}: markdown, and the images
    or other files it may link to. Names go through the path helper: nothing lands outside SITE/docs/."""
    out = {}
    for p in sorted(Path(docs).rglob("*")):
        rel = p.relative_to(docs).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            R.safe_relpath(Path(DOCS_DIR), rel, what=f"--docs {docs}")
            out[f"{DOCS_DIR}/{rel}"] = p
    return out


def pages(docs: Path) -> list[DocPage]:
    out = []
    for p in sorted(Path(docs).rglob("*.md")):
        rel = p.relative_to(docs).as_posix()
        if not any(part.startswith(".") for part in rel.split("/")):
            first = next((ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")), "")
            out.append(DocPage(rel, first[2:].strip() or rel))
    return out


def _href(url: str) -> str:
    # a relative link to another doc page goes to its rendered page; anything else is left as written
    if not re.match(r"\A[a-z][a-z0-9+.-]*:", url, re.I) and not url.startswith("/"):
        path, hash_, frag = url.partition("#")
        if path.endswith(".md"):
            url = path[:-3] + ".html" + hash_ + frag
    return url


def _inline(text: str) -> str:
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, bold, label, url = m.groups()
        out.append(f"<code>{html.escape(code)}</code>" if code is not None else
                   f"<strong>{html.escape(bold)}</strong>" if bold is not None else
                   f'<a href="{html.escape(_href(url), quote=True)}">{html.escape(label)}</a>')
        pos = m.end()
    return "".join(out) + html.escape(text[pos:])


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def render(text: str) -> str:
    """Markdown (the subset docs/ uses) as HTML body markup."""
    out, para, items, lines = [], [], [], text.splitlines()

    def flush():
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("```")), len(lines))
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1:j]))}</code></pre>")
            i = j + 1
            continue
        if m := re.match(r"\A(#{1,4}) (.*)", line):
            flush()
            out.append(f"<h{len(m.group(1))}>{_inline(m.group(2))}</h{len(m.group(1))}>")
        elif line.startswith("|"):
            flush()
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            rows = [_cells(r) for r in lines[i:j] if not re.fullmatch(r"[\s|:-]+", r)]
            head, body = rows[0], rows[1:]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            i = j
            continue
        elif not line.strip():
            flush()
        elif _LIST.match(line):
            if para:
                flush()
            items.append(_LIST.sub("", line, count=1))
        elif items and line.startswith(" "):  # a list item's continuation line
            items[-1] += " " + line.strip()
        else:
            if items:
                flush()
            para.append(line.strip())
        i += 1
    flush()
    return "\n".join(out)


def page_html(title: str, text: str, style: str, depth: int) -> str:
    """A standalone page: the rendered markdown and a link back to the site's index (`depth` folders up)."""
    up = "../" * depth
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n<p><a href=\"{up}index.html\">moebench reports</a></p>\n"
            f"{render(text)}\n</body></html>\n")
