"""--shard K/N: disjoint round-robin slices of run_specs order whose union is the suite."""
import pytest

from moebench.config.suite import load_suite
from moebench.errors import UserError
from moebench.plan import parse_shard, plan_suite, run_specs
from tests.helpers import tiny


def specs(tmp_path, **changes):
    import yaml

    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(tiny(**changes)))
    return run_specs(plan_suite(load_suite(p, [], None)))


def test_shards_are_disjoint_cover_the_suite_and_mix_variants(tmp_path):
    all_runs = specs(tmp_path, **{"train.seeds": [0, 1, 2]})
    keys = [(s.variant, s.seed) for s in all_runs]
    slices = [[(s.variant, s.seed) for s in parse_shard(f"{k}/4").select(all_runs)] for k in range(1, 5)]
    assert sorted(k for sl in slices for k in sl) == sorted(keys) and len(set(keys)) == 6
    assert slices[0] == [keys[0], keys[4]] and slices[3] == [keys[3]]  # round-robin over run_specs order
    assert {v for v, _ in slices[1]} == {"dense", "moe"}  # a slice is not one variant's seeds
    assert parse_shard("1/1").select(all_runs) == all_runs
    assert parse_shard("7/8").select(all_runs) == []  # more shards than runs: an empty slice, not an error


@pytest.mark.parametrize("text", ["3/2", "0/2", "x", "1/0", "2", "1/2/3", "-1/2"])
def test_bad_shard_is_a_one_line_error(text):
    with pytest.raises(UserError, match="--shard"):
        parse_shard(text)
