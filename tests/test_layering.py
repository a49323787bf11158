"""The layers stay layers: the core knows neither FastAPI nor Dagster, and the HTTP service and
the pipelines meet only in the database (and the core), never by importing each other.

Read from the source, every import included (a lazy one inside a function too), so a shortcut
taken "just here" fails the suite rather than the next reader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "sentinelops": {"dagster", "dagster_postgres", "fastapi", "starlette", "uvicorn",
                    "sentinelops_pipelines", "webhook_service"},
    "webhook_service": {"dagster", "dagster_postgres", "sentinelops_pipelines"},
    "sentinelops_pipelines": {"fastapi", "starlette", "uvicorn", "webhook_service"},
}  # fmt: skip
# The CLI is the core's front door: it starts the other layers, lazily and by name.
ENTRY_POINTS = {ROOT / "sentinelops" / "cli.py"}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_from_the_layers_it_must_not_know(package):
    crossings = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in ENTRY_POINTS
        for name in imports(path) & FORBIDDEN[package]
    }
    assert sorted(crossings) == []


def test_no_two_core_modules_import_each_other():
    core = {p.stem: p for p in (ROOT / "sentinelops").glob("*.py")}
    edges = {
        name: {
            node.module.split(".")[1]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("sentinelops.")
        }
        | {
            alias.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == "sentinelops"
            for alias in node.names
        }
        for name, path in core.items()
    }
    cycles = sorted(
        f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and a in edges.get(b, ())
    )
    assert cycles == []
