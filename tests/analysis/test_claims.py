"""Claim verdicts on synthetic run directories whose numbers are worked out by hand in the comments."""
import pytest
from scipy import stats as st

from moebench.analysis import stats
from moebench.analysis.claims import JUDGES, judge_all
from moebench.analysis.resultset import load_results
from moebench.config.claims import CLAIM_KINDS, ClaimBase, claim_kind, parse_claims, validate_claims
from moebench.errors import UserError
from tests.analysis.claimdata import DENSE, MOE, judge, two_seed
from tests.synth import experts_stats, write_run, write_suite


# ---- loss_better ----------------------------------------------------------------------------------------------

def _finals(suite, a, b, metric="val_loss", **kw):
    for s, (x, y) in enumerate(zip(a, b)):
        write_run(suite, "moe", s, MOE, final={metric: x} if "." not in metric else None, **kw.get("moe", {}),
                  lm_eval={"hellaswag": {"acc": x, "version": 1, "n_shot": 0}})
        write_run(suite, "dense", s, DENSE, final={metric: y} if "." not in metric else None,
                  lm_eval={"hellaswag": {"acc": y, "version": 1, "n_shot": 0}})
    return load_results(suite)


def test_loss_better_welch_ci_overlap_inconclusive(suite):
    # diff -0.5, se = sqrt(.02/2 + .02/2) = .1414, df = 2, t = 4.303: CI of improvement [-0.1085, 1.1085]
    rs = _finals(suite, [2.0, 2.2], [2.5, 2.7])
    v = judge(rs, kind="loss_better", variant="moe", baseline="dense", metric="val_loss")
    assert v.verdict == "INCONCLUSIVE"
    lo, hi = v.numbers["ci95_improvement"]
    assert lo == pytest.approx(0.5 - 4.302653 * 0.141421, rel=1e-4) and hi == pytest.approx(1.1085, abs=1e-3)
    assert v.numbers["p_value"] == pytest.approx(st.ttest_ind([2.0, 2.2], [2.5, 2.7], equal_var=False).pvalue)


def test_loss_better_pass_and_fail(suite, tmp_path):
    rs = _finals(suite, [2.0, 2.01], [2.5, 2.51])  # CI 0.5 +- 0.043
    assert judge(rs, kind="loss_better", variant="moe", baseline="dense").verdict == "PASS"
    assert judge(rs, kind="loss_better", variant="dense", baseline="moe").verdict == "FAIL"
    # better by 0.5, but not by the claimed margin of 0.6: the CI [0.457, 0.543] lies below it
    v = judge(rs, kind="loss_better", variant="moe", baseline="dense", margin=0.6)
    assert v.verdict == "FAIL" and "margin 0.6" in v.reason


def test_loss_better_lm_eval_higher_is_better(suite):
    rs = _finals(suite, [0.40, 0.41], [0.30, 0.31], metric="lm_eval.hellaswag.acc")
    spec = dict(kind="loss_better", variant="moe", baseline="dense", metric="lm_eval.hellaswag.acc")
    assert judge(rs, **spec, lower_is_better=False).verdict == "PASS"
    assert judge(rs, **spec).verdict == "FAIL"


# ---- throughput_ratio / memory_ratio -------------------------------------------------------------------------

@pytest.mark.parametrize("moe_tps,bounds,expected", [
    ((1800, 1800), {"min": 0.8}, "PASS"),  # 0.9
    ((1800, 1800), {"min": 0.95}, "FAIL"),
    ((1500, 2100), {"min": 0.9}, "INCONCLUSIVE"),  # median 0.9 but seeds range 0.75 .. 1.05
    ((1800, 1800), {"min": 0.5, "max": 0.85}, "FAIL"),
])
def test_throughput_ratio(suite, moe_tps, bounds, expected):
    for s, t in enumerate(moe_tps):
        write_run(suite, "moe", s, MOE, tokens_per_s=t)
        write_run(suite, "dense", s, DENSE, tokens_per_s=2000.0)
    v = judge(load_results(suite), kind="throughput_ratio", variant="moe", baseline="dense", **bounds)
    assert v.verdict == expected, v.reason
    assert v.numbers["ratio"] == pytest.approx(0.9)


@pytest.mark.parametrize("moe_s,bounds,expected", [
    ([0.125] * 10, {"min": 0.7}, "PASS"),  # 0.8, band tight
    ([0.125] * 10, {"min": 0.9}, "FAIL"),
    ([0.125] * 5 + [0.08] * 5, {"min": 0.9}, "INCONCLUSIVE"),  # per-round ratios straddle the bound
])
def test_throughput_ratio_uses_the_side_by_side_timing_when_present(suite, moe_s, bounds, expected):
    from moebench.runs.sidebyside import write

    for s in (0, 1):  # the runs' own medians say 0.5: the side-by-side record wins
        write_run(suite, "moe", s, MOE, tokens_per_s=1000.0)
        write_run(suite, "dense", s, DENSE, tokens_per_s=2000.0)
    write(suite, {"rounds": 10, "loadavg": [[3.5, 3.0, 2.0]] * 2, "step_time_s": {"dense": [0.1] * 10, "moe": moe_s}})
    v = judge(load_results(suite), kind="throughput_ratio", variant="moe", baseline="dense", **bounds)
    assert v.verdict == expected, v.reason
    assert v.numbers["method"] == "sidebyside" and "side by side" in v.rule and "load average 3.5" in v.reason


def test_memory_ratio(suite):
    rs = two_seed(suite, peak_mem=1_500_000)
    assert judge(rs, kind="memory_ratio", variant="moe", baseline="dense", max=1.6).verdict == "PASS"
    v = judge(rs, kind="memory_ratio", variant="moe", baseline="dense", max=1.2)
    assert v.verdict == "FAIL" and v.numbers["ratio"] == pytest.approx(1.5)


# ---- monotonic ------------------------------------------------------------------------------------------------

def _ladder(suite, finals):
    for v, seeds in finals.items():
        for s, x in enumerate(seeds):
            write_run(suite, v, s, DENSE, final={"val_loss": x})
    return load_results(suite)


def test_monotonic_slope_hand_computed(suite):
    # log2(2, 4, 8) = 1, 2, 3; seed pairs symmetric about 3.0 - 0.1 * log2(x): OLS slope exactly -0.1
    rs = _ladder(suite, {"e2": [2.91, 2.89], "e4": [2.81, 2.79], "e8": [2.71, 2.69]})
    v = judge(rs, kind="monotonic", variants=["e2", "e4", "e8"], x=[2, 4, 8])
    assert v.verdict == "PASS" and v.numbers["slope"] == pytest.approx(-0.1)
    assert v.numbers["strictly_ordered"] is True
    assert judge(rs, kind="monotonic", variants=["e2", "e4", "e8"], direction="increasing").verdict == "FAIL"


def test_monotonic_noisy_inconclusive_and_not_ordered(suite):
    rs = _ladder(suite, {"e2": [2.9, 2.7], "e4": [2.75, 2.95], "e8": [2.95, 2.6]})
    v = judge(rs, kind="monotonic", variants=["e2", "e4", "e8"], x=[2, 4, 8])
    assert v.verdict == "INCONCLUSIVE" and v.numbers["strictly_ordered"] is False
    assert v.numbers["ci95_slope"][0] < 0 < v.numbers["ci95_slope"][1]


def test_monotonic_trend_with_unordered_means_is_not_a_pass(suite):
    # the slope is clearly negative, but the means go 2.0, 1.8, 1.7, 1.75, 1.78: not monotone (the old rule PASSed)
    ladder = {f"e{2 ** i}": m for i, m in enumerate([2.0, 1.8, 1.7, 1.75, 1.78])}
    names, x = list(ladder), [2 ** i for i in range(5)]
    rs = _ladder(suite, {v: [m - 0.002, m + 0.002] for v, m in ladder.items()})
    v = judge(rs, kind="monotonic", variants=names, x=x)
    assert v.numbers["ci95_slope"][1] < 0 and v.numbers["strictly_ordered"] is False
    assert v.verdict == "FAIL" and v.numbers["reversed_steps"] == ["e4 -> e8", "e8 -> e16"], v.reason
    # the same means with seeds too noisy to tell the reversal from noise: INCONCLUSIVE, never PASS
    d2 = write_suite(suite.parent.parent / "noisy")
    rs = _ladder(d2, {v: [m - 0.06, m + 0.06] for v, m in ladder.items()})
    v = judge(rs, kind="monotonic", variants=names, x=x)
    assert v.verdict == "INCONCLUSIVE" and "could detect only a slope of" in v.reason


def test_monotonic_reads_its_steps_in_x_order_not_listing_order(suite):
    # means 2.0, 1.7, 1.8 at x = 1, 2, 4: not monotone in x (1.7 -> 1.8 rises beyond noise); listed out of x order
    # (x = 1, 4, 2) the old rule checked 2.0 > 1.8 > 1.7 in listing order and PASSed what it FAILs in x order
    rs = _ladder(suite, {"e1": [1.999, 2.001], "e2": [1.699, 1.701], "e4": [1.799, 1.801]})
    in_order = judge(rs, kind="monotonic", variants=["e1", "e2", "e4"], x=[1, 2, 4])
    shuffled = judge(rs, kind="monotonic", variants=["e1", "e4", "e2"], x=[1, 4, 2])
    assert in_order.verdict == shuffled.verdict == "FAIL", shuffled.reason
    assert shuffled.numbers["reversed_steps"] == ["e2 -> e4"] and shuffled.numbers["strictly_ordered"] is False


@pytest.mark.parametrize("x, message", [([1, 2, 2], "claims.0.x: x must be distinct positive numbers"),
                                        ([1, 0, 2], "claims.0.x: x must be distinct positive numbers")])
def test_monotonic_x_must_be_distinct_and_positive(x, message):
    problems = []
    validate_claims([{"kind": "monotonic", "variants": ["a", "b", "c"], "x": x}], None, problems)
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_holm_controls_the_report_family(suite):
    # each of two claims alone PASSes with one-sided p between 0.0125 and 0.025; judged as one report's family of
    # two, Holm adjusts both above 0.025 and neither may PASS (the old judge_all PASSed both)
    rs = _ladder(suite, {"dense": [2.99, 3.0, 3.01], "moe": [2.964, 2.974, 2.984]})
    claim = dict(kind="loss_better", variant="moe", baseline="dense")
    alone = judge(rs, **claim)
    assert alone.verdict == "PASS" and 0.0125 < alone.numbers["p_one_sided"] < 0.025, alone.numbers
    both = judge_all([{**claim, "name": "one"}, {**claim, "name": "two"}, {"kind": "load_balance",
                                                                          "variant": "moe"}], rs)
    for v in both[:2]:
        assert v.verdict == "INCONCLUSIVE" and "not after Holm over the report's 2 statistical claims" in v.reason
        assert v.numbers["p_holm"] == pytest.approx(2 * alone.numbers["p_one_sided"])
        assert v.numbers["verdict_before_holm"] == "PASS"
    assert "p_holm" not in both[2].numbers  # mechanistic kinds stay outside the family


def test_holm_step_down():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([]) == []


# ---- seeds identical, data repetition, noise floor, control ----------------------------------------------------

@pytest.mark.parametrize("spec", [
    dict(kind="loss_better", variant="moe", baseline="dense"),
    dict(kind="speedup_to_loss", variant="moe", baseline="dense", axis="steps", min=1.2),
    dict(kind="monotonic", variants=["dense", "moe"]),
])
def test_identical_seeds_are_inconclusive(suite, spec):
    for s in (0, 1):  # every seed gives exactly the same numbers: zero spread would make any difference exact
        write_run(suite, "dense", s, DENSE)
        write_run(suite, "moe", s, MOE)
    v = judge(load_results(suite), **spec)
    assert v.verdict == "INCONCLUSIVE"
    assert "seeds identical: a seed that randomises nothing is a bug, not evidence" in v.reason


def test_data_repetition_past_max_epochs_is_inconclusive(suite):
    for s in (0, 1):  # 400 steps x 1000 tokens over 80k unique tokens: 5 epochs
        write_run(suite, "dense", s, [x + 0.01 * s for x in DENSE], unique_train_tokens=80_000)
        write_run(suite, "moe", s, [x - 0.01 * s for x in MOE], unique_train_tokens=80_000)
    rs = load_results(suite)
    assert list(rs.runs["epochs"]) == [5.0] * 4 and list(rs.runs["unique_train_tokens"]) == [80_000] * 4
    v = judge(rs, kind="loss_better", variant="moe", baseline="dense")
    assert v.verdict == "INCONCLUSIVE" and "more than max_epochs 4 passes over the corpus: moe 5" in v.reason
    assert v.numbers["ungated_verdict"] == "PASS"
    assert judge(rs, kind="loss_better", variant="moe", baseline="dense", max_epochs=6).verdict == "PASS"
    # speed does not depend on how often data repeats
    assert judge(rs, kind="throughput_ratio", variant="moe", baseline="dense", min=0.5).verdict == "PASS"


def test_noise_floor_detectable_difference_and_control(suite):
    # dense 2.5, 2.7 (sd 0.1414); moe 2.0, 2.2; ctl (the control) 2.52, 2.68
    for s, (m, d, c) in enumerate([(2.0, 2.5, 2.52), (2.2, 2.7, 2.68)]):
        write_run(suite, "moe", s, MOE, final={"val_loss": m})
        write_run(suite, "dense", s, DENSE, final={"val_loss": d})
        write_run(suite, "ctl", s, DENSE, final={"val_loss": c})
    v = judge(load_results(suite), kind="loss_better", variant="moe", baseline="dense", control="ctl")
    n = v.numbers
    assert n["noise_floor_sd"] == pytest.approx(0.2 / 2 ** 0.5)
    assert n["effect_noise_units"] == pytest.approx(0.5 / (0.2 / 2 ** 0.5))
    # the Welch rule's own 80% power at seed sds 0.1414 and 2+2 seeds, simulated (analysis/power.py): 1.44, not
    # the pooled-t shortcut (t_.975 + t_.8) * se = 0.758, which this rule PASSes only 44% of the time (its
    # Welch df falls from 2 toward 1 whenever the two sample sds differ); tests/analysis/test_power.py checks
    # the 80% against the judge itself
    assert n["detectable_difference"] == pytest.approx(1.44, rel=0.01)
    assert n["control_minus_baseline"] == pytest.approx(0.0) and n["control"] == "ctl"
    assert v.verdict == "INCONCLUSIVE" and "could detect only a difference of 1.44" in v.reason
    assert "control ctl - dense: +0.0000" in v.reason


def test_control_must_name_a_variant():
    problems = []
    validate_claims([{"kind": "loss_better", "variant": "moe", "baseline": "dense", "control": "e_1"}],
                    ["dense", "moe", "e1"], problems)
    assert problems == ["claims.0.control: no variant named 'e_1' (did you mean 'e1'?)"]


# ---- load_balance ---------------------------------------------------------------------------------------------

def test_load_balance_pass_fail_disagree_and_dense(suite):
    write_run(suite, "moe", 0, MOE, experts=experts_stats(entropy=0.95, max_load=1.4))
    write_run(suite, "moe", 1, MOE, experts=experts_stats(entropy=0.80, max_load=2.5, dead=1))
    write_run(suite, "dense", 0, DENSE)
    write_run(suite, "dense", 1, DENSE)
    rs = load_results(suite)
    assert judge(rs, kind="load_balance", variant="moe", min_entropy=0.7, max_dead_experts=1).verdict == "PASS"
    v = judge(rs, kind="load_balance", variant="moe", min_entropy=0.7)  # seed 1 has a dead expert, default max 0
    assert v.verdict == "INCONCLUSIVE" and "dead_experts 1 > 0" in v.reason
    assert judge(rs, kind="load_balance", variant="moe", min_entropy=0.97).verdict == "FAIL"
    v = judge(rs, kind="load_balance", variant="moe", min_entropy=0.9)
    assert v.verdict == "INCONCLUSIVE" and "1/2 seeds" in v.reason
    v = judge(rs, kind="load_balance", variant="moe", max_load_x_E=3, max_dead_experts=1)
    assert v.verdict == "PASS"
    assert judge(rs, kind="load_balance", variant="dense", min_entropy=0.5).verdict == "INCONCLUSIVE"


# ---- gates: each kind, each INCONCLUSIVE reason ---------------------------------------------------------------

PASSING = {  # on two_seed() data (with an extra variant 'moe2' for monotonic), every one of these PASSes
    "speedup_to_loss": dict(variant="moe", baseline="dense", axis="steps", min=1.2),
    "loss_better": dict(variant="moe", baseline="dense", metric="val_loss"),
    "loss_equivalent": dict(variant="moe", baseline="dense", margin=1.0),  # the data differ by far less than 1
    "throughput_ratio": dict(variant="moe", baseline="dense", min=0.5),
    "memory_ratio": dict(variant="moe", baseline="dense", max=2.0),
    "monotonic": dict(variants=["dense", "moe"], metric="val_loss"),
    "load_balance": dict(variant="moe", min_entropy=0.9),
    "inference_ratio": dict(variant="moe", baseline="dense", batch_size=4, min=1.5),
    "flop_accounting": dict(variants=["dense", "moe"], tolerance=0.05, min_tokens_per_param=1.0),
}


def measured(tokens_per_s: float, flops_ratio: float = 1.01) -> dict:
    """Summary sections of the inference and FLOP-accounting suites (forward FLOPs/token in synth: 2000)."""
    speed = [{"batch_size": b, "latency_ms": 1000 * b * 128 / tokens_per_s, "tokens_per_s": tokens_per_s,
              "expert_batch_max_over_mean": 1.5} for b in (1, 4)]
    return {"flops_measured": {"forward": 2000.0 * flops_ratio},
            "inference": {"weights_bytes": 4000, "val_loss": 3.0, "speed": speed}}
GATES = {
    "one_seed": (lambda d: None, "1 finished seed(s), need 2"),
    "failed": (lambda d: write_run(d, "moe", 2, MOE, status="failed", experts=experts_stats(),
                                   failure={"step": 120, "reason": "loss is NaN"}), "failed at step 120: loss is NaN"),
    "incomplete": (lambda d: write_run(d, "moe", 2, MOE[:2], finished=False), "moe/seed-2 incomplete"),
    "tokens_per_param": (lambda d: None, "too few tokens per parameter"),
}


SWEEP_KINDS = {"compute_multiplier"}  # judged on a sweep's runs (variant@size): its gates are in test_scaling.py


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("kind", sorted(set(CLAIM_KINDS) - SWEEP_KINDS))
def test_every_kind_passes_then_each_gate_makes_it_inconclusive(suite, kind, gate):
    seeds = (0,) if gate == "one_seed" else (0, 1)
    params = 10_000_000 if gate == "tokens_per_param" else 1000  # 400k tokens / 10M params = 0.04 tokens/param
    for s in seeds:
        write_run(suite, "dense", s, [x + 0.001 * s for x in DENSE], params_total=params, extra=measured(1000 + s))
        write_run(suite, "moe", s, [x - 0.001 * s for x in MOE], experts=experts_stats(), params_total=params,
                  extra=measured(2000 + s))
    GATES[gate][0](suite)
    spec = {"kind": kind, **PASSING[kind]}
    v = judge(load_results(suite), **spec)
    assert v.verdict == "INCONCLUSIVE", v.reason
    assert GATES[gate][1] in v.reason
    if gate != "one_seed":  # one seed gives no spread, so some kinds are undecided even without the gate
        assert v.numbers["ungated_verdict"] == "PASS"
    if gate == "tokens_per_param":  # the claim's own threshold decides it
        assert judge(load_results(suite), **{**spec, "min_tokens_per_param": 0.01}).verdict == "PASS"


def test_loss_equivalent_by_hand(suite):
    """Two one-sided tests: PASS inside the margin, FAIL when the gap is clearly outside it, else undecided."""
    for s in (0, 1):
        write_run(suite, "dense", s, [x + 0.001 * s for x in DENSE])
        write_run(suite, "moe", s, [x - 0.001 * s for x in MOE], experts=experts_stats())
    rs = load_results(suite)
    diff = rs.seed_values("moe", "val_loss")[0] - rs.seed_values("dense", "val_loss")[0]  # about the same per seed
    wide = judge(rs, kind="loss_equivalent", variant="moe", baseline="dense", margin=abs(diff) + 0.5)
    assert wide.verdict == "PASS" and wide.numbers["difference"] == pytest.approx(diff, abs=0.002)
    assert judge(rs, kind="loss_equivalent", variant="moe", baseline="dense",
                 margin=abs(diff) / 10).verdict == "FAIL"
    close = judge(rs, kind="loss_equivalent", variant="moe", baseline="dense", margin=abs(diff) + 0.001)
    assert close.verdict == "INCONCLUSIVE"  # two seeds: the 90% CI (t at 1 df) reaches past the margin


def test_inference_ratio_and_flop_accounting_by_hand(suite):
    for s in (0, 1):
        write_run(suite, "dense", s, DENSE, extra=measured(1000.0, flops_ratio=1.0))
        write_run(suite, "moe", s, MOE, experts=experts_stats(), extra=measured(1500.0, flops_ratio=0.90))
    rs = load_results(suite)
    v = judge(rs, kind="inference_ratio", variant="moe", baseline="dense", batch_size=4, min=1.4)
    assert v.verdict == "PASS" and v.numbers["ratio"] == pytest.approx(1.5)
    assert judge(rs, kind="inference_ratio", variant="moe", baseline="dense", batch_size=1, min=1.6).verdict == "FAIL"
    assert judge(rs, kind="inference_ratio", variant="moe", baseline="dense", batch_size=8, min=1).verdict == \
        "INCONCLUSIVE"  # no such batch size measured
    v = judge(rs, kind="flop_accounting", variants=["dense", "moe"], tolerance=0.05)
    assert v.verdict == "FAIL" and v.numbers["ratio"] == {"dense": 1.0, "moe": pytest.approx(0.9)}
    assert judge(rs, kind="flop_accounting", variants=["dense", "moe"], tolerance=0.11).verdict == "PASS"


# ---- schema and registry --------------------------------------------------------------------------------------

def test_every_claim_spec_has_a_judge():
    assert CLAIM_KINDS.names() == JUDGES.names()


def test_schema_discriminates_and_forbids_extra_keys():
    s = parse_claims([{"kind": "memory_ratio", "variant": "a", "baseline": "b", "max": 1.2, "source": "x"}])
    assert type(s[0]).__name__ == "MemoryRatio" and s[0].source == "x"
    with pytest.raises(UserError, match=r"claims.0.margn: unknown key \(did you mean 'margin'\?\)"):
        parse_claims([{"kind": "loss_better", "variant": "a", "baseline": "b", "margn": 1}])
    with pytest.raises(UserError, match=r"claims.0.kind: unknown claim kind 'loss_beter' \(did you mean 'loss_better'"):
        parse_claims([{"kind": "loss_beter"}])
    with pytest.raises(UserError, match="claims.1.baseline: required"):
        parse_claims([{"kind": "load_balance", "variant": "a"}, {"kind": "loss_better", "variant": "a"}])
    with pytest.raises(UserError, match="metric"):
        parse_claims([{"kind": "loss_better", "variant": "a", "baseline": "b", "metric": "accuracy"}])
    with pytest.raises(UserError, match="min and/or max"):
        parse_claims([{"kind": "throughput_ratio", "variant": "a", "baseline": "b"}])


def test_validate_claims_collects_every_problem_with_paths():
    problems = []
    specs = validate_claims([
        {"kind": "speedup_to_loss", "variant": "moe8", "baseline": "dense", "min": 2},
        {"kind": "monotonic", "variants": ["dense", "moe_4"], "x": [1, 4]},
        {"kind": "memory_ratio", "variant": "moe", "baseline": "dense"},
        "not a mapping",
    ], ["dense", "moe", "moe4"], problems)
    assert [type(s).__name__ for s in specs] == ["SpeedupToLoss", "Monotonic"]
    assert problems == [
        "claims.0.variant: no variant named 'moe8' (did you mean 'moe'?)",
        "claims.1.variants.1: no variant named 'moe_4' (did you mean 'moe4'?)",
        "claims.2: give min and/or max",
        "claims.3: must be a mapping",
    ]


def test_registry_rejects_mismatched_kind():
    from typing import Literal
    with pytest.raises(TypeError, match="Literal"):
        @claim_kind("some_new_kind")
        class Wrong(ClaimBase):
            kind: Literal["other"]


def test_failed_and_incomplete_runs_are_both_named(suite):
    two_seed(suite, experts=experts_stats())
    write_run(suite, "moe", 2, MOE, status="failed", failure={"step": 7, "reason": "diverged"})
    write_run(suite, "moe", 3, MOE[:1], finished=False)
    v = judge(load_results(suite), kind="loss_better", variant="moe", baseline="dense")
    assert v.verdict == "INCONCLUSIVE"
    assert "moe/seed-2 failed at step 7: diverged" in v.reason and "moe/seed-3 incomplete" in v.reason


def test_unknown_variant_is_inconclusive_not_a_crash(suite):
    v = judge(two_seed(suite), kind="speedup_to_loss", variant="moe_typo", baseline="dense", min=1.0)
    assert v.verdict == "INCONCLUSIVE" and "no runs of moe_typo" in v.reason
