"""load_results reads run directories alone: finished, failed, unfinished and torn runs."""
import json

import pytest
from tests.synth import experts_stats, write_run, write_suite

from moebench.errors import UserError
from moebench.analysis.resultset import load_results


def test_runs_curves_train_and_status(tmp_path):
    d = write_suite(tmp_path)
    write_run(d, "dense", 0, [4.0, 3.0])
    write_run(d, "moe", 0, [3.8, 2.9], experts=experts_stats(entropy=0.9),
              lm_eval={"arc_easy": {"acc": 0.4, "acc_norm": 0.45, "version": 1, "n_shot": 0}})
    write_run(d, "moe", 1, [3.9], status="failed", failure={"step": 100, "reason": "loss is inf"})
    write_run(d, "moe", 10, [3.9, 3.5], finished=False)  # seed 10 sorts after seed 1, not between 0 and 1
    with open(d / "moe" / "seed-10" / "metrics.jsonl", "a") as f:
        f.write('{"kind": "eval", "step": 3')  # killed mid-append
    rs = load_results(d)
    r = rs.runs
    assert list(zip(r["variant"], r["seed"], r["status"])) == [
        ("dense", 0, "ok"), ("moe", 0, "ok"), ("moe", 1, "failed"), ("moe", 10, "incomplete")]
    moe0 = r.iloc[1]
    assert moe0["experts.entropy"] == 0.9 and moe0["lm_eval.arc_easy.acc_norm"] == 0.45
    assert "lm_eval.arc_easy.version" not in r.columns
    assert moe0["tokens_per_param"] == 200  # 2 evals x 100 steps x 1000 tokens / 1000 params
    assert r.iloc[2]["failure_reason"] == "loss is inf" and r.iloc[2]["failure_step"] == 100
    assert r.iloc[3]["kind"] == "dense" and r.iloc[3]["val_loss"] != r.iloc[3]["val_loss"]  # NaN: no summary
    c = rs.curves
    assert list(c[c["seed"] == 10]["step"]) == [100, 200]  # the torn line is dropped
    assert {"variant", "seed", "step", "tokens", "flops", "wall", "val_loss", "val_bpb"} <= set(c.columns)
    assert len(rs.train) == 2 + 2 + 1 + 2
    assert rs.suite["name"] == "synth" and rs.name == "synth" and rs.env["cpu_model"] == "Synthetic CPU"
    assert rs.experts[("moe", 0)]["layers"][1]["load"][1] == 0.4


def test_differing_env_values_are_all_kept(tmp_path):
    d = write_suite(tmp_path)
    write_run(d, "dense", 0, [4.0], env={"device": "cpu", "torch": "2.13.0"})
    write_run(d, "dense", 1, [4.0], env={"device": "cuda", "torch": "2.13.0"})
    env = load_results(d).env
    assert env["device"] == "cpu | cuda" and env["torch"] == "2.13.0"


def test_missing_results_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_results(tmp_path / "nope")


def test_planned_runs_without_a_directory_are_incomplete(tmp_path):
    # plan.json as `moebench run` writes it: PlanRow dicts keyed by name; the seeds come from suite.yaml
    d = write_suite(tmp_path, variants=("dense", "moe"), seeds=(0, 1))
    plan = json.loads((d / "plan.json").read_text())
    assert [r["name"] for r in plan] == ["dense", "moe"] and "seed" not in plan[0]
    write_run(d, "dense", 0, [4.0])
    r = load_results(d).runs
    assert list(zip(r["variant"], r["seed"], r["status"])) == [
        ("dense", 0, "ok"), ("dense", 1, "incomplete"), ("moe", 0, "incomplete"), ("moe", 1, "incomplete")]


def test_epochs_from_the_summary(tmp_path):
    d = write_suite(tmp_path)
    write_run(d, "dense", 0, [4.0, 3.0], unique_train_tokens=50_000)  # 200 steps x 1000 tokens: 4 epochs
    r = load_results(d).runs.iloc[0]
    assert r["epochs"] == 4.0 and r["unique_train_tokens"] == 50_000
