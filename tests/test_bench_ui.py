"""The bench's modes through `dagster dev` (bench/ui.py), run small so that they cannot rot, and
the empty twin of `order_to_cash_job` they compare with (bench/empty.py)."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from bench import empty, ui
from orchestration_defs.definitions import defs

BENCH = Path(__file__).resolve().parent.parent / "bench" / "ui.py"


@pytest.fixture
def work():
    """A work dir the PostgreSQL server's user can reach (as root, pytest's 0700 basetemp is not),
    on a short path (a Unix socket's path is bounded)."""
    root = Path(tempfile.mkdtemp(prefix="orderflow-ui-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_bench(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["results"]


def test_the_empty_twin_has_the_real_jobs_steps_assets_checks_partitions_and_pools():
    real = defs.resolve_job_def("order_to_cash_job")
    twin = empty.defs.resolve_job_def("order_to_cash_job")

    def steps(job: dg.JobDefinition, prefix: str) -> dict:
        return {node.name.removeprefix(prefix): node.definition.pool for node in job.graph.nodes}

    def assets(d: dg.Definitions, job: dg.JobDefinition) -> dict:
        found = {}
        for key in job.asset_layer.selected_asset_keys:
            assets_def = d.resolve_assets_def(key)
            found[key.to_user_string().removeprefix("empty/")] = (
                assets_def.partitions_def,
                sorted(c.name for c in assets_def.check_keys if c.asset_key == key),
            )
        return found

    assert steps(twin, "empty_") == steps(real, "")
    assert assets(empty.defs, twin) == assets(defs, real)
    assert len(assets(defs, real)) == 18


def test_a_variant_sets_dotted_keys_of_dagster_yaml():
    settings = ui.parse_variant("run_queue.dequeue_use_threads=true,telemetry.enabled=false")
    config = {"run_queue": {"dequeue_interval_seconds": 1}}
    assert ui.with_settings(config, settings) == {
        "run_queue": {"dequeue_interval_seconds": 1, "dequeue_use_threads": True},
        "telemetry": {"enabled": False},
    }


@pytest.mark.slow
def test_backfill_mode_times_the_uis_backfill_and_the_analytics_refresh(work, store_dir):
    figures = run_bench(
        "backfill", "--days", "3", "--store", str(store_dir), "--work-dir", str(work)
    )

    assert (figures["partitions"], figures["first"], figures["last"]) == (
        3,
        "2020-01-01",
        "2020-01-03",
    )
    assert figures["backfill_status"] == "COMPLETED_SUCCESS"
    (run,) = figures["runs"]
    assert run["status"] == "SUCCESS"
    assert {"staging_orders", "fulfillment__reconciliation"} <= set(run["steps_s"])
    assert figures["analytics_runs"]
    assert all(r["status"] == "SUCCESS" for r in figures["analytics_runs"])
    # The run is picked up, starts and ends; then the daemon marks the backfill complete and,
    # independently of that marker (it lags by up to a daemon loop), the sensor refreshes the marts.
    assert 0 < run["created_s"] <= run["started_s"] <= run["ended_s"]
    assert run["ended_s"] <= figures["backfill_completed_s"]
    for refresh in figures["analytics_runs"]:
        assert run["ended_s"] <= refresh["created_s"] <= refresh["ended_s"]
    assert figures["analytics_done_s"] == pytest.approx(
        max(r["ended_s"] for r in figures["analytics_runs"])
    )
    # The real job ran: the three days are staged and fulfilled in the bench's own data dir.
    (warehouse,) = work.glob("backfill-*/data_*/warehouse.duckdb")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        days = con.execute(
            "select count(distinct o_orderdate) from fulfillment.invoices"
        ).fetchall()[0][0]
    assert days == 3


@pytest.mark.slow
def test_latency_mode_alternates_the_real_job_and_its_empty_twin(work, store_dir):
    figures = run_bench("latency", "-n", "1", "--store", str(store_dir), "--work-dir", str(work))

    real, twin = figures["dagster.yaml as it is"]["real"], figures["dagster.yaml as it is"]["empty"]
    for measured in (real, twin):
        assert measured["n"] == 1
        assert measured["launch_to_start_s"] > 0
        assert measured["start_to_success_s"] > 0
        assert set(measured["stretches_s"]) == {
            "launched→enqueued",
            "enqueued→starting",
            "starting→started",
            "started→first step",
            "first step→succeeded",
        }
    assert set(real["steps_s"]) == set(twin["steps_s"])
