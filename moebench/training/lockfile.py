"""The locked environment (requirements/test.lock, pip-compile output): its hash, and whether this interpreter runs
exactly the versions it pins. Recorded in every summary.json, because for a benchmark the package versions are
part of the measurement: a report made "unlocked" names the packages that differed.

Torch-free (importlib.metadata only), so `plan` may call it."""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import re
from functools import lru_cache
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
LOCK = CHECKOUT / "requirements" / "test.lock"
# `name==version` at the start of a line (pip-compile writes one pin a line, hashes and "via" comments after it)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.M)


def canonical(name: str) -> str:
    """PEP 503 normalised project name (what pip compares)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, str]:
    return {canonical(m.group(1)): m.group(2) for m in _PIN.finditer(text)}


def differences(pins: dict[str, str], installed) -> list[str]:
    """'name: lock X, installed Y' for each pinned package whose installed version differs (None: not installed)."""
    out = []
    for name, want in sorted(pins.items()):
        have = installed(name)
        if have != want:
            out.append(f"{name}: lock {want}, installed {have or 'none'}")
    return out


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


@lru_cache(maxsize=2)
def lock_state(path: Path = LOCK) -> dict:
    """{lock_sha256, lock_state, lock_differ} for a run's env; state "no lock" outside a checkout (a wheel
    install carries no lock file)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return {"lock_sha256": None, "lock_state": "no lock", "lock_differ": ""}
    differ = differences(read_pins(data.decode("utf-8", "replace")), _installed)
    return {"lock_sha256": hashlib.sha256(data).hexdigest(), "lock_state": "unlocked" if differ else "locked",
            "lock_differ": "; ".join(differ)}
