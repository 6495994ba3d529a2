"""bench/parallel.py: one invocation runs the range both ways and reports times, steps, speedup."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "parallel.py"


@pytest.mark.slow
def test_two_days_sequential_then_parallel_report_steps_speedup_and_equal_outputs(
    tmp_path, store_dir
):
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *("--data-dir", str(store_dir), "--work-dir", str(tmp_path)),
            *("--days", "2", "--instance", "sqlite"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["days"] == 2
    assert summary["same_outputs"] is True
    assert summary["speedup"] > 0
    for mode in ("sequential", "parallel"):
        assert len(summary["seconds"][mode]) == 1
        # Every step of the backfill's run and of the analytics run, timed in both modes.
        assert {"staging_orders", "fulfillment__shipments", "analytics__daily_report"} <= set(
            summary["steps"][mode]
        )
    assert summary["steps"]["sequential"].keys() == summary["steps"]["parallel"].keys()
    assert any(line.startswith("  speedup sequential / parallel:") for line in lines)
    # The parallel runs' steps overlapped; the sequential runs' cannot.
    assert summary["overlap_seconds"] > 0


def test_clean_deletes_the_runs_and_instances_and_keeps_the_store(tmp_path):
    work = tmp_path / "sf0.5"
    outputs = [work / "parallel-run-sequential-1", work / "parallel-home-ab"]
    for output in outputs:
        (output / "inner").mkdir(parents=True)
    kept = work / "data" / "landing"
    kept.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "0.5", "--work-dir", str(tmp_path), "--clean"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert f"deleted 2 run dirs and instances under {work}" in done.stdout
    assert not any(output.exists() for output in outputs)
    assert kept.exists()
