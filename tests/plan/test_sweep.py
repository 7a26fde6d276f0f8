"""A suite's sweep: section: validation with the size's path, per-size plans (auto widths re-solved, FLOP match at
every size, token budgets), RunSpecs keyed and hashed by size, and runs of suites without a sweep unchanged."""
import pytest

from moebench.config.suite import build_suite
from moebench.errors import SuiteValidationError
from moebench.plan import make_plan, plan_suite, run_specs
from moebench.plan.runspec import config_hash
from tests.helpers import SWEEP_SIZES, tiny, tiny_sweep

SIZES = SWEEP_SIZES
sweep_suite = tiny_sweep


def test_every_variant_at_every_size_with_auto_widths_resolved():
    suite = build_suite(sweep_suite())
    assert list(suite.sizes) == ["s", "m", "l"] and suite.sizes["m"].variants["moe"].d_model == 32
    plan = plan_suite(suite)
    assert [r.key for r in plan.rows] == ["dense@s", "moe@s", "dense@m", "moe@m", "dense@l", "moe@l"]
    moe = {r.size: r for r in plan.rows if r.name == "moe"}
    assert moe["s"].solved["expert_d_ff"] < moe["m"].solved["expert_d_ff"] < moe["l"].solved["expert_d_ff"]
    for r in moe.values():
        assert abs(r.flop_ratio - 1) <= 0.1  # the suite's tolerance holds at each size
    dense = {r.size: r for r in plan.rows if r.name == "dense"}
    per_step = 4 * 32
    assert dense["s"].steps == round(0.1 * dense["s"].params_total / per_step)  # the sweep's default budget
    assert dense["m"].steps == round(0.2 * dense["m"].params_total / per_step)  # the size's own
    assert dense["l"].steps == 20 and moe["l"].steps == 20  # same budget for every variant of a size
    assert plan.configs["moe@l"].d_model == 48


def test_run_specs_are_keyed_and_hashed_by_size():
    plan = plan_suite(build_suite(sweep_suite()))
    specs = run_specs(plan)
    assert len(specs) == 12 and len({s.config_hash for s in specs}) == 12
    assert [(s.key, s.seed) for s in specs[:3]] == [("dense@s", 0), ("dense@s", 1), ("moe@s", 0)]
    l = next(s for s in specs if s.key == "moe@l")
    assert l.size == "l" and l.train.steps == 20 and l.model.d_model == 48
    assert run_specs(plan, only=["dense"])[0].key == "dense@s"
    d = l.to_dict()
    assert config_hash({**d, "size": "other"}) != l.config_hash


def test_warmup_fraction_gives_every_size_the_same_schedule_shape():
    from moebench.training.trainer import lr_at

    specs = run_specs(plan_suite(build_suite(sweep_suite(**{"train.warmup_steps": 0, "train.warmup_fraction": 0.25}))))
    by_size = {s.size: s.train for s in specs if s.variant == "moe"}
    assert by_size["l"].steps == 20 and by_size["l"].warmup_steps == 5
    for t in by_size.values():
        assert t.warmup_steps == int(0.25 * t.steps) and 0 < t.warmup_steps < t.steps
        assert lr_at(t.warmup_steps - 1, t) == t.lr and lr_at(t.warmup_steps - 2, t) < t.lr  # peak where warm-up ends
    fixed = run_specs(plan_suite(build_suite(sweep_suite())))
    assert {s.config_hash for s in fixed}.isdisjoint(s.config_hash for s in specs)  # the schedule is in the hash
    assert all(s.train.warmup_steps == 2 for s in fixed)


def test_suites_without_a_sweep_keep_their_hashes():
    spec = run_specs(make_plan(build_suite(tiny()), 256))[0]
    d = spec.to_dict()
    assert spec.size is None and spec.key == "dense"
    assert config_hash({k: v for k, v in d.items() if k != "size"}) == spec.config_hash


BAD = [
    ({"sweep.sizes": {"s": SIZES["s"]}}, "sweep.sizes: Dictionary should have at least 2 items"),
    ({"sweep.sizes.s.base": {"d_modl": 8}}, "sweep.sizes.s: base.d_modl: unknown key (did you mean 'd_model'?)"),
    ({"sweep.sizes.s.base": {"d_model": 18}},
     "sweep.sizes.s: variants.dense.n_heads: RoPE needs an even head dim (d_model / n_heads = 9)"),
    ({"sweep.sizes.s.steps": 5, "sweep.sizes.s.tokens_per_param": 1.0},
     "sweep.sizes.s: set at most one of steps or tokens_per_param"),
    ({"sweep.sizes.s.steps": 2}, "sweep.sizes.s: train.warmup_steps: must be < the number of steps (got 2 >= 2)"),
    ({"sweep.sizes.s.tokens_per_param": 0.001}, None),  # valid here; the plan finds warm-up too long (below)
    ({"train.lr": -1}, "train.lr: Input should be greater than 0"),  # the suite's own problem, said once
    ({"sweep.l_inf": -1}, "sweep.l_inf"),
    ({"claims": [{"kind": "loss_better", "variant": "moe@x", "baseline": "dense@s"}]},
     "claims.0.variant: no variant named 'moe@x'"),
]


@pytest.mark.parametrize("changes,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_sweep_message(changes, message):
    if message is None:
        with pytest.raises(SuiteValidationError, match="sweep.sizes.s: train.warmup_steps"):
            plan_suite(build_suite(sweep_suite(**changes)))
        return
    with pytest.raises(SuiteValidationError) as e:
        build_suite(sweep_suite(**changes))
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems
    assert len(set(e.value.problems)) == len(e.value.problems) <= 2, e.value.problems  # dense and moe at most


def test_claims_may_name_one_size_and_compute_multiplier_needs_a_sweep():
    claim = {"kind": "loss_better", "variant": "moe@l", "baseline": "dense@l"}
    assert build_suite(sweep_suite(claims=[claim])).claims[0].variant == "moe@l"
    cm = {"kind": "compute_multiplier", "variant": "moe", "baseline": "dense", "min": 1.0}
    with pytest.raises(SuiteValidationError, match="compute_multiplier needs a sweep"):
        build_suite(tiny(claims=[cm]))
