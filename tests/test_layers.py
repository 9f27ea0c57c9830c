"""Lower layers never import higher ones (docs/architecture.md draws the layers)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "src" / "tether"
# Bottom to top; a unit may import its own layer and those below.
LAYERS = [
    {"errors", "paths", "redact", "stats", "samples"},
    {"policy"},
    {"ledger", "people"},
    {"workspace", "models", "lease", "telemetry", "memory"},
    {"guard"},
    {"agents", "backtest", "gateway", "delivery", "gate", "history"},
    {"runner"},
    {"replay", "approvals", "gc", "queue", "demo", "doctor", "audit", "recommend"},
    {"evals"},
    {"render"},
    {"web"},
    {"cli"},
    {"__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _unit(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tether":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("tether.")}
    return found


def test_every_module_is_in_a_layer_and_imports_only_downwards():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        if unit == "__init__":
            continue
        assert unit in RANK, f"{unit} is in no layer: add it to LAYERS and docs/architecture.md"
        for target in _imported(ast.parse(path.read_text())):
            if RANK.get(target, -1) > RANK[unit]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not upward, upward
