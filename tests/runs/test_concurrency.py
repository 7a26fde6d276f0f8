"""--jobs auto's rule and the concurrent_runs record (pure functions of their inputs)."""
import pytest

from moebench.runs.concurrency import Span, auto_jobs, beside


def test_auto_jobs_counts_free_cores_and_gpus():
    assert auto_jobs(1, gpus=0, cores=2, load=0.0) == 2
    assert auto_jobs(1, gpus=0, cores=2, load=1.4) == 1  # another job holds a core: parallel runs would lose
    assert auto_jobs(1, gpus=0, cores=2, load=9.0) == 1
    assert auto_jobs(2, gpus=0, cores=16, load=3.0) == 6
    assert auto_jobs(None, gpus=0, cores=16, load=0.0) == 1  # train.threads unset: a run uses every core
    assert auto_jobs(1, gpus=8, cores=2, load=9.0) == 8  # on GPUs one run per GPU, whatever the CPU load
    assert auto_jobs(1, gpus=8, gpus_per_run=2) == 4


def test_beside_counts_overlapping_runs_on_the_same_host():
    a = Span(("a", 0), 0.0, 10.0, "h")
    b = Span(("b", 0), 5.0, 15.0, "h")  # beside a for its first half
    c = Span(("c", 0), 6.0, 8.0, "h")
    d = Span(("d", 0), 0.0, 10.0, "other")  # another machine: not beside anyone here
    out = beside([a, b, c, d])
    assert out[("a", 0)] == {"at_start": 0, "max": 2, "mean": pytest.approx((5 * 1 + 2 * 1) / 10)}
    assert out[("b", 0)] == {"at_start": 1, "max": 2, "mean": pytest.approx((5 * 1 + 2 * 1) / 10)}
    assert out[("c", 0)] == {"at_start": 2, "max": 2, "mean": 2.0}
    assert out[("d", 0)] == {"at_start": 0, "max": 0, "mean": 0.0}
    seq = beside([Span(("x", 0), 0.0, 1.0), Span(("y", 0), 1.0, 2.0)])  # back to back: never together
    assert seq[("x", 0)]["max"] == 0 and seq[("y", 0)]["at_start"] == 0


def test_workers_for_a_cpu_suite(tmp_path):
    import yaml

    from moebench.config.suite import load_suite
    from moebench.plan import plan_suite, run_specs
    from moebench.runs.concurrency import usable_cores
    from moebench.runs.pool import workers_for
    from tests.helpers import DELETE, tiny

    def spec(**changes):
        p = tmp_path / "suite.yaml"
        p.write_text(yaml.safe_dump(tiny(**changes)))
        return run_specs(plan_suite(load_suite(p, [], None)))[0]

    w = workers_for(spec(), "auto")  # train.threads 1: as many as the free cores, which the load decides
    assert 1 <= w.jobs <= usable_cores() and w.gpus == () and w.threads is None
    assert workers_for(spec(**{"train.threads": DELETE}), "auto").jobs == 1  # a run on every core: one at a time
    w = workers_for(spec(**{"train.threads": DELETE}), 2)  # asked for 2: each gets its share of the cores
    assert (w.jobs, w.threads) == (2, max(1, usable_cores() // 2))


def test_pace_gives_the_step_rate_and_the_time_left_for_the_run_and_the_suite():
    from moebench.runs.progress import Pace

    now = [100.0]
    pace = Pace(after=2, clock=lambda: now[0])
    assert pace(1, 101) == ""  # the first step is the reference, not part of the rate
    now[0] = 120.0
    # 20 steps in 20 s: 80 left of this run, then 2 runs of 101 steps
    assert pace(21, 101) == ", 1.00 step/s, ETA 1m20s (suite 4m42s)"
    assert Pace()(5, 10) == ""
