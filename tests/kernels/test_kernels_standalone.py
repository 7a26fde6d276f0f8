"""moebench.kernels (kernels/moebench_kernels/) depends on torch and triton only (the benchmark and tuner that
build model-level inputs live in moebench/models/expert_bench.py and expert_tune.py)."""
from __future__ import annotations

import ast
from pathlib import Path

KERNELS = Path(__file__).resolve().parents[2] / "kernels" / "moebench_kernels"
ALLOWED = {"torch", "triton", "numpy", "__future__"}


def _outside_imports(path: Path) -> list[str]:
    """Imports in `path` that reach outside kernels/ and are neither stdlib nor torch/triton/numpy."""
    import sys

    bad = []
    depth = len(path.relative_to(KERNELS).parts) - 1  # 0 for kernels/x.py
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # `from .x` stays inside kernels/ while the number of dots does not climb above it.
                if node.level - 1 > depth:
                    bad.append(f"{path.name}:{node.lineno}: relative import above kernels/")
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in ALLOWED and top not in sys.stdlib_module_names:
                bad.append(f"{path.name}:{node.lineno}: import {name}")
    return bad


def test_kernels_import_only_torch_triton_numpy_and_stdlib():
    files = list(KERNELS.rglob("*.py"))
    assert len(files) >= 8, files  # the walk really found the package
    bad = [b for p in files for b in _outside_imports(p)]
    assert not bad, bad


def test_the_checker_catches_moebench_and_climbing_imports(tmp_path, monkeypatch):
    # The check above must be able to fail: feed it a module with both kinds of forbidden import.
    fake = tmp_path / "kernels"
    (fake / "sub").mkdir(parents=True)
    (fake / "sub" / "m.py").write_text("import os\nfrom moebench.models import experts\nfrom ... import x\n"
                                       "from .. import ok\nimport triton.language as tl\n")
    monkeypatch.setitem(globals(), "KERNELS", fake)
    bad = _outside_imports(fake / "sub" / "m.py")
    assert len(bad) == 2 and "moebench.models" in bad[0] and "above kernels" in bad[1]
