"""The code location loads, passes Dagster's own validation, and its lineage is a reviewed snapshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration_defs.definitions import defs
from tests.helpers import dagster_home

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def graph_snapshot() -> dict:
    """Asset keys with their group, partitioning, dependencies and checks; jobs; schedules; sensors."""
    checks: dict[str, list[str]] = {}
    for check_key in defs.resolve_asset_graph().asset_check_keys:
        checks.setdefault(check_key.asset_key.to_user_string(), []).append(check_key.name)
    assets = {
        spec.key.to_user_string(): {
            "group": spec.group_name,
            "partitioned": spec.partitions_def is not None,
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
            "checks": sorted(checks.get(spec.key.to_user_string(), [])),
        }
        for spec in defs.resolve_all_asset_specs()
    }
    return {
        "assets": dict(sorted(assets.items())),
        "jobs": sorted(job.name for job in defs.jobs or []),
        "schedules": sorted(schedule.name for schedule in defs.schedules or []),
        "sensors": sorted(sensor.name for sensor in defs.sensors or []),
    }


def test_definitions_match_the_reviewed_snapshot():
    current, reviewed = graph_snapshot(), json.loads(SNAPSHOT.read_text())
    if os.environ.get("UPDATE_SNAPSHOTS") and current != reviewed:
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        pytest.fail(
            f"The asset graph changed and {SNAPSHOT.name} is rewritten: review its diff, commit "
            "it, and run the test again without UPDATE_SNAPSHOTS.",
            pytrace=False,
        )
    assert current == reviewed, (
        "The asset graph changed; review it, run `UPDATE_SNAPSHOTS=1 pytest "
        "tests/test_definitions.py` to rewrite the snapshot, and review its diff."
    )


def test_updating_the_snapshot_fails_until_it_is_reviewed(tmp_path, monkeypatch):
    """UPDATE_SNAPSHOTS writes the new graph and fails: a run that rewrites its own reference
    must not pass."""
    stale = tmp_path / "definitions.json"
    stale.write_text(json.dumps({"assets": {}}) + "\n")
    monkeypatch.setattr(sys.modules[__name__], "SNAPSHOT", stale)
    monkeypatch.setenv("UPDATE_SNAPSHOTS", "1")
    with pytest.raises(pytest.fail.Exception, match="review"):
        test_definitions_match_the_reviewed_snapshot()
    assert json.loads(stale.read_text()) == graph_snapshot()
    # Once written, the snapshot is what the test compares with: it passes, variable or not.
    test_definitions_match_the_reviewed_snapshot()
    monkeypatch.delenv("UPDATE_SNAPSHOTS")
    test_definitions_match_the_reviewed_snapshot()


def test_every_asset_has_a_description_owner_and_kind():
    for spec in defs.resolve_all_asset_specs():
        assert spec.description, spec.key
        assert spec.owners, spec.key
        assert "duckdb" in spec.kinds, spec.key
        assert spec.group_name == spec.key.path[0], spec.key


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "ORDERFLOW_DATA_DIR": str(tmp_path / "data"),
    }
    dagster_home(tmp_path)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_dagster_definitions_validate(tmp_path):
    dagster = Path(sys.executable).parent / "dagster"
    done = _run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dg_check_and_list_defs(tmp_path):
    dg_cli = shutil.which("dg", path=str(Path(sys.executable).parent))
    assert dg_cli, "dagster-dg-cli is a dev dependency"
    done = _run([dg_cli, "check", "defs"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = _run([dg_cli, "list", "defs", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "staging/orders" in listed.stdout


BAD_RULES = "allocation.order: 'priority_first' is not one of ['fcfs', 'priority']"


def _bad_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "bad-rules.yaml"
    rules.write_text(
        (ROOT / "rules.yaml").read_text().replace("order: fcfs", "order: priority_first")
    )
    return rules


def test_a_wrong_rule_stops_the_definitions_loading(tmp_path, monkeypatch):
    """Dagster's own loaders refuse the code location, naming the file and the field."""
    rules = _bad_rules(tmp_path)
    monkeypatch.setenv("ORDERFLOW_RULES", str(rules))
    dagster = Path(sys.executable).parent / "dagster"
    done = _run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], tmp_path)
    assert done.returncode != 0
    assert f"{rules}: {BAD_RULES}" in done.stdout + done.stderr
    dg_cli = shutil.which("dg", path=str(Path(sys.executable).parent))
    done = _run([dg_cli, "check", "defs"], tmp_path)
    assert done.returncode != 0
    assert f"{rules}: {BAD_RULES}" in done.stdout + done.stderr
