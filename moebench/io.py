"""Files on disk, a leaf every layer may import: atomic writes (temp file + fsync + rename), JSON, and the
names of what a run directory holds (training writes them, analysis and evals read them).

The layout of results/<suite>/ (one directory per variant and seed) and every field of metrics.jsonl and
summary.json: docs/reliability-output.md, "The results folder". A finished run whose files no longer match the row
count and sha256 recorded in its summary or manifest is "damaged": readers say which file and treat it as
unfinished; `run` says so and retrains it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from moebench.errors import UserError

# Output roots, relative to where moebench runs: a user's runs write results/ and reports/ (both git-ignored); the
# project's published reports live in evidence/, which only an explicit --reports / --out names, so a run with the
# defaults never overwrites them and the README's first command leaves `git status` clean
RESULTS_ROOT = "results"
REPORTS_ROOT = "reports"
EVIDENCE_ROOT = "evidence"

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.safetensors"
LEGACY_FINAL_MODEL = "model.pt"  # before safetensors; read with torch.load(weights_only=True)
# results/<suite>/runs.json, written by `run --shard`: every run of the suite, {"runs": [{"variant", "seed"}]}, so
# a report written before every shard finished shows the others as incomplete rather than judging without them
PLANNED_RUNS = "runs.json"
SIDEBYSIDE = "sidebyside.json"  # in results/<suite>/: training/sidebyside.py
# written after summary.json, every time it is (re)written: the sha256 of summary.json and of the run's other files,
# so a hand-edited summary is detected too (a summary cannot vouch for itself). Runs from before it: legacy,
# checked against their summary's integrity record alone.
MANIFEST = "manifest.json"
LEGACY = "unverified (legacy)"  # how a run without a manifest is labelled: neither damaged nor verified
SUITE_FILE = "suite.yaml"  # results/<suite>/: the resolved suite, recorded in the suite folder's manifest
PLAN_FILE = "plan.json"  # results/<suite>/: the plan rows, recorded likewise
MANIFEST_FILES = (CONFIG, METRICS, FINAL_MODEL, LEGACY_FINAL_MODEL)
# The project's committed evidence (evidence/<name>/results/, written by benchmarks/evidence.py) keeps no weights
# and only some training rows, to stay small in git: the run's manifest says so ("omitted": [names], "thinned":
# {metrics.jsonl: {"rows", "sha256"}}). Only these files may be left out, and only metrics.jsonl thinned (every eval
# row kept), so a damaged or edited summary, metrics or timing file is still detected.
OMITTABLE = (FINAL_MODEL, LEGACY_FINAL_MODEL, CHECKPOINT)


# names and folders live in paths.py (io would pass the 400-line limit); re-exported because every caller
# knows them as io.safe_join, io.check_out_dir, ...
from moebench.paths import (check_out_dir, make_temp_dir, path_name, safe_join,  # noqa: F401
                            safe_relpath, umask)


@contextlib.contextmanager
def atomic_open(path: Path):
    """A binary file that appears at `path` whole, or not at all: written to a temp file in the same
    directory, fsynced, then renamed over `path`. On any error the temp file is removed and `path` untouched.
    The file gets the mode a plain open() would (0644 under umask 022), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def run_key(variant: str, size: str | None = None) -> str:
    """A run's variant directory name: the variant, or `variant@size` for a sweep (names never hold '@')."""
    return f"{variant}@{size}" if size is not None else variant


def split_key(key: str) -> tuple[str, str | None]:
    """run_key's inverse: (variant, size or None)."""
    variant, at, size = str(key).partition("@")
    return (variant, size) if at else (variant, None)


def run_dir(results_root: Path, suite: str, variant: str, seed: int, size: str | None = None) -> Path:
    return safe_join(results_root, suite, run_key(variant, size), f"seed-{seed}", what="run directory")


def final_model(rd: Path) -> Path | None:
    """The final-weights file of a run directory (model.safetensors, or an old run's model.pt), or None."""
    for name in (FINAL_MODEL, LEGACY_FINAL_MODEL):
        if (Path(rd) / name).exists():
            return Path(rd) / name
    return None


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_metrics(path: Path) -> list[dict]:
    """Rows of metrics.jsonl; a torn last line (killed mid-append) is ignored, never fatal."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rows(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


@dataclasses.dataclass(frozen=True)
class Kept:
    """What a folder's manifest says was deliberately left out (weights) or thinned (metrics) for the evidence."""
    omitted: frozenset = frozenset()
    thinned: dict = dataclasses.field(default_factory=dict)  # file name -> {"rows", "sha256"} of the thinned file


def kept(folder: Path) -> Kept:
    """The folder's evidence record; an empty one for an ordinary run or one without a readable manifest."""
    try:
        m = read_json(Path(folder) / MANIFEST)
        omitted, thinned = m.get("omitted") or [], m.get("thinned") or {}
    except (OSError, ValueError, AttributeError):
        return Kept()
    return Kept(frozenset(n for n in omitted if n in OMITTABLE) if isinstance(omitted, list) else frozenset(),
                {METRICS: thinned[METRICS]} if isinstance(thinned, dict) and isinstance(thinned.get(METRICS), dict)
                else {})


def write_recorded(path: Path, obj: Any, first_record=dict) -> None:
    """A JSON file and then its folder's manifest.json entry (write_recorded_bytes)."""
    data = (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode("utf-8")
    write_recorded_bytes(path, data, first_record)


def write_recorded_bytes(path: Path, data: bytes, first_record=dict) -> None:
    """A file and then its folder's manifest.json entry. While the file is replaced the manifest accepts the
    old and the new one, so a kill at any point leaves a folder that verifies (never one that reads as damaged).
    The other entries keep the checksums recorded when their files were written (a rewrite never blesses damage);
    `first_record()` gives them when the folder has no manifest yet."""
    path = Path(path)
    manifest = path.parent / MANIFEST
    new = hashlib.sha256(data).hexdigest()
    try:
        old = read_json(manifest)
        files, had, keep = dict(old["files"]), True, {k: old[k] for k in ("omitted", "thinned") if k in old}
    except (OSError, ValueError, TypeError, KeyError):
        files, had, keep = first_record(), False, {}
    files.pop(path.name, None)
    if had and path.exists():
        atomic_write_json(manifest, {**keep, "files": {**files, path.name: {"sha256": [sha256_file(path), new]}}})
    atomic_write_bytes(path, data)
    atomic_write_json(manifest, {**keep, "files": {**files, path.name: {"sha256": [new]}}})


def write_summary(rd: Path, summary: dict) -> None:
    """summary.json, then the run's manifest (with the run's other files on the first write)."""
    rd = Path(rd)
    write_recorded(rd / SUMMARY, summary,
                   lambda: {n: {"sha256": [sha256_file(rd / n)]} for n in MANIFEST_FILES if (rd / n).exists()})


def verify_recorded(path: Path) -> str | None:
    """One file against its folder's manifest: None when intact, unrecorded, or the folder has none (legacy)."""
    path = Path(path)
    try:
        want = read_json(path.parent / MANIFEST)["files"].get(path.name)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return f"{path.parent / MANIFEST}: unreadable (damaged or hand-edited)"
    if want is None or not path.exists():  # removed (a stale timing is): absent, not wrong
        return None
    if not isinstance(want, dict) or sha256_file(path) not in (want.get("sha256") or ()):
        return f"{path}: checksum differs from the one its folder's manifest recorded (modified or damaged)"
    return None


def verify_suite_files(results_dir: Path) -> tuple[str, ...]:
    """suite.yaml, plan.json and sidebyside.json of results/<suite>/ against its manifest: one line per damaged file
    (none for a folder written before the manifest covered them, whose files read as before)."""
    found = (verify_recorded(Path(results_dir) / n) for n in (SUITE_FILE, PLAN_FILE, SIDEBYSIDE))
    return tuple(dict.fromkeys(p for p in found if p))  # an unreadable manifest is one line, not three


def is_legacy_run(rd: Path) -> bool:
    """A finished run with no manifest: written before manifests existed, so its summary cannot be verified (its
    weights and metrics still are, against the summary's integrity record). Readers label it LEGACY."""
    return (Path(rd) / SUMMARY).exists() and not (Path(rd) / MANIFEST).exists()


def verify_manifest(rd: Path) -> str | None:
    """None if the run has no manifest (legacy) or every file it lists is intact, else one line naming the file."""
    rd = Path(rd)
    try:
        files = read_json(rd / MANIFEST)["files"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        return f"{rd / MANIFEST}: unreadable (damaged or hand-edited)"
    if not isinstance(files, dict):
        return f"{rd / MANIFEST}: not a manifest (damaged or hand-edited)"
    k = kept(rd)
    for name, want in files.items():
        try:
            path = safe_join(rd, name, what=f"{rd / MANIFEST}")
        except UserError as e:
            return str(e)
        if not path.exists():
            if name in k.omitted:
                continue
            return f"{path}: missing (the run's manifest recorded it)"
        want = {"sha256": [k.thinned[name].get("sha256")]} if name in k.thinned else want
        if not isinstance(want, dict) or sha256_file(path) not in (want.get("sha256") or ()):
            return f"{path}: checksum differs from the one the run's manifest recorded (modified or damaged)"
    return None


def run_integrity(rd: Path) -> dict:
    """What a finished run's summary records of its files, so a reader can tell a damaged file from a good one."""
    rd = Path(rd)
    out = {METRICS: {"rows": _rows(rd / METRICS), "sha256": sha256_file(rd / METRICS)}}
    if (rd / FINAL_MODEL).exists():
        out[FINAL_MODEL] = {"sha256": sha256_file(rd / FINAL_MODEL)}
    return out


def read_config(rd: Path) -> dict | None:
    """A run directory's config.yaml as a mapping; None when it is missing or unreadable ({} if not a mapping)."""
    import yaml

    try:
        cfg = yaml.safe_load((Path(rd) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return cfg if isinstance(cfg, dict) else {}


def read_suite(results_dir: Path) -> dict:
    """results/<suite>/suite.yaml as a mapping ({} when absent); UserError naming it if unreadable or no mapping."""
    import yaml

    path, fix = Path(results_dir) / SUITE_FILE, "rerun `moebench run` on the suite to rewrite it"
    try:
        suite = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise UserError(f"{path}: unreadable ({type(e).__name__}); {fix}") from None
    if not isinstance(suite, dict):
        raise UserError(f"{path}: not a suite mapping; {fix}")
    return suite


def read_summary(rd: Path) -> tuple[dict | None, str | None]:
    """(summary, None), (None, None) when there is none yet, or (None, problem) when it is unreadable."""
    path = Path(rd) / SUMMARY
    try:
        s = read_json(path)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        return None, f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    if not isinstance(s, dict) or "status" not in s:
        return None, f"{path}: not a run summary (no status)"
    return s, None


def verify_run(rd: Path, summary: dict) -> str | None:
    """None if the files a finished summary recorded are intact, else one line naming the damaged file."""
    rd = Path(rd)
    problem = verify_manifest(rd)
    if problem or summary.get("status") != "ok":
        return problem
    if not summary.get("integrity"):  # written before summaries recorded checksums: the metrics must parse
        return _metrics_parse_problem(rd / METRICS)
    k = kept(rd)
    for name, want in summary["integrity"].items():
        try:
            path = safe_join(rd, name, what=f"{rd / SUMMARY}: integrity")
        except UserError as e:
            return str(e)
        want = k.thinned.get(name, want)  # the evidence's thinned metrics: its manifest's record, not the summary's
        if not isinstance(want, dict):
            return f"{path}: its summary's integrity record is not a mapping (hand-edited or damaged)"
        if not path.exists():
            if name in k.omitted:
                continue
            return f"{path}: missing (its summary recorded it)"
        if "rows" in want and _rows(path) != want["rows"]:
            return f"{path}: {_rows(path)} rows, its summary recorded {want['rows']} (truncated or appended to)"
        if sha256_file(path) != want.get("sha256"):
            return f"{path}: checksum differs from the one its summary recorded (modified or damaged)"
    return None


def _metrics_parse_problem(path: Path) -> str | None:
    if not path.exists():
        return f"{path}: missing"
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            try:
                if line.strip():
                    json.loads(line)
            except json.JSONDecodeError:
                return f"{path}: line {i} is not JSON (truncated or damaged)"
    return None
