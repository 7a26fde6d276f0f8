"""Trackers mirror metrics.jsonl: TensorBoard event files read back equal the logged rows (also across a resume);
an unknown or uninstalled tracker is a one-line error before anything is written."""
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moebench import io as R
from moebench.cli import main
from moebench.config.suite import build_suite
from moebench.plan import plan_suite, run_specs
from moebench.training import trackers
from moebench.runs.runner import run_one
from tests.helpers import tiny


def events(rd):
    acc = EventAccumulator(str(rd / trackers.TB_DIR), size_guidance={"scalars": 0, "images": 0, "histograms": 0,
                                                                     "tensors": 0})
    acc.Reload()
    return acc


def scalar(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def float32(x):
    import numpy as np

    return float(np.float32(x))


def logged(rd, kind, key):
    return [(r["step"], float32(r[key])) for r in R.read_metrics(rd / R.METRICS) if r["kind"] == kind]


def test_tensorboard_events_equal_metrics_jsonl(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny()))
    assert main(["run", str(suite), "--track", "tensorboard", "--results", str(tmp_path / "res"),
                 "--reports", str(tmp_path / "rep"), "--quiet"]) == 0
    for variant in ("dense", "moe"):
        rd = tmp_path / "res/tiny" / variant / "seed-0"
        acc = events(rd)
        assert scalar(acc, "train/loss") == logged(rd, "train", "loss")
        assert [s for s, _ in scalar(acc, "train/loss")] == list(range(1, 13))
        assert scalar(acc, "eval/val_loss") == logged(rd, "eval", "val_loss")
        assert scalar(acc, "eval/val_bpb") == logged(rd, "eval", "val_bpb")
        text = acc.Tags()["tensors"]
        assert "config/text_summary" in text and "summary/text_summary" in text
    acc = events(tmp_path / "res/tiny/moe/seed-0")
    assert [e.step for e in acc.Images("eval/expert_load")] == [4, 8, 12]
    assert {f"eval/expert_load_layer{i}" for i in (0, 1)} <= set(acc.Tags()["histograms"])
    evals = [r for r in R.read_metrics(tmp_path / "res/tiny/moe/seed-0" / R.METRICS) if r["kind"] == "eval"]
    assert scalar(acc, "eval/experts_entropy") == [(r["step"], float32(r["experts"]["entropy"])) for r in evals]
    assert yaml.safe_load((tmp_path / "res/tiny/suite.yaml").read_text())["track"] == ["tensorboard"]


class Killed(Exception):
    pass


def kill_after(n):
    """Dies after n steps without a checkpoint (what kill -9 does mid-run): the stop check is per step."""
    steps = iter(range(n - 1))
    return lambda: next(steps, None) is None and (_ for _ in ()).throw(Killed())


def test_a_resumed_run_keeps_each_step_once_in_tensorboard(tmp_path):
    spec = next(s for s in run_specs(plan_suite(build_suite(tiny(track=["tensorboard"])))) if s.variant == "dense")
    # the stop check runs inside each step (its answer travels with the step's metrics), so dying at the 7th
    # check leaves steps 1-6 logged; the last checkpoint is at step 4: steps 5 and 6 will be redone
    with pytest.raises(Killed):
        run_one(spec, tmp_path, stop=kill_after(7), quiet=True, log=lambda *a: None)
    rd = R.run_dir(tmp_path, spec.suite, spec.variant, spec.seed)
    assert [s for s, _ in scalar(events(rd), "train/loss")] == list(range(1, 7))
    run_one(spec, tmp_path, quiet=True, log=lambda *a: None)
    acc = events(rd)
    assert scalar(acc, "train/loss") == logged(rd, "train", "loss")
    assert [s for s, _ in scalar(acc, "train/loss")] == list(range(1, 13))


def test_unknown_tracker_is_a_one_line_error_before_anything_is_written(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny(track=["tensorbord"])))
    assert main(["run", str(suite), "--results", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "track:" in err and "did you mean 'tensorboard'" in err
    assert not (tmp_path / "res").exists()


def test_tracker_whose_package_is_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trackers.WandbTracker, "package", "moebench_no_such_package")
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny()))
    assert main(["run", str(suite), "--track", "wandb", "--results", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert "track: wandb needs the moebench_no_such_package package: pip install 'moebench[wandb]'" in err
    assert not (tmp_path / "res").exists()


def test_rows_become_scalars_and_load_matrices():
    row = {"kind": "eval", "step": 4, "val_loss": 2.0, "experts": {"entropy": 0.9, "layers": [{"load": [0.5, 0.5]}]}}
    assert trackers.row_scalars(row) == {"eval/val_loss": 2.0, "eval/experts_entropy": 0.9}
    assert trackers.load_matrix(row["experts"]).tolist() == [[0.5, 0.5]]
    row["experts"]["max_vio"] = {"p50": 0.1, "p90": 0.25, "max": 0.5}  # the load metrics over layers
    assert trackers.row_scalars(row) == {"eval/val_loss": 2.0, "eval/experts_entropy": 0.9,
                                         "eval/experts_max_vio_p50": 0.1, "eval/experts_max_vio_p90": 0.25,
                                         "eval/experts_max_vio_max": 0.5}
    img = trackers.heatmap(trackers.load_matrix({"layers": [{"load": [0.0, 0.5, 1.0]}]}), cell=1)
    assert img.shape == (3, 1, 3)
    assert img[:, 0, 0].tolist() == [0.0, 0.0, 1.0]  # starved: blue
    assert img[:, 0, 2].tolist() == [1.0, 0.0, 0.0]  # 3x the even share: red


def test_wandb_offline_run_holds_the_same_history(tmp_path, monkeypatch):
    from tests.training.wandb_records import history

    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default: offline, nothing leaves the machine
    spec = next(s for s in run_specs(plan_suite(build_suite(tiny(track=["wandb"])))) if s.variant == "moe")
    run_one(spec, tmp_path, quiet=True, log=lambda *a: None)
    rd = R.run_dir(tmp_path, spec.suite, spec.variant, spec.seed)
    rows = history(rd / trackers.WANDB_DIR)
    assert [(r["_step"], float32(r["train/loss"])) for r in rows] == logged(rd, "train", "loss")
    ev = [(r["_step"], float32(r["eval/val_loss"])) for r in rows if "eval/val_loss" in r]
    assert ev == logged(rd, "eval", "val_loss")
    assert sum("eval/expert_load/path" in r for r in rows) == 3  # the heatmap image at every eval
