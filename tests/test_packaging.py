"""How moebench installs: the top-level kernels/ folder never shadows the PyPI `kernels` distribution (which
transformers imports) for a Python started in the checkout, and the wheel holds every package and data file."""
from __future__ import annotations

import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KERNELS_SRC = REPO / "kernels" / "moebench_kernels"

# What `python -m pytest`, `python -c ...` or a notebook started in the checkout sees: the checkout first on sys.path.
PROBE = """
import importlib.util, json, sys
sys.path.insert(0, {repo!r})
spec = importlib.util.find_spec("kernels")
print(json.dumps(None if spec is None else {{"origin": spec.origin,
                                            "locations": list(spec.submodule_search_locations or [])}}))
"""


def _in_checkout(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)


def _ours(path: Path, repo: Path) -> bool:
    """A file of the checkout itself (a virtual environment inside it, like .ci/run's .venv, is not ours)."""
    path = path.resolve()
    return path.is_relative_to(repo) and "site-packages" not in path.parts


def _shadows(found: dict | None, repo: Path) -> list[str]:
    """Why `found` (find_spec('kernels') as PROBE prints it) would run code of ours; [] if it cannot."""
    if found is None:
        return []
    origin = found["origin"]
    if origin not in (None, "namespace"):  # a regular module or package: fine if installed, not from the checkout
        return [origin] if _ours(Path(origin), repo) else []
    # a namespace package: any folder is a portion, harmless while none of its folders holds a module
    return [str(p) for loc in found["locations"] for p in sorted(Path(loc).glob("*.py"))]


def test_kernels_folder_holds_no_python_file_directly():
    assert not list((REPO / "kernels").glob("*.py"))
    assert (KERNELS_SRC / "__init__.py").exists()


def test_import_kernels_in_the_checkout_never_finds_our_code():
    out = _in_checkout(PROBE.format(repo=str(REPO)))
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert _shadows(found, REPO) == [], found


def test_the_shadow_check_can_fail(tmp_path):
    # the layout this test replaced: a regular package kernels/ in the checkout, found first
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("")
    out = subprocess.run([sys.executable, "-c", PROBE.format(repo=str(tmp_path))], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert _shadows(json.loads(out.stdout.strip().splitlines()[-1]), tmp_path.resolve())
    # and a namespace portion with a module in it
    (tmp_path / "kernels" / "__init__.py").unlink()
    (tmp_path / "kernels" / "mod.py").write_text("")
    assert _shadows({"origin": None, "locations": [str(tmp_path / "kernels")]}, tmp_path.resolve())


def test_transformers_imports_its_kernels_hub_from_the_checkout():
    md.version("kernels")  # the distribution transformers imports is installed (the test extra pins it)
    out = _in_checkout("import transformers, transformers.integrations.hub_kernels\n"
                       "from transformers import MixtralForCausalLM\nimport kernels\nprint(kernels.__file__)")
    assert out.returncode == 0, out.stderr[-2000:]
    assert not _ours(Path(out.stdout.strip()), REPO)


def test_moebench_kernels_is_the_kernels_folder():
    import moebench.kernels

    assert Path(moebench.kernels.__file__).resolve().parent == KERNELS_SRC


def _sources(root: Path, prefix: str) -> set[str]:
    return {f"{prefix}/{p.relative_to(root).as_posix()}" for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and (p.suffix == ".py" or "configs" in p.parts)}


@pytest.mark.skipif(shutil.which("git") is None, reason="copies the tracked tree with git")
def test_the_wheel_holds_every_package_module_and_data_file(tmp_path):
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "pyproject.toml", "README.md", "moebench", "kernels"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    for rel in tracked:  # only what a clone has: untracked scratch files must not decide the test
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("moebench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {n for n in _sources(src / "moebench", "moebench") if n.endswith(".py")}
    want |= _sources(src / "kernels" / "moebench_kernels", "moebench/kernels")
    want |= {f"moebench/{p.relative_to(src / 'moebench').as_posix()}" for p in (src / "moebench/evals/tasks").rglob("*")
             if p.is_file()}
    assert len(want) > 50
    assert sorted(want - names) == []
    assert not any(n.startswith("kernels/") for n in names)  # nothing installs a top-level `kernels`
