"""speedup_to_loss on synthetic run directories whose numbers are worked out by hand in the comments: the
reach rule, the seed interval, censoring, targets and the cases the old rule got wrong."""
import math

import pytest

from moebench.analysis.resultset import load_results
from tests.analysis.claimdata import DENSE, MOE, judge, two_seed
from tests.synth import memory_results, run_record, write_run, write_suite

SPEEDUP = dict(kind="speedup_to_loss", variant="moe", baseline="dense")


def test_speedup_interpolation_matches_hand_calculation(suite):
    # dense reaches its final 2.8 at step 400; moe crosses 2.8 between 200 (3.0) and 300 (2.7): 266.67 steps.
    # moe costs 2x FLOPs and 3x wall per step: steps speedup 400/266.67 = 1.5, flops 0.75, wall 0.5
    rs = two_seed(suite, flops_per_token=12000.0, wall_per_step=1.5)
    v = judge(rs, **SPEEDUP, axis="steps", min=1.4)
    assert v.verdict == "PASS", v.reason
    assert v.numbers["speedup_steps"] == pytest.approx(1.5)
    assert v.numbers["speedup_per_seed"] == pytest.approx([1.5, 1.5]) and v.numbers["paired"] is True
    assert v.numbers["speedup_tokens"] == pytest.approx(1.5)
    assert v.numbers["speedup_flops"] == pytest.approx(0.75)
    assert v.numbers["speedup_wall"] == pytest.approx(0.5)
    v = judge(rs, **SPEEDUP, axis="flops", min=1.4)
    assert v.verdict == "FAIL" and "0.75" in v.reason


def test_speedup_threshold_exactly_met_passes(suite):
    assert judge(two_seed(suite), **SPEEDUP, axis="tokens", min=1.5).verdict == "PASS"
    assert judge(load_results(suite), **SPEEDUP, axis="tokens", min=1.6).verdict == "FAIL"


def test_speedup_interval_from_both_seeds_by_hand(suite):
    write_run(suite, "dense", 0, DENSE)
    write_run(suite, "dense", 1, [x + 0.01 for x in DENSE])
    write_run(suite, "moe", 0, [3.8, 2.8, 2.7, 2.5])  # reaches 2.8 at step 200 and stays below: 2.0x
    write_run(suite, "moe", 1, [3.8, 3.21, 3.01, 2.8 + 0.01])  # reaches its target 2.81 only at step 400: 1.0x
    v = judge(load_results(suite), **SPEEDUP, axis="steps", min=1.2)
    # geometric mean sqrt(2) = 1.414; n = 2 pairs, log ratios differ by d = ln 2: se = d / 2, t(1) = 12.706
    lo, hi = v.numbers["ci95_speedup"]
    assert v.numbers["speedup_steps"] == pytest.approx(2 ** 0.5)
    h = 12.706 * math.log(2) / 2  # the bootstrap's se is within ~2% of d / 2 (4000 resamples, fixed RNG)
    assert math.log(lo) == pytest.approx(math.log(2 ** 0.5) - h, rel=0.03)
    assert math.log(hi) == pytest.approx(math.log(2 ** 0.5) + h, rel=0.03)
    assert v.verdict == "INCONCLUSIVE" and "could confirm only a speedup >=" in v.reason


def test_speedup_overfitting_baseline_gives_no_free_speedup(suite):
    # dense's best is 2.6 at step 300, its final 2.8: it first gets down to 2.8 between steps 200 and 300. An
    # identical copy gets exactly 1x (the old rule, the baseline's last step, handed it 2.67x)
    over = [4.0, 3.0, 2.6, 2.8]
    v = judge(two_seed(suite, dense=over, moe=over), **SPEEDUP, axis="steps", min=1.5)
    assert v.numbers["speedup_steps"] == pytest.approx(1.0) and v.verdict == "FAIL", v.reason


def test_speedup_single_dip_is_not_reaching(suite):
    # moe dips to 2.7 at step 200 but ends at 2.9, above dense's 2.8: it never reached the target, so its speedup
    # is below the bound 400 / 400 = 1 (the old rule, first point below, gave 3.09x)
    v = judge(two_seed(suite, moe=[3.8, 2.7, 3.0, 2.9]), **SPEEDUP, axis="steps", min=1.5)
    assert v.verdict == "FAIL", v.reason
    assert v.numbers["censored_seeds"] == [0, 1] and v.numbers["speedup_per_seed"] == pytest.approx([1.0, 1.0])
    assert "never reached the target" in v.reason


@pytest.mark.parametrize("slow_end", [2.85, 3.4])
def test_speedup_straddling_seeds_same_verdict_whichever_way_the_mean_curve_falls(tmp_path, slow_end):
    # seed 0 reaches at step 200 (2x); seed 1 never does. With slow_end 2.85 the mean curve crosses the mean target,
    # with 3.4 it does not: the old rule gave INCONCLUSIVE vs FAIL; the seeds are the same evidence either way
    verdicts = []
    for fast in (0, 1):  # and whichever seed is the fast one
        d = write_suite(tmp_path / f"{slow_end}-{fast}")
        for s in (0, 1):
            write_run(d, "dense", s, [x + 0.001 * s for x in DENSE])
            moe = [3.8, 2.8, 2.6, 2.5] if s == fast else [3.8, 3.5, 3.2, slow_end]
            write_run(d, "moe", s, [x + 0.001 * s for x in moe])
        v = judge(load_results(d), **SPEEDUP, axis="steps", min=1.5)
        verdicts.append(v.verdict)
        assert sorted(v.numbers["speedup_per_seed"]) == pytest.approx([1.0, 2.0], rel=1e-3)
    assert verdicts == ["INCONCLUSIVE", "INCONCLUSIVE"]


def test_speedup_target_best(suite):
    # target = each dense seed's best (2.6 at step 300, first reached there); moe gets to 2.6 between 300 (2.7)
    # and 400 (2.5) at 350 and stays: 300 / 350 = 0.857
    v = judge(two_seed(suite, dense=[4.0, 3.0, 2.6, 2.8]), **SPEEDUP, axis="steps", min=1.0, target="best")
    assert v.numbers["speedup_steps"] == pytest.approx(300 / 350) and v.verdict == "FAIL"
    assert "best val loss" in v.rule


def test_speedup_unpaired_seeds_each_timed_to_the_mean_target(suite):
    # no seed in common: each moe seed is timed to the mean dense target 2.805; moe seed 5 (MOE) crosses it between
    # 200 (3.0) and 300 (2.7) at 200 + 100 * 0.195 / 0.3 = 265, moe seed 6 (+0.01) at 200 + 100 * 0.205/0.3 = 268.3
    for s in (0, 1):
        write_run(suite, "dense", s, [x + 0.01 * s for x in DENSE])
        write_run(suite, "moe", s + 5, [x + 0.01 * s for x in MOE])
    v = judge(load_results(suite), **SPEEDUP, axis="steps", min=1.0)
    assert v.numbers["paired"] is False and v.numbers["n"] == [2, 2]
    assert v.numbers["speedup_per_seed"] == pytest.approx([400 / 265, 400 / (200 + 100 * 0.205 / 0.3)])
    assert v.numbers["unpaired_seeds"] == [0, 1, 5, 6]


def test_speedup_names_seeds_without_a_partner_and_uses_them(suite):
    for s in (0, 1):
        write_run(suite, "dense", s, [x + 0.01 * s for x in DENSE])
        write_run(suite, "moe", s, [x + 0.01 * s for x in MOE])
    write_run(suite, "dense", 2, [x + 0.02 for x in DENSE])  # no moe seed 2: still in the baseline's mean time
    v = judge(load_results(suite), **SPEEDUP, axis="steps", min=1.0)
    assert v.numbers["paired"] is True and v.numbers["n"] == [3, 2]
    assert v.numbers["unpaired_seeds"] == [2] and "without a partner" in v.reason


FAST = (2.9, 2.6, 2.5, 2.45)


def _three_x(base_seeds, var_seeds, slow=()):
    """Dense seed s: DENSE + 0.01 s (reaches its final at step 400). Moe's k-th seed: FAST + 0.01 k, crossing 2.81
    (the mean target) near step 133: about 3x, every seed. `slow` moe seeds never reach their target."""
    recs = [run_record("synth", "dense", s, [x + 0.01 * s for x in DENSE]) for s in base_seeds]
    recs += [run_record("synth", "moe", s, [x + 0.01 * k for x in FAST]) for k, s in enumerate(var_seeds)]
    recs += [run_record("synth", "moe", s, [3.9, 3.5, 3.2, 3.0]) for s in slow]
    return memory_results(recs)


def test_speedup_more_seeds_never_a_weaker_verdict():
    # the old rule paired by seed and dropped the rest: dense {0,1,2} vs moe {2,3,4} was n=1, CI [0, inf],
    # INCONCLUSIVE, while dropping the shared seed (every pairing, n=2) PASSed: less data, stronger verdict
    full = judge(_three_x((0, 1, 2), (2, 3, 4)), **SPEEDUP, axis="steps", min=2.0)
    less = judge(_three_x((0, 1), (3, 4)), **SPEEDUP, axis="steps", min=2.0)
    assert full.numbers["n"] == [3, 3] and len(full.numbers["speedup_per_seed"]) == 3
    assert full.verdict == "PASS" and less.verdict == "PASS", (full.reason, less.reason)
    assert full.numbers["speedup_steps"] == pytest.approx(3.0, rel=0.05)
    assert full.numbers["p_one_sided"] < less.numbers["p_one_sided"]


def test_speedup_one_slow_seed_lowers_the_estimate_not_a_veto():
    # five moe seeds about 3x faster and one that never reaches the target (censored at step 400, bound 1x): the
    # old rule could not PASS with a censored seed; the AFT fit counts it as slower than 400 steps
    v = judge(_three_x(range(6), range(5), slow=(5,)), **SPEEDUP, axis="steps", min=1.2)
    fast = judge(_three_x(range(6), range(5)), **SPEEDUP, axis="steps", min=1.2)
    assert v.numbers["censored_seeds"] == [5] and v.verdict == "PASS", v.reason
    assert v.numbers["speedup_steps"] < fast.numbers["speedup_steps"]
    assert v.numbers["ci95_speedup"][0] < fast.numbers["ci95_speedup"][0]
    print(f"\nfive 3x seeds: {fast.reason}\nplus one censored: {v.reason}")
