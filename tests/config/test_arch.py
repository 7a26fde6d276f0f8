"""`arch: llama | mixtral`: the shorthand expands to the exportable fields, and contradictions are named."""
import pytest

from moebench.config.suite import build_suite
from moebench.errors import SuiteValidationError
from moebench.plan import plan_suite, run_specs
from tests.helpers import tiny


def arch_suite(**changes):
    return tiny(**{"base.arch": "llama", "variants.moe.arch": "mixtral", **changes})


def test_arch_expands_to_the_exportable_fields():
    s = build_suite(arch_suite())
    d, m = s.variants["dense"], s.variants["moe"]
    assert (d.norm, d.activation, d.pos) == ("rmsnorm", "swiglu", "rope")
    assert (m.norm, m.activation, m.router, m.renormalize, m.capacity_factor, m.top_k) == (
        "rmsnorm", "swiglu", "topk", True, "dropless", 2)
    assert s.raw["variants"]["moe"]["arch"] == "mixtral"


def test_arch_leaves_free_fields_alone_and_does_not_change_other_runs_hashes():
    s = build_suite(arch_suite(**{"variants.moe.top_k": 3}))
    assert s.variants["moe"].top_k == 3
    # the same fields spelled out give the same runs: arch is a shorthand, not a new model
    spelled = tiny(**{"base.norm": "rmsnorm", "base.activation": "swiglu", "variants.moe.top_k": 2})
    a = {r.variant: r.config_hash for r in run_specs(plan_suite(build_suite(arch_suite())))}
    b = {r.variant: r.config_hash for r in run_specs(plan_suite(build_suite(spelled)))}
    assert a == b


@pytest.mark.parametrize("changes,message", [
    ({"variants.moe.norm": "layernorm"}, "variants.moe.norm: 'layernorm' contradicts arch: mixtral"),
    ({"variants.moe.router": "switch"}, "variants.moe.router: 'switch' contradicts arch: mixtral"),
    ({"variants.moe.top_k": 1}, "variants.moe.top_k: arch: mixtral needs top_k >= 2"),
    ({"variants.dense.arch": "mixtral"}, "variants.dense.arch: mixtral needs num_experts"),
    ({"variants.moe.arch": "llama"}, "variants.moe.arch: llama is dense but num_experts is set"),
    ({"base.activation": "gelu"}, "variants.dense.activation: 'gelu' contradicts arch: llama"),
    ({"base.arch": "gpt"}, "base.arch: Input should be 'llama' or 'mixtral'"),
])
def test_contradictions_are_named(changes, message):
    with pytest.raises(SuiteValidationError) as e:
        build_suite(arch_suite(**changes))
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems
