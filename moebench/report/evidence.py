"""The project's committed evidence: each report in evidence/<name>/ has the results it was judged on beside it,
in evidence/<name>/results/ (where no user's run writes), so anyone can re-judge it and CI does
(tests/report/test_evidence.py; docs/testing.md, "Committed evidence, re-judged in CI").

The copy keeps everything a judge or the report reads (suite.yaml, plan.json, the side-by-side timing, every run's
config, summary and eval rows) and leaves out what git should not carry: the weights and checkpoints (recorded as
"omitted" in each run's manifest) and most per-step training rows (metrics.jsonl "thinned": every eval row kept,
the new row count and sha256 recorded). io.verify_run accepts exactly that, so an edited summary, metrics or timing
file in the evidence is still named as damaged.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

from moebench import io as R
from moebench.analysis import sequential
from moebench.analysis.resultset import load_results
from moebench.errors import UserError

from .render import MARKER, check_report_dir, final_verdicts, verdicts_json

RESULTS = "results"  # evidence/<name>/results/
VERDICTS = "verdicts.json"
MAX_TRAIN_ROWS = 40  # training rows kept per run (evenly spaced, plus the last): the judges read none of them
# the suite-level files a report reads (the folder's manifest records sidebyside.json's checksum)
SUITE_FILES = ("suite.yaml", "plan.json", R.PLANNED_RUNS, R.SIDEBYSIDE, R.MANIFEST, sequential.RECORD)
RUN_FILES = (R.CONFIG, R.SUMMARY, R.MANIFEST)  # copied as they are; metrics.jsonl is thinned
# a re-judged number may differ from the committed one by float noise across machines (BLAS, scipy), no more
RTOL, ATOL = 1e-4, 1e-9


@dataclasses.dataclass(frozen=True)
class Saved:
    results: Path
    runs: int
    bytes: int


def save_results(results_dir: Path, dest: Path, max_train_rows: int = MAX_TRAIN_ROWS) -> Saved:
    """Copy results/<suite>/'s finished runs to `dest` (evidence/<name>/results/) without weights and with thinned
    training rows, replacing what was there only once the new copy is complete."""
    src = Path(results_dir)
    if not (src / "suite.yaml").is_file():
        raise UserError(f"{src}: not a suite results directory (no suite.yaml)")
    dest = Path(dest)
    check_report_dir(dest.parent)  # the report is written beside the results: a new folder becomes a report folder
    if not dest.parent.exists() or not any(dest.parent.iterdir()):
        R.atomic_write_text(dest.parent / MARKER, "written by moebench report; its other files are replaced on the "
                                                  "next one\n")
    tmp = R.make_temp_dir(dest.parent, f".{dest.name}.")
    try:
        for name in SUITE_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        runs = 0
        for vdir in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")
                           and p.name != "superseded"):
            for rd in sorted(d for d in vdir.iterdir() if d.is_dir() and d.name.startswith("seed-")):
                if (rd / R.SUMMARY).exists():  # an unfinished run is left out: the report shows it as missing
                    _save_run(rd, tmp / vdir.name / rd.name, max_train_rows)
                    runs += 1
        old = dest.parent / f".{dest.name}.old"
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return Saved(dest, runs, size)


def _save_run(rd: Path, out: Path, max_train_rows: int) -> None:
    if not (rd / R.MANIFEST).is_file():
        raise UserError(f"{rd}: no {R.MANIFEST} (unfinished, or written before manifests): the evidence keeps only "
                        "runs whose files can be verified; rerun `moebench run` on the suite")
    summary, problem = R.read_summary(rd)
    problem = problem or (R.verify_run(rd, summary) if summary is not None else R.verify_manifest(rd))
    if problem:
        raise UserError(f"{problem}; the evidence keeps only intact runs")
    out.mkdir(parents=True)
    for name in RUN_FILES:
        if (rd / name).is_file():
            shutil.copyfile(rd / name, out / name)
    manifest = R.read_json(out / R.MANIFEST)
    recorded = set(manifest.get("files") or {}) | set((summary or {}).get("integrity") or {})
    manifest["omitted"] = sorted(n for n in R.OMITTABLE if n in recorded or (rd / n).exists())
    if (rd / R.METRICS).is_file():
        lines = [ln for ln in (rd / R.METRICS).read_bytes().splitlines(keepends=True) if ln.strip()]
        kept = _thin(lines, max_train_rows)
        data = b"".join(kept)
        if len(kept) == len(lines):  # nothing to thin: the file as it is, matching its summary's record
            shutil.copyfile(rd / R.METRICS, out / R.METRICS)
        else:
            (out / R.METRICS).write_bytes(data)
            manifest["thinned"] = {R.METRICS: {"rows": len(kept), "sha256": hashlib.sha256(data).hexdigest(),
                                               "rows_before": len(lines)}}
    R.atomic_write_json(out / R.MANIFEST, manifest)


def _thin(lines: list[bytes], max_train_rows: int) -> list[bytes]:
    """Every eval (and any other) row; training rows evenly spaced, at most about max_train_rows, and the last."""
    train = [i for i, ln in enumerate(lines) if json.loads(ln).get("kind") == "train"]
    every = max(1, math.ceil(len(train) / max_train_rows))
    drop = {i for j, i in enumerate(train) if j % every and i != train[-1]}
    return [ln for i, ln in enumerate(lines) if i not in drop]


def rejudge(results_dir: Path) -> list[dict]:
    """The verdicts the current code gives the committed results, as verdicts.json would hold them."""
    return json.loads(verdicts_json(final_verdicts(load_results(Path(results_dir)), Path(results_dir))[0]))


def differences(committed: list[dict], fresh: list[dict], rtol: float = RTOL, atol: float = ATOL) -> list[str]:
    """One line per difference between two verdicts.json contents: a claim added or gone, a verdict changed, or a
    number (any numeric leaf of `numbers` both hold) moved beyond rtol/atol; strings and booleans must be equal."""
    old, new = {v["name"]: v for v in committed}, {v["name"]: v for v in fresh}
    out = [f"{n}: in the committed verdicts.json, not judged now" for n in old if n not in new]
    out += [f"{n}: judged now, not in the committed verdicts.json" for n in new if n not in old]
    for n in (n for n in old if n in new):
        if old[n]["verdict"] != new[n]["verdict"]:
            out.append(f"{n}: verdict {old[n]['verdict']} committed, {new[n]['verdict']} now ({new[n]['reason']})")
        out += [f"{n}: numbers.{path} {a!r} committed, {b!r} now"
                for path, a, b in _leaves(old[n].get("numbers") or {}, new[n].get("numbers") or {})
                if not _same(a, b, rtol, atol)]
    return out


def _leaves(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) & set(b)):
            yield from _leaves(a[k], b[k], f"{path}.{k}" if path else str(k))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _leaves(x, y, f"{path}[{i}]")
    else:
        yield path, a, b


def _same(a, b, rtol: float, atol: float) -> bool:
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)
    return a == b


def evidence_folders(root: Path) -> list[Path]:
    """evidence/<name>/ folders that hold a report (verdicts.json); kernels/ holds a table, not a report."""
    return sorted(d for d in Path(root).iterdir() if d.is_dir() and (d / VERDICTS).is_file())
