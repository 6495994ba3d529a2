"""Imports run one way, down the layers (docs/architecture.md, "Layers").

foundation ← simulator ← resources ← assets, sensors ← orchestration_defs: a module imports from
its own package and from packages of lower layers only, at module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "foundation": 0,
    "simulator": 1,
    "resources": 2,
    "assets": 3,
    "sensors": 3,
    "orchestration_defs": 4,
}


def project_imports(path: Path) -> set[str]:
    """The top-level project packages a module imports, wherever in the module it does."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        imported |= {name.split(".")[0] for name in names} & LAYERS.keys()
    return imported


def upward_imports() -> list[str]:
    """Every import of a package from the same or a higher layer, as 'module -> package'."""
    found = []
    for package, layer in LAYERS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for other in sorted(project_imports(path) - {package}):
                if LAYERS[other] >= layer:
                    found.append(f"{path.relative_to(ROOT)} -> {other}")
    return found


def test_no_import_runs_up_a_layer():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The walk finds imports inside functions too (a test that cannot fail is a defect)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from orchestration_defs import definitions\n")
    assert project_imports(module) == {"orchestration_defs"}
