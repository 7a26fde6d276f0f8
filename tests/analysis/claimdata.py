"""Hand-computable run data and helpers shared by the claim tests."""
from moebench.analysis.claims import judge_all
from moebench.analysis.resultset import load_results
from tests.synth import write_run

DENSE = [4.0, 3.5, 3.0, 2.8]  # final 2.8 at step 400
MOE = [3.8, 3.0, 2.7, 2.5]  # crosses 2.8 between step 200 (3.0) and 300 (2.7): 200 + 100 * 0.2/0.3 = 266.67


def judge(rs, **claim):
    return judge_all([claim], rs)[0]


def two_seed(suite, dense=DENSE, moe=MOE, **moe_kw):
    """Seed 1 is seed 0 shifted up by 0.01 nats in both variants: each seed's target is its own final loss, so
    both seeds give the same times to target (seeds differ, as real seeds do)."""
    for s in (0, 1):
        write_run(suite, "dense", s, [x + 0.01 * s for x in dense])
        write_run(suite, "moe", s, [x + 0.01 * s for x in moe], **moe_kw)
    return load_results(suite)
