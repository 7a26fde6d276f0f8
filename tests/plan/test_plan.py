"""Plan numbers: the analytic formulas by hand, auto widths, matching tolerance, --json keys."""
import json

import pytest

from moebench.cli import main
from moebench.errors import SuiteValidationError
from moebench.plan.flops import count
from moebench.plan import make_plan, run_specs
from moebench.config.suite import build_suite
from tests.helpers import tiny


def test_dense_counts_by_hand():
    # d=32, L=2, V=256, S=32, d_ff=64, gelu, tied, layernorm, rope
    plan = make_plan(build_suite(tiny()), 256)
    dense = plan.rows[0]
    d, L, V, S, f = 32, 2, 256, 32, 64
    attn = 4 * d * d
    per_layer = attn + 2 * d * f + 2 * (2 * d)
    assert dense.params_total == V * d + 2 * d + L * per_layer
    assert dense.params_embedding == V * d
    fwd = 2 * L * attn + 4 * L * S * d + 2 * L * 2 * d * f + 2 * d * V
    assert dense.forward_flops_per_token == fwd
    assert dense.train_flops_per_token == 3 * fwd


def test_moe_counts_by_hand():
    s = build_suite(tiny(**{"variants.moe.expert_d_ff": 48, "match.strict": False}))
    moe = make_plan(s, 256).rows[1]
    d, L, V, S, E, k, fe = 32, 2, 256, 32, 4, 2, 48
    attn = 4 * d * d
    common = V * d + 2 * d + L * (attn + 4 * d)
    assert moe.params_total == common + L * (d * E + E * 2 * d * fe)
    assert moe.params_active == common + L * (d * E + k * 2 * d * fe)
    fwd = 2 * L * attn + 4 * L * S * d + L * (2 * d * E + k * 2 * 2 * d * fe) + 2 * d * V
    assert moe.forward_flops_per_token == fwd


def test_auto_width_solves_within_tolerance():
    plan = make_plan(build_suite(tiny(**{"match.tolerance": 0.02})), 256)
    moe = plan.rows[1]
    assert moe.solved["expert_d_ff"] % 8 == 0
    assert abs(moe.flop_ratio - 1) <= 0.02
    # top-2 of 4 experts at equal FLOPs: each expert is about half the dense width
    assert 24 <= moe.expert_d_ff <= 40


@pytest.mark.parametrize("by", ["params_active", "params_total"])
def test_auto_width_on_params(by):
    plan = make_plan(build_suite(tiny(**{"match.by": by, "match.tolerance": 0.05})), 256)
    assert abs(plan.rows[1].match_ratio - 1) <= 0.05


def test_dense_auto_width_matches_moe_baseline():
    s = build_suite(tiny(**{"variants.moe.expert_d_ff": 32, "variants.dense2": {"d_ff": "auto", "matched_to": "moe"}}))
    row = {r.name: r for r in make_plan(s, 256).rows}["dense2"]
    assert row.solved["d_ff"] == 64 and abs(row.flop_ratio - 1) < 0.05


def test_unmatched_flop_budget_is_an_error_unless_not_strict():
    with pytest.raises(SuiteValidationError, match=r"variants.moe: train_flops is \d\.\d+x its baseline 'dense'"):
        make_plan(build_suite(tiny(**{"variants.moe.expert_d_ff": 256})), 256)
    plan = make_plan(build_suite(tiny(**{"variants.moe.expert_d_ff": 256, "match.strict": False})), 256)
    assert plan.rows[1].flop_ratio > 1.5


def test_impossible_auto_match_names_the_closest():
    # a baseline so narrow that even the smallest expert width overshoots it
    s = build_suite(tiny(**{"base.d_ff": 8, "variants.moe.top_k": 4, "variants.moe.shared_experts": 2}))
    with pytest.raises(SuiteValidationError, match="impossible to match: even the smallest width"):
        make_plan(s, 256)


def test_analytic_counts_match_module_parameters():
    from moebench.models import Transformer

    plan = make_plan(build_suite(tiny(**{"base.tie_embeddings": False, "base.pos": "learned",
                                         "base.activation": "swiglu", "base.norm": "rmsnorm"})), 256)
    for row in plan.rows:
        model = Transformer(plan.configs[row.name])
        assert sum(p.numel() for p in model.parameters()) == row.params_total == count(plan.configs[row.name]).params_total


def test_run_specs_hash_changes_with_config():
    a = run_specs(make_plan(build_suite(tiny()), 256))
    b = run_specs(make_plan(build_suite(tiny(**{"train.lr": 1e-3})), 256))
    assert len(a) == 2 and a[0].config_hash != b[0].config_hash
    c = run_specs(make_plan(build_suite(tiny(**{"train.checkpoint_every": 7})), 256))
    assert a[0].config_hash == c[0].config_hash  # how often we checkpoint does not change results


ROUTING_FIELDS = {"variants.moe.score": "sigmoid", "variants.moe.bias_update_rate": 1e-3,
                  "variants.moe.lb_scope": "global", "train.grad_accum_steps": 2, "variants.moe.null_experts": 2}


def test_routing_fields_are_hashed_and_their_defaults_keep_old_hashes():
    a = {s.variant: s.config_hash for s in run_specs(make_plan(build_suite(tiny()), 256))}
    # each new field at its default is what every earlier run computed: finished results keep their keys (the
    # hashes these specs had before the fields existed)
    assert a == {"dense": "967d72d1c46bd3c8", "moe": "e95a35fbc948306f"}
    for path, value in ROUTING_FIELDS.items():
        b = {s.variant: s.config_hash for s in run_specs(make_plan(build_suite(tiny(**{path: value})), 256))}
        assert b["moe"] != a["moe"], path


def test_plan_json_cli(tmp_path, capsys):
    import yaml

    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(tiny()))
    assert main(["plan", str(p), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {"name", "kind", "params_total", "params_active", "params_embedding", "train_flops_per_token",
            "forward_flops_per_token", "matched_to", "flop_ratio"}
    assert [r["name"] for r in rows] == ["dense", "moe"] and keys <= set(rows[0])
    assert rows[1]["matched_to"] == "dense" and rows[0]["flop_ratio"] is None


def test_step_time_matching_solves_against_measured_time(monkeypatch):
    """Time is faked as an affine function of the FFN widths so the solve is checkable exactly; the
    calibration (what was measured) is recorded in the plan row."""
    from moebench.plan.calibrate import StepTimer

    def fake(self, cfg):
        width = cfg.moe.expert_d_ff * cfg.moe.top_k * 1.5 if cfg.moe else cfg.d_ff  # MoE costs 1.5x per FLOP
        return 0.01 + width * 1e-4

    monkeypatch.setattr(StepTimer, "_measure", fake)
    plan = make_plan(build_suite(tiny(**{"match.by": "step_time", "match.tolerance": 0.05})), 256)
    moe = plan.rows[1]
    # dense time 0.01 + 64e-4; moe time 0.01 + 2 * 1.5 * w * 1e-4  ->  w = 64 / 3 -> 24 (multiple of 8)
    assert moe.solved == {"expert_d_ff": 24} and moe.match_on == "step_time"
    assert moe.calibration["baseline_step_time_s"] == pytest.approx(0.01 + 64e-4)
    assert len(moe.calibration["probes"]) >= 3
    assert moe.flop_ratio < 1  # matched on time, the slower-per-FLOP MoE gets fewer FLOPs than dense


def test_auto_variant_matched_to_a_fixed_variant_declared_after_it():
    """Planning follows matched_to, not declaration order: moe (auto) -> wide (fixed, itself matched) -> dense."""
    s = build_suite(tiny(**{"variants": {
        "moe": {"num_experts": 4, "top_k": 2, "expert_d_ff": "auto", "matched_to": "wide"},
        "dense": {},
        "wide": {"d_ff": 128, "matched_to": "dense", "match_on": "none"},
    }}))
    rows = {r.name: r for r in make_plan(s, 256).rows}
    assert rows["moe"].matched_to == "wide"
    assert rows["moe"].train_flops_per_token == pytest.approx(rows["wide"].train_flops_per_token, rel=0.1)
