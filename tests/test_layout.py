"""The house rules of the code base, as tests: the import contract (pyproject [tool.importlinter]), no import
cycles between modules or packages, short files, few loose modules, no `assert` doing a runtime check's job."""
from __future__ import annotations

import ast
import typing
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "moebench"
SOURCES = sorted(PACKAGE.rglob("*.py")) + sorted((REPO / "kernels").rglob("*.py"))


def test_import_contract_is_kept():
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True) == 0  # 0: every contract kept


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of a directed graph (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("moebench")


def test_no_import_cycle_between_modules(graph):
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycle(edges) is None


def test_no_import_cycle_between_packages(graph):
    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for m in graph.modules:
        for dep in graph.find_modules_directly_imported_by(m):
            if package(dep) != package(m):
                edges.setdefault(package(m), set()).add(package(dep))
    assert _cycle(edges) is None


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_files_are_short():
    long = {str(p.relative_to(REPO)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_few_loose_modules_at_the_top():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 6, loose


def test_no_assert_for_runtime_checks():
    """`python -O` strips asserts: an invariant the product relies on must raise."""
    found = [f"{p.relative_to(REPO)}:{n.lineno}" for p in SOURCES for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.Assert)]
    assert not found


def test_optimizer_choices_match_the_registry():
    from moebench.config.schema import TrainSpec
    from moebench.training.trainer import OPTIMIZERS

    assert set(typing.get_args(TrainSpec.model_fields["optimizer"].annotation)) == set(OPTIMIZERS.names())


def test_every_activation_is_known_to_the_kernels():
    from moebench.kernels.activation import ACT_CODES
    from moebench.models.activations import ACTIVATIONS

    assert set(ACTIVATIONS.names()) <= set(ACT_CODES)
