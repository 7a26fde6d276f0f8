"""`moebench check --ab BASE_REF --suite SUITE.yaml`: is HEAD's MoE/dense speed ratio worse than the base
commit's, measured now, on this machine, in alternation (as `asv continuous` does).

The base commit's tree is exported with `git archive` into a temp directory (the repository is not touched).
Then short probe processes (training/abprobe.py: the suite's variants timed side by side in one process) run
alternately against HEAD's code and the base's, in the order H B B H H B ...: a load change hits both versions
alike. Each probe gives one MoE/dense ratio; the verdict is on the relative change of the median ratios. A
stored ratio from another processor is never compared: both sides are measured here.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from moebench.errors import UserError
from moebench.runs import abprobe

from .stats import sidebyside_ratio

AB_TOLERANCE = 0.10  # relative fall of the MoE/dense ratio; from measured probe noise (NOTES-15.md)


def _git(*args: str, cwd: Path) -> str:
    p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise UserError(f"git {' '.join(args)}: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else 'failed'}")
    return p.stdout.strip()


def export_tree(ref: str, repo: Path, dest: Path) -> str:
    """The tree of `ref` under dest (git archive | tar); its full SHA."""
    sha = _git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=repo)
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(["git", "archive", sha], cwd=repo, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    archive.wait()
    return sha


def _probe(script: Path, code_root: Path, suite: Path, rounds: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_root)}  # this version's moebench package comes first
    p = subprocess.run([sys.executable, str(script), str(suite), str(rounds)], env=env, capture_output=True,
                       text=True, cwd=code_root)
    if p.returncode:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"--ab: the speed probe failed on {code_root}: {tail}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def ab_compare(suite: Path, base_ref: str, probes: int = 3, rounds: int = 15, tolerance: float = AB_TOLERANCE,
               log=print) -> tuple[bool, str]:
    """(ok, table): the MoE/dense throughput ratio of HEAD vs `base_ref`, each probed `probes` times."""
    suite = Path(suite).resolve()
    if not suite.is_file():
        raise UserError(f"--suite {suite}: not a file")
    repo = Path(_git("rev-parse", "--show-toplevel", cwd=Path(abprobe.__file__).parent))
    with tempfile.TemporaryDirectory(prefix="moebench-ab-") as tmp:
        base_root = Path(tmp) / "base"
        sha = export_tree(base_ref, repo, base_root)
        script = Path(tmp) / "abprobe.py"  # run from outside either tree, so neither's files shadow a module
        shutil.copy(abprobe.__file__, script)
        roots = {"head": repo, "base": base_root}
        ratios: dict[str, dict[str, list[float]]] = {"head": {}, "base": {}}
        order = [side for i in range(probes) for side in (("head", "base") if i % 2 == 0 else ("base", "head"))]
        for i, side in enumerate(order, 1):
            try:
                res = _probe(script, roots[side], suite, rounds)
            except UserError as e:
                if side == "head":
                    raise
                # a base older than the probe's API (load_suite, plan_suite, run_specs, Trainer) cannot be timed
                return True, f"moebench check --ab: base {base_ref} ({sha[:12]}) cannot be probed, A/B skipped: {e}"
            for v, base in res["matched_to"].items():
                r = sidebyside_ratio(res, v, base) if base else None
                if r and v != base:
                    ratios[side].setdefault(f"{v}/{base}", []).append(r["ratio"])
            log(f"  probe {i}/{len(order)} ({side}): " + ", ".join(f"{k} {x[-1]:.4f}" for k, x in ratios[side].items()))
    rows, bad = [], []
    for pair in sorted(ratios["head"]):
        h, b = ratios["head"][pair], ratios["base"].get(pair)
        if not b:
            continue
        change = statistics.median(h) / statistics.median(b) - 1
        status = "REGRESSED" if change < -tolerance else "ok"
        if status != "ok":
            bad.append(pair)
        rows.append(f"throughput_ratio  {pair}  base {statistics.median(b):.4f} ({', '.join(f'{x:.3f}' for x in b)})"
                    f"  head {statistics.median(h):.4f} ({', '.join(f'{x:.3f}' for x in h)})  change {change:+.1%}"
                    f"  allowed -{tolerance:.0%}  {status}")
    load = os.getloadavg()[0]
    head = (f"moebench check --ab: HEAD vs {base_ref} ({sha[:12]}), measured alternately on this machine "
            f"({probes} probes each, {rounds} interleaved rounds per probe; load average {load:.1f})")
    verdict = f"{len(bad)} of {len(rows)} A/B checks REGRESSED" if bad else f"all {len(rows)} A/B checks within tolerance"
    if not rows:
        verdict = "no MoE/dense pair to compare"
    return not bad, "\n".join([head, *rows, verdict])
