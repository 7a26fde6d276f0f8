"""The locked environment: requirements/test.lock pins every dependency, and a run records whether it ran on it."""
from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

from moebench.training.lockfile import LOCK, canonical, differences, lock_state, read_pins

REPO = Path(__file__).resolve().parents[2]


def _names(reqs: list[str]) -> set[str]:
    return {canonical(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in reqs}


def test_the_lock_pins_every_dependency_of_the_readme_install():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = read_pins(LOCK.read_text())
    wanted = _names(project["dependencies"]) | _names(project["optional-dependencies"]["test"])
    assert sorted(wanted - set(pins)) == [], "refresh requirements/test.lock (README: Reproducible environment)"
    assert pins["torch"] == "2.13.0+cpu" and "moebench" not in pins
    assert "kernels" in pins  # transformers imports it; tests/test_packaging.py needs it installed
    text = LOCK.read_text()
    assert all(f"{name}==" in text.replace("_", "-").lower() for name in wanted)
    assert "--hash=sha256:" in text


def test_differences_names_each_package_off_the_lock():
    pins = {"numpy": "2.0.0", "torch": "2.13.0+cpu", "gone": "1.0"}
    have = {"numpy": "2.1.0", "torch": "2.13.0+cpu"}.get
    assert differences(pins, have) == ["gone: lock 1.0, installed none", "numpy: lock 2.0.0, installed 2.1.0"]
    assert differences({"torch": "2.13.0+cpu"}, have) == []


def test_lock_state_of_a_lock_this_interpreter_does_not_match(tmp_path):
    import pytest as pt

    lock = tmp_path / "test.lock"
    lock.write_text(f"pytest=={pt.__version__} \\\n    --hash=sha256:00\n    # via moebench\nPyYAML==0.0.1\n")
    state = lock_state(lock)
    assert state["lock_state"] == "unlocked" and state["lock_differ"].startswith("pyyaml: lock 0.0.1, installed ")
    assert state["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    matching = tmp_path / "matching.lock"  # lock_state is cached per path: a run reads its lock once
    matching.write_text(f"pytest=={pt.__version__}\n")
    assert lock_state(matching)["lock_state"] == "locked"
    assert lock_state(tmp_path / "none.lock")["lock_state"] == "no lock"
