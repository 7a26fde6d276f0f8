"""Open report.html in headless Chromium and check the screenshot is a real rendering, not a blank page.

Runs only where /usr/bin/chromium exists (install: apt-get install -y chromium). To look at it yourself:
    chromium --headless --no-sandbox --disable-gpu --screenshot=shot.png --window-size=1200,2000 file:///.../report.html
"""
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from tests.report.test_report_render import make_results

from moebench.report.render import write_report

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_report_html_renders_in_headless_chromium(tmp_path):
    out = tmp_path / "out"
    write_report(make_results(tmp_path), out)
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,2000", (out / "report.html").resolve().as_uri()],
                   check=True, timeout=90, capture_output=True)
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (2000, 1200)
    # text, tables and a plot: many distinct colours and a fair share of non-white pixels (a blank page has neither)
    non_white = (img.min(axis=2) < 0.9).mean()
    colours = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert non_white > 0.05, non_white
    assert colours > 200, colours
    # the PASS cells are drawn in their green (#c8f0c8): the table was laid out with its CSS
    green = np.all(np.abs(img - np.array([0xC8, 0xF0, 0xC8]) / 255) < 0.02, axis=2).sum()
    assert green > 100, green
