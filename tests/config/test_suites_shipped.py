"""Every suite shipped in suites/ validates and plans, under each of its presets."""
from pathlib import Path

import pytest
import yaml

from moebench.cli.commands import plan_suite
from moebench.config.suite import load_suite

SUITES = sorted((Path(__file__).resolve().parents[2] / "suites").glob("*.yaml"))
CASES = [(p, preset) for p in SUITES for preset in (yaml.safe_load(p.read_text()).get("presets") or {None: 0})]


@pytest.mark.parametrize("path,preset", CASES, ids=[f"{p.stem}:{pr}" for p, pr in CASES])
def test_shipped_suite_plans(path, preset):
    suite = load_suite(path, preset=preset)
    plan = plan_suite(suite)
    assert len(plan.rows) == len(suite.variants) * max(1, len(suite.sizes)) >= 1  # a sweep: every variant per size
    for row in plan.rows:
        if row.match_ratio is not None:
            assert abs(row.match_ratio - 1) <= suite.match.tolerance


def test_reproduction_suites_have_three_seeds_and_cite_a_paper():
    for p in SUITES:
        if p.stem in ("quickstart", "ci"):
            continue
        text = p.read_text()
        s = load_suite(p)
        assert len(s.train.seeds) >= 3, p.name
        assert s.description and " et al. " in text, p.name
