"""e2e/ is layered: imports only go down, and product code never imports test code (README: repository layout)."""

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

E2E = ROOT / "e2e"
# package -> the packages of e2e/ it may import
ALLOWED = {
    "runai": set(),  # Run:ai's names, spelled once: every layer may read them
    "kube": {"runai"},
    "local_cluster": {"kube", "runai"},
    "fake_runai_scheduler": {"kube", "runai"},
    "kind_node": {"kube", "local_cluster", "runai"},  # built from the local cluster's parts
    "suite": {"kube", "local_cluster", "kind_node", "fake_runai_scheduler", "runai"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names a module imports (relative imports resolve to its own package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def is_test_code(path: Path) -> bool:
    parts = path.relative_to(E2E).parts
    return any(p in ("tests", "teardown_tests") for p in parts) or path.name.startswith(("test_", "conftest"))


@pytest.mark.parametrize("package", ALLOWED)
def test_a_package_imports_only_the_layers_below_it(package):
    for path in (E2E / package).rglob("*.py"):
        used = imported_packages(path) & set(ALLOWED)
        assert used - {package} <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {used - {package}}"


def test_product_code_never_imports_test_code():
    for path in E2E.rglob("*.py"):
        if is_test_code(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert "tests" not in node.module.split("."), f"{path.relative_to(ROOT)} imports {node.module}"


def test_benchmarks_sit_above_the_packages():
    for path in (ROOT / "benchmarks").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: benchmarks import the packages by name"
