"""What is already in a run directory and what a rerun may do with it: nothing is deleted, a finished run of
another config is only ever archived (under results/<suite>/superseded/), and only when the user says --force."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path


from moebench import io as R
from moebench.errors import UserError
from moebench.plan import RunSpec

SUPERSEDED = "superseded"


def run_state(rd: Path, spec: RunSpec) -> str:
    """done: finished with this config; stale: something of another config is there; damaged: a finished run
    whose summary or files fail their check; resume / new."""
    summary, problem = R.read_summary(rd)
    if problem:
        return "damaged"
    if summary is not None:
        if summary.get("config_hash") != spec.config_hash:
            return "stale"
        return "damaged" if R.verify_run(rd, summary) else "done"
    cfg = R.read_config(rd)
    if cfg is not None:
        return "resume" if cfg.get("config_hash") == spec.config_hash else "stale"
    return "new"


def damage(rd: Path) -> str:
    """The one-line reason run_state said 'damaged'."""
    summary, problem = R.read_summary(rd)
    return problem or R.verify_run(rd, summary) or f"{rd}: damaged"


def _flat(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_diff(old: dict, new: dict, limit: int = 8) -> list[str]:
    """'key: old -> new' for each leaf that differs (the hash itself left out), at most `limit` and a count."""
    a, b = _flat(old), _flat(new)
    keys = sorted(k for k in set(a) | set(b) if k != "config_hash" and a.get(k, "<unset>") != b.get(k, "<unset>"))
    lines = [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f"... and {len(keys) - limit} more")
    return lines


def stale_finished(specs: list[RunSpec], results_root: Path) -> list[tuple[RunSpec, list[str]]]:
    """Finished runs whose config differs from the spec now asked for, with what changed."""
    out = []
    for spec in specs:
        rd = spec.run_dir(results_root)
        summary, _ = R.read_summary(rd)
        if summary is not None and summary.get("config_hash") != spec.config_hash:
            out.append((spec, config_diff(R.read_config(rd) or {}, spec.to_dict())))
    return out


def check_reruns(specs: list[RunSpec], results_root: Path, force: bool) -> None:
    """Refuse (before anything on disk changes) to replace finished runs of another config without --force."""
    stale = [] if force else stale_finished(specs, results_root)
    if not stale:
        return
    spec0, diff = stale[0]
    runs = ", ".join(f"{s.key}/seed-{s.seed}" for s, _ in stale)
    raise UserError(
        f"{Path(results_root) / spec0.suite}: {len(stale)} finished run(s) were trained with another config "
        f"({runs}); they are kept. What changed ({spec0.key}/seed-{spec0.seed}): {'; '.join(diff) or 'n/a'}. "
        f"Pass --force to retrain them (the old runs move to {SUPERSEDED}/<old hash>/) or use another --results")


def archive_run(rd: Path, tag: str) -> Path:
    """Move a run directory to results/<suite>/superseded/<tag>/<variant>/seed-<n>/ (never overwriting one)."""
    rd = Path(rd)
    suite_dir = rd.parent.parent
    dest = R.safe_join(suite_dir, SUPERSEDED, tag, rd.parent.name, rd.name, what="archive folder")
    n = 1
    while dest.exists():
        n += 1
        dest = R.safe_join(suite_dir, SUPERSEDED, f"{tag}-{n}", rd.parent.name, rd.name, what="archive folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(rd, dest)
    return dest


def archive_tag(rd: Path, state: str) -> str:
    """The superseded/ folder a run moves to: its config hash, read back from its summary (or config.yaml). A hash
    that is not a plain folder name (a hand-edited '../x') is no hash: the run archives as damaged instead."""
    damaged = "damaged-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    if state == "damaged":
        return damaged
    summary, _ = R.read_summary(rd)
    tag = (summary or R.read_config(rd) or {}).get("config_hash") or "unknown"
    try:
        return R.path_name(str(tag) if isinstance(tag, (int, float)) else tag, "config_hash")
    except UserError:
        return damaged


def check_writable(path: Path, flag: str) -> None:
    """UserError unless `path` is (or can be created as) a writable directory; creates nothing."""
    R.check_out_dir(path, flag)
