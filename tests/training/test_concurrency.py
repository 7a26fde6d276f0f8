"""--jobs auto's rule and the concurrent_runs record (pure functions of their inputs)."""
import pytest

from moebench.training.concurrency import Span, auto_jobs, beside


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
