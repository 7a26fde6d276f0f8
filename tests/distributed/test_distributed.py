"""Two CPU processes on gloo through torchrun: data-parallel, expert-parallel and FSDP training match one
process; a rank failing mid-run fails the run cleanly and the suite records it. ~1 minute on 2 cores."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moebench import io as R
from moebench.cli import main
from tests.helpers import tiny

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUITE = {"train.steps": 6, "train.checkpoint_every": 3, "eval.interval": 3, "eval.tokens": 256}
ENV = dict(os.environ, PYTHONUNBUFFERED="1", MOEBENCH_DIST_TIMEOUT="30", HF_HUB_OFFLINE="1",
           HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def run(cmd, timeout=900):  # bounds on a hang only: two ranks on a loaded 2-core box take minutes
    p = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return p


def rows(run_dir: Path, kind: str):
    return [r for r in R.read_metrics(run_dir / R.METRICS) if r["kind"] == kind]


def assert_losses_close(a: Path, b: Path, tol: float):
    for kind, key in (("train", "loss"), ("eval", "val_loss")):
        ra, rb = rows(a, kind), rows(b, kind)
        assert [r["step"] for r in ra] == [r["step"] for r in rb]
        for x, y in zip(ra, rb):
            assert x[key] == pytest.approx(y[key], abs=tol), (kind, x["step"])
            assert x["tokens"] == y["tokens"]  # batch_size is the global batch


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    p = d / "suite.yaml"
    p.write_text(yaml.safe_dump(tiny(**SUITE)))
    assert main(["run", str(p), "--results", str(d / "ref"), "--reports", str(d / "rep"), "--quiet"]) == 0
    return p, d / "ref/tiny"


def test_expert_parallel_layer_forward_and_backward_equal_one_process():
    p = run(TORCHRUN + [str(HERE / "ep_worker.py")], timeout=900)
    assert p.returncode == 0 and "EP_OK" in p.stdout, p.stdout[-2000:] + p.stderr[-3000:]


def test_global_batch_f_i_and_the_bias_update_see_every_rank():
    """lb_scope: global over 2 gloo ranks x 2 micro-batches equals the micro-batch f_i of all of them
    concatenated; the loss-free bias moves from the summed load, identically on both ranks."""
    p = run(TORCHRUN + [str(HERE / "balance_worker.py")], timeout=90)
    assert p.returncode == 0 and "BAL_OK" in p.stdout, p.stdout[-2000:] + p.stderr[-3000:]


def test_nproc_2_data_and_expert_parallel_match_one_process(suite):
    """`moebench run --nproc 2` (torchrun underneath) with expert_parallel 2: dense is plain DDP, the MoE
    variant shards its experts over both ranks; both follow the one-process loss curve."""
    path, ref = suite
    out = path.parent / "ep"
    p = run([sys.executable, "-m", "moebench", "run", str(path), "--nproc", "2", "--results", str(out),
             "--reports", str(path.parent / "rep-ep"), "--set", "train.expert_parallel=2"])
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert p.stdout.count("[1/2] dense seed 0: training") == 1  # rank 0 speaks, once
    assert_losses_close(out / "tiny/dense/seed-0", ref / "dense/seed-0", 1e-4)
    assert_losses_close(out / "tiny/moe/seed-0", ref / "moe/seed-0", 2e-3)  # aux loss is per-rank
    for v, ep in (("dense", 2), ("moe", 2)):
        rd = out / f"tiny/{v}/seed-0"
        s = R.read_json(rd / R.SUMMARY)
        assert s["status"] == "ok" and s["world_size"] == 2
        assert s["parallel"] == {"world_size": 2, "data_parallel": 2, "expert_parallel": ep, "expert_replicas": 1,
                                 "mode": "ddp", "backend": "gloo"}
        assert s["comm_time_s"] > 0 and 0 < s["comm_fraction"] < 1
        assert all(r["comm_time"] >= 0 for r in rows(rd, "train"))
        files = sorted(f.name for f in rd.iterdir())
        assert files == ["config.yaml", "manifest.json", "metrics.jsonl", "model.safetensors", "summary.json"]
    print(f"\nEP comm_fraction (CPU, gloo, 2 ranks): {R.read_json(out / 'tiny/moe/seed-0' / R.SUMMARY)['comm_fraction']:.3f}")
    report = (path.parent / "rep-ep/tiny/README.md").read_text()
    assert "## Distributed training" in report and '"expert_parallel": 2' in report
    # model.safetensors holds every expert (gathered from both ranks): a one-process model loads it
    from moebench.evals.load import load_trained

    model, *_ = load_trained(out / "tiny/moe/seed-0", "cpu")
    assert model.blocks[0].ffn.w_up.shape[0] == 4
    assert (path.parent / "rep-ep/tiny/README.md").exists()


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_gradient_accumulation_over_ranks_matches_one_process(suite, parallel):
    """2 ranks x 2 micro-batches (gradients synchronised on the last only) follow the one-process,
    one-micro-batch curve: the same optimizer steps over the same global batches."""
    path, ref = suite
    out = path.parent / f"accum-{parallel}"
    p = run(TORCHRUN + ["-m", "moebench", "run", str(path), "--results", str(out), "--quiet", "--only", "dense",
                        "--reports", str(path.parent / f"rep-accum-{parallel}"), "--set", "train.grad_accum_steps=2",
                        "--set", f"train.parallel={parallel}"])
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert_losses_close(out / "tiny/dense/seed-0", ref / "dense/seed-0", 1e-4)


def test_fsdp_matches_one_process_and_post_training_work_runs_after_the_group(suite):
    """Inference and lm-eval are measured on rank 0 after every rank finished (no peer waits at a barrier)."""
    path, ref = suite
    out = path.parent / "fsdp"
    p = run(TORCHRUN + ["-m", "moebench", "run", str(path), "--results", str(out), "--quiet", "--only", "dense",
                        "--reports", str(path.parent / "rep-fsdp"), "--set", "train.parallel=fsdp",
                        "--set", "inference={batch_sizes: [2], repeats: 1}",
                        "--set", "eval.lm_eval={tasks: [ptb_ppl], limit: 1}"])
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert_losses_close(out / "tiny/dense/seed-0", ref / "dense/seed-0", 1e-4)
    s = R.read_json(out / "tiny/dense/seed-0" / R.SUMMARY)
    assert s["parallel"]["mode"] == "fsdp" and s["world_size"] == 2
    assert s["inference"]["speed"][0]["batch_size"] == 2 and s["lm_eval"]["ptb_ppl"]["word_perplexity"] > 1


def test_a_rank_failing_mid_run_fails_the_run_cleanly_and_a_rerun_resumes(suite):
    path, ref = suite
    out = path.parent / "fail"
    args = ["--results", str(out), "--reports", str(path.parent / "rep-fail"), "--only", "dense"]
    env_fail = dict(FAIL_RANK="1", FAIL_STEP="4")
    ENV.update(env_fail)
    try:
        p = run(TORCHRUN + [str(HERE / "fail_worker.py"), "run", str(path)] + args, timeout=900)
    finally:
        for k in env_fail:
            ENV.pop(k)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-3000:]
    rd = out / "tiny/dense/seed-0"
    s = R.read_json(rd / R.SUMMARY)
    assert s["status"] == "failed" and s["failure"]["rank"] == 1 and s["failure"]["step"] == 4
    assert "injected failure on rank 1" in s["failure"]["reason"]
    assert "the distributed job stops here" in p.stderr
    # the rerun retries the crashed run from its step-3 checkpoints and ends where one process does
    p = run(TORCHRUN + ["-m", "moebench", "run", str(path)] + args)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "a rank failed last time" in p.stdout and "resuming from step 3" in p.stdout
    assert R.read_json(rd / R.SUMMARY)["status"] == "ok"
    assert_losses_close(rd, ref / "dense/seed-0", 1e-4)


def test_expert_parallel_without_enough_processes_is_a_user_error(tmp_path, capsys):
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(tiny(**SUITE, **{"train.expert_parallel": 2})))
    assert main(["run", str(p), "--results", str(tmp_path / "r"), "--reports", str(tmp_path / "rep")]) == 2
    assert "expert_parallel: 2 needs at least 2 processes" in capsys.readouterr().err


def test_comm_timer_merges_overlapping_intervals():
    from moebench.distributed.groups import CommTimer

    t = CommTimer()
    for s, e in ((0.0, 1.0), (0.5, 1.5), (3.0, 4.0), (3.2, 3.4)):
        t.add(s, e)
    assert t.total() == pytest.approx(2.5)
    t.reset()
    assert t.total() == 0.0


def test_nproc_strips_itself_for_torchrun():
    from moebench.cli.launch import strip_nproc

    assert strip_nproc(["run", "s.yaml", "--nproc", "2", "--quiet"]) == ["run", "s.yaml", "--quiet"]
    assert strip_nproc(["s.yaml", "--nproc=4"]) == ["s.yaml"]
