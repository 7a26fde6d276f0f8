"""Open report.html and a published site in headless Chromium: the claims table is in the rendered DOM, the plots
are drawn (their colours are on screen), and the site's index links to a report that opens.

To look at it yourself: chromium --headless --no-sandbox --disable-gpu --screenshot=shot.png --window-size=1200,2000
file:///.../report.html
"""
import base64

import numpy as np
from matplotlib.image import imread
from tests.report.chromium import Dom, dump_dom, needs_chromium, screenshot
from tests.report.test_report_render import CLAIMS, make_results

from moebench.report.publish import publish
from moebench.report.render import write_report

PLOTS = 6  # loss vs tokens, FLOPs, wall-clock; throughput and memory; expert load of moe; speedup
TAB_BLUE, TAB_ORANGE, PASS_GREEN = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0xC8, 0xF0, 0xC8)


def near(img, rgb, tol=0.02):
    return int(np.all(np.abs(img - np.array(rgb) / 255) < tol, axis=2).sum())


@needs_chromium
def test_report_html_renders_its_claims_table_and_plots(tmp_path):
    out = tmp_path / "out"
    write_report(make_results(tmp_path), out)
    page = out / "report.html"
    dom = Dom(dump_dom(page))
    assert dom.h2[0] == "Claims"
    claims = dom.cells["Claims"]
    assert "switch speedup" in claims and claims.count("PASS") == len(CLAIMS)
    pngs = [s for s in dom.images if s.startswith("data:image/png;base64,")]
    assert len(pngs) == PLOTS
    assert all(base64.b64decode(s.split(",", 1)[1])[:4] == b"\x89PNG" for s in pngs)
    # tall enough for the whole page (about 3,800 px): the plots are drawn where the browser put them
    img = imread(screenshot(page, tmp_path / "shot.png", 1200, 5000))[..., :3]
    assert img.shape[:2] == (5000, 1200)
    assert near(img, PASS_GREEN) > 100  # the claims table laid out with its CSS
    # the variants' line colours (dense = tab:blue, moe = tab:orange): plots, not broken-image icons
    assert near(img, TAB_BLUE) > 500 and near(img, TAB_ORANGE) > 500, (near(img, TAB_BLUE), near(img, TAB_ORANGE))
    rgb = (img * 255).astype(np.uint32)
    colours = len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]))
    assert colours > 500, colours


@needs_chromium
def test_published_index_links_to_a_report_that_opens(tmp_path):
    for name in ("suite-a", "suite-b"):
        write_report(make_results(tmp_path / "res", name=name), tmp_path / "reports" / name)
    index = publish(tmp_path / "reports", tmp_path / "site")
    dom = Dom(dump_dom(index))
    assert dom.h2 == ["suite-a", "suite-b"]
    assert dom.cells["suite-a"].count("PASS") == len(CLAIMS)
    href = next(h for h in dom.links if h.endswith("report.html"))
    assert not href.startswith(("/", "file:", "http")), href  # relative: works from disk and on Pages
    report = Dom(dump_dom(index.parent / href))
    assert report.h2[0] == "Claims" and "switch speedup" in report.cells["Claims"]
    assert len(report.images) == PLOTS
