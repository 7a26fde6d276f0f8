"""A suite with moe_backend: triton trains through our Triton kernels (CPU: under TRITON_INTERPRET=1, set in
conftest) and its loss curve matches the torch backend's."""
import pytest

from moebench import io as R
from moebench.cli import main
from moebench.errors import UserError
from moebench.models.backends import resolve_backend
from tests.cli.test_end_to_end import write_suite


def test_triton_backend_trains_and_matches_torch(tmp_path):
    curves = {}
    for backend in ("torch", "triton"):
        suite = write_suite(tmp_path, **{"train.moe_backend": backend, "train.steps": 6, "eval.interval": 3,
                                         "eval.tokens": 256, "eval.test": False, "train.warmup_steps": 1})
        out = tmp_path / backend
        assert main(["run", str(suite), "--results", str(out), "--reports", str(tmp_path / "rep"),
                     "--only", "moe", "--quiet"]) == 0
        rd = out / "tiny/moe/seed-0"
        assert R.read_json(rd / R.SUMMARY)["backend"] == backend
        curves[backend] = [r["loss"] for r in R.read_metrics(rd / R.METRICS) if r["kind"] == "train"]
    assert curves["triton"] == pytest.approx(curves["torch"], rel=1e-4, abs=1e-5)


def test_asking_for_triton_where_it_cannot_run_is_an_error(monkeypatch):
    import torch

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(UserError, match="moe_backend: triton cannot run here"):
        resolve_backend("triton", torch.device("cpu"))
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
