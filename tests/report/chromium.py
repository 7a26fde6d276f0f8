"""Headless Chromium for the browser tests: the DOM after load (--dump-dom) and screenshots (--screenshot).

Tests that need it skip where /usr/bin/chromium is missing (install: apt-get install -y chromium), unless
MOEBENCH_REQUIRE_CHROMIUM=1 (CI sets it after installing Chromium), where a missing browser fails them instead.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MOEBENCH_CHROMIUM", "/usr/bin/chromium"))
# the flags that run headless here: no sandbox (root in a container), no GPU, no network side traffic
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("MOEBENCH_REQUIRE_CHROMIUM") != "1",
    reason=f"needs {CHROMIUM} (apt-get install -y chromium); CI installs it and sets MOEBENCH_REQUIRE_CHROMIUM=1")


def _run(args: list[str], url: str) -> bytes:
    with tempfile.TemporaryDirectory() as profile:
        p = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, url], check=True,
                           timeout=600, capture_output=True)  # bounds a hang only
    return p.stdout


def dump_dom(path: Path) -> str:
    return _run(["--dump-dom"], Path(path).resolve().as_uri()).decode("utf-8")


def screenshot(path: Path, out: Path, width: int = 1200, height: int = 2000) -> Path:
    _run([f"--screenshot={out}", f"--window-size={width},{height}", "--hide-scrollbars"], Path(path).resolve().as_uri())
    return out


class Dom(HTMLParser):
    """The parts of a page the tests look at: headings, table cells after each h2, links, images."""

    def __init__(self, html: str):
        super().__init__()
        self.h2: list[str] = []
        self.cells: dict[str, list[str]] = {}  # h2 text -> the texts of the <td>s under it
        self.links: list[str] = []
        self.images: list[str] = []
        self._tag, self._text = None, ""
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag in ("h2", "td"):
            self._tag, self._text = tag, ""

    def handle_data(self, data):
        if self._tag:
            self._text += data

    def handle_endtag(self, tag):
        if tag != self._tag:
            return
        if tag == "h2":
            self.h2.append(self._text.strip())
        elif self.h2:
            self.cells.setdefault(self.h2[-1], []).append(self._text.strip())
        self._tag = None
