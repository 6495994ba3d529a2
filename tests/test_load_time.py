"""Loading the code location imports no heavy library: every run process and reload pays the load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Libraries that `import dagster` does not import itself, each costing 0.1-1 s: assets and
# resources import them inside the functions that use them.
HEAVY = ("matplotlib", "numpy", "pandas", "requests", "sqlalchemy")


def _modules_after(statement: str) -> set[str]:
    """The top-level packages in `sys.modules` of a fresh interpreter after `statement`."""
    code = f"{statement}; import json, sys; print(json.dumps(sorted(sys.modules)))"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


def test_dagster_alone_imports_none_of_the_heavy_libraries():
    # Otherwise the test below would prove nothing about our own imports.
    assert not _modules_after("import dagster") & set(HEAVY)


def test_loading_the_definitions_imports_none_of_the_heavy_libraries():
    loaded = _modules_after("import orchestration_defs.definitions")
    assert "assets" in loaded and "resources" in loaded
    heavy = sorted(loaded & set(HEAVY))
    assert not heavy, (
        f"Loading the definitions imports {', '.join(heavy)}: import them inside the functions "
        "that use them (see `python -X importtime -c 'import orchestration_defs.definitions'`)."
    )
