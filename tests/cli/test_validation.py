"""Every bad value is refused by `plan` and by `run` with one line naming the field, exit 2, before a byte on
disk changes (docs/validation.md); an oversized model is refused by its memory estimate without allocating it."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from moebench.cli import main
from moebench.errors import UserError
from moebench.config.suite import build_suite
from moebench.plan import plan_suite
from moebench.plan import memory
from tests.cli.test_reliability import _err_line, snapshot
from tests.helpers import tiny
from tests.synth import write_run, write_suite

DEEP = 20_000

# (name, suite changes, what the one line must contain)
BAD = [
    ("betas", {"train.betas": [2, 0.95]}, "train.betas.0: Input should be less than 1"),
    ("capacity_inf", {"variants.moe.capacity_factor": float("inf")}, "variants.moe.capacity_factor: must be finite"),
    ("lr_inf", {"train.lr": float("inf")}, "train.lr: must be finite"),
    ("seed_2_64", {"train.seeds": [2**64]}, "train.seeds: must be < 2**63"),
    ("eval_tokens_1", {"eval.tokens": 1}, "eval.tokens: must be at least one evaluation window"),
    ("extends_list", {"variants.moe.extends": ["dense"]}, "variants.moe.extends: must be one variant's name"),
    ("variant_newline", {"variants.moe\n": {}}, r"variants: 'moe\n' is not a variant name"),
    ("claim_kind_list", {"claims": [{"kind": ["loss_better"]}]}, "claims.0.kind: unknown claim kind"),
    ("d_model_1e6", {"base.d_model": 1_000_000}, "memory: the largest run, variants."),
    ("experts_1e8", {"variants.moe.num_experts": 10**8, "variants.moe.expert_d_ff": 64, "match.strict": False},
     "memory: the largest run, variants.moe, needs about"),
    ("deep_list", {"description": "DEEP"}, "nested too deeply"),
    ("deep_set_key", {}, "nested more than"),
]


def write(path: Path, changes: dict) -> Path:
    text = yaml.safe_dump(tiny(**changes))
    path.write_text(text.replace("description: DEEP", "description: " + "[" * DEEP + "]" * DEEP))
    return path


@pytest.fixture
def disk(tmp_path, monkeypatch):
    """A results folder with a finished (synthetic) run of the same suite, a report and a token cache folder."""
    d = write_suite(tmp_path / "res", name="tiny")
    write_run(d, "dense", 0, [4.0, 3.5])
    (tmp_path / "rep/tiny").mkdir(parents=True)
    (tmp_path / "rep/tiny/README.md").write_text("# an earlier report\n")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache/tokens.bin").write_bytes(b"\x00" * 64)
    monkeypatch.setenv("MOEBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("name,changes,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_value_exits_2_before_anything_changes(disk, capsys, command, name, changes, needle):
    suite = write(disk / "suite.yaml", changes)
    argv = [command, str(suite)] + (["--results", str(disk / "res"), "--reports", str(disk / "rep")]
                                    if command == "run" else [])
    if name == "deep_set_key":
        argv += ["--set", ".".join(["x"] * DEEP) + "=1"]
    before = snapshot(disk)
    assert main(argv) == 2
    assert needle in _err_line(capsys)
    assert snapshot(disk) == before


def _fake_meminfo(tmp_path, monkeypatch, available: int) -> None:
    (tmp_path / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {available // 1024} kB\n")
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "meminfo")


def test_memory_counts_the_runs_jobs_trains_at_once(disk, monkeypatch, capsys):
    """Room for the largest run but not for two: plan and run --jobs 1 pass the check, run --jobs 2 is refused
    with both the estimate and --jobs in its line; --skip-memory-check lets plan through below any estimate."""
    suite = write(disk / "suite.yaml", {})
    built = build_suite(tiny())
    est = sorted(memory.estimate(c, built).total for c in plan_suite(built).configs.values())
    _fake_meminfo(disk, monkeypatch, est[-1] + est[0] // 2)
    assert main(["plan", str(suite)]) == 0
    before = snapshot(disk)
    argv = ["run", str(suite), "--results", str(disk / "res"), "--reports", str(disk / "rep"), "--jobs", "2"]
    assert main(argv) == 2
    err = _err_line(capsys)
    assert "memory: 2 runs at once (--jobs 2) need about" in err and "activations" in err
    assert snapshot(disk) == before
    configs = plan_suite(built).configs
    smallest = min(configs, key=lambda k: memory.estimate(configs[k], built).total)
    memory.MemoryCheck(built, 2, "--jobs 2", only=(smallest,))(configs)  # --only: one variant, one seed: fits
    with pytest.raises(UserError, match="--jobs 2"):
        memory.MemoryCheck(built, 2, "--jobs 2")(configs)
    _fake_meminfo(disk, monkeypatch, 4096)
    assert main(["plan", str(suite)]) == 2
    assert "memory:" in _err_line(capsys)
    assert main(["plan", str(suite), "--skip-memory-check"]) == 0


def test_estimate_terms():
    """AdamW: weights, gradients and two moments are 4 + 4 + 8 bytes a parameter (flops.count's total, here in
    closed form); SGD keeps one moment; bf16 halves the activations."""
    from moebench.plan.flops import count

    built = build_suite(tiny())
    for key, cfg in plan_suite(built).configs.items():
        p = count(cfg).params_total
        assert memory.param_count(cfg) == p, key
        e = memory.estimate(cfg, built)
        assert (e.params, e.grads, e.optimizer) == (4 * p, 4 * p, 8 * p)
        sgd = build_suite(tiny(**{"train.optimizer": "sgd", "train.dtype": "bfloat16"}))
        e2 = memory.estimate(cfg, sgd)
        assert e2.optimizer == 4 * p and abs(e2.activations * 2 - e.activations) <= 2


CHILD = textwrap.dedent("""
    import json, resource, sys
    from moebench.cli import main
    from moebench.models import transformer

    built = []
    def refuse(self, *a, **k):
        built.append(1)
        raise AssertionError("a model was built")
    transformer.Transformer.__init__ = refuse
    codes = [main(argv) for argv in json.loads(sys.argv[1])]
    # VmHWM: this process's peak RSS. ru_maxrss would also count the parent's pages the child had before its
    # exec (Linux keeps the high-water mark across exec), i.e. pytest's own size.
    hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")]
    print(json.dumps({"codes": codes, "built": len(built),
                      "maxrss_kb": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
""")


def test_oversized_models_are_refused_without_allocating_them(tmp_path):
    """d_model 1e6 (an 8e12-parameter model) and 1e8 experts, through plan and run in a fresh process: exit 2,
    no Transformer constructed, peak RSS (torch imported included) under 500 MB."""
    argvs = []
    for name, changes, _ in BAD:
        if name in ("d_model_1e6", "experts_1e8"):
            suite = write(tmp_path / f"{name}.yaml", changes)
            argvs += [["plan", str(suite)], ["run", str(suite), "--results", str(tmp_path / "res"),
                                             "--reports", str(tmp_path / "rep"), "--quiet"]]
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argvs)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["codes"] == [2] * len(argvs) and res["built"] == 0, out.stderr
    assert res["maxrss_kb"] < 500 * 1024, res
    assert out.stderr.count("moebench: error: memory:") == len(argvs)
    assert not (tmp_path / "res").exists() and not (tmp_path / "rep").exists()
