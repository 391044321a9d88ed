"""Each layer of ``src/flightbook`` imports only from layers below it (ADR 0015).

The rule is read from the source with ``ast``, so a new module that breaks it fails here
before anyone has to notice in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src" / "flightbook"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"config"}),
    frozenset({"domain"}),
    frozenset({"runtime"}),
    frozenset({"eventstore", "stack"}),
    frozenset({"contracts", "payments", "http"}),
    frozenset({"relay", "commands", "saga", "identity"}),
    frozenset({"projections"}),
    frozenset({"queries", "audit"}),
    frozenset({"bench", "bootstrap"}),
    frozenset({"cli", "__init__"}),
)
"""Bottom to top. A package may import from its own package and from lower layers only."""

LAYER_OF = {package: index for index, layer in enumerate(LAYERS) for package in layer}


def _package_of(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("flightbook.")]


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_has_a_layer() -> None:
    packages = {_package_of(path) for path in _modules()}

    assert packages - set(LAYER_OF) == set()


def test_no_module_imports_from_a_layer_above_or_beside_it() -> None:
    breaches = []
    for path in _modules():
        own = _package_of(path)
        for line, module in _imports(path):
            target = module.split(".")[1]
            if target == own:
                continue
            if LAYER_OF[target] >= LAYER_OF[own]:
                breaches.append(f"{path.relative_to(SRC)}:{line} imports {module}")

    assert breaches == []


def test_the_projection_tools_sit_above_the_projections_they_operate() -> None:
    breaches = [
        f"{path.relative_to(SRC)}:{line} imports {module}"
        for path in _modules()
        if path.is_relative_to(SRC / "projections") and "tools" not in path.parts
        for line, module in _imports(path)
        if module.startswith("flightbook.projections.tools")
    ]

    assert breaches == []


def test_the_wire_contract_imports_nothing_from_the_domain() -> None:
    breaches = [
        f"{path.relative_to(SRC)}:{line} imports {module}"
        for path in (SRC / "contracts").rglob("*.py")
        for line, module in _imports(path)
        if module.startswith("flightbook.domain")
    ]

    assert breaches == []
