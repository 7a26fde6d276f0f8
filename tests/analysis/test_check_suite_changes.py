"""`moebench check` notes a changed suite only when a field's resolved value changed, and names the fields."""
import json
from pathlib import Path

from moebench.analysis.check import _suite_core, _suite_hash, build_baseline, compare_to_baseline, suite_note
from moebench.config.diff import schema_default, suite_changes
from moebench.config.suite import load_suite
from tests.synth import write_run, write_suite

REPO = Path(__file__).resolve().parents[2]


def results(root: Path, **changes) -> Path:
    d = write_suite(root, name="syn", seeds=(0, 1), **changes)
    for s in (0, 1):
        write_run(d, "dense", s, [3.0, 2.8 + 0.01 * s])
        write_run(d, "moe", s, [3.0, 2.7 + 0.01 * s])
    return d


def test_a_changed_field_is_named_with_both_values(tmp_path):
    base = build_baseline(results(tmp_path / "a"))
    ok, text, _ = compare_to_baseline(results(tmp_path / "b", **{"train.lr": 1e-3, "eval.interval": 6}), base)
    note = next(ln for ln in text.splitlines() if "suite changed" in ln)
    assert "train.lr: 0.003 -> 0.001" in note and "eval.interval: 4 -> 6" in note
    assert note.count("->") == 2


def test_a_field_the_baseline_predates_is_no_change_when_it_resolves_to_its_default(tmp_path):
    base = build_baseline(results(tmp_path / "a"))
    # a baseline written before train.compile existed: its suite lacks the field, so its hash differs
    del base["suite_config"]["train"]["compile"]
    base["suite_hash"] = _suite_hash(base["suite_config"])
    _, text, _ = compare_to_baseline(results(tmp_path / "b"), base)
    assert "suite" not in text.split("\n\n")[0].replace("moebench check: syn", "")
    # the same field at a value other than its default is a change
    base["suite_config"]["train"]["compile"] = not schema_default("train.compile")
    base["suite_hash"] = _suite_hash(base["suite_config"])
    _, text, _ = compare_to_baseline(results(tmp_path / "b"), base)
    assert f"train.compile: {not schema_default('train.compile')} -> {schema_default('train.compile')}" in text


def test_the_committed_ci_baseline_sees_no_change_in_the_shipped_ci_suite():
    base = json.loads((REPO / "suites/ci.baseline.json").read_text())
    raw = load_suite(REPO / "suites/ci.yaml").raw
    assert base["suite_hash"] == _suite_hash(base["suite_config"])  # the stored suite is the one it measured
    assert suite_note(base, {"suite_hash": _suite_hash(raw), "suite_config": _suite_core(raw)}) is None


def test_variant_fields_default_by_the_variant_schema():
    old = {"variants": {"moe": {"num_experts": 4}}}
    assert suite_changes(old, {"variants": {"moe": {"num_experts": 4, "top_k": 1}}}) == []
    [change] = suite_changes(old, {"variants": {"moe": {"num_experts": 4, "top_k": 2}}})
    assert str(change) == "variants.moe.top_k: 1 -> 2"
    [added] = suite_changes(old, {"variants": {"moe": {"num_experts": 4}, "moe2": {"num_experts": 8}}})
    assert str(added) == "variants.moe2.num_experts: None -> 8"  # the schema default
