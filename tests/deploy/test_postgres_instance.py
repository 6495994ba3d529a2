"""The production instance config, deploy/dagster.yaml, against a real PostgreSQL server.

A throwaway cluster (initdb + pg_ctl, loopback only, a free port, password authentication) serves
the session. The instance is opened from the committed file itself, credentials from the
environment as in production, and a real day is staged through it: the run, its materialisations,
its asset check results and its steps' pools must all end up in PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets.staging.catalog import staging_catalog
from assets.staging.orders import staging_orders
from foundation.registry import ORDERS_KEY
from tests.helpers import make_data_dir, query, resources_for
from tests.postgres import new_database

DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"
DAY = "2024-03-15"
STAGING_CHECKS = {
    "totals_tie_out",
    "order_keys_unique",
    "lines_belong_to_orders",
    "records_accounted_for",
}


@pytest.fixture
def instance_database(postgres_server) -> str:
    """A new, empty database for one test's Dagster instance."""
    return new_database(postgres_server, "dagster")


@pytest.fixture
def production_instance(tmp_path, monkeypatch, postgres_server, instance_database):
    """The instance deploy/dagster.yaml describes, its credentials from the environment."""
    monkeypatch.setenv("DAGSTER_PG_USERNAME", postgres_server.user)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", postgres_server.password)
    monkeypatch.setenv("DAGSTER_PG_HOST", postgres_server.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(postgres_server.port))
    monkeypatch.setenv("DAGSTER_PG_DB", instance_database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    # A link, not a copy: what is tested is the committed file.
    (home / "dagster.yaml").symlink_to(DEPLOY_CONFIG)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_a_staged_day_is_recorded_in_postgres(
    production_instance, postgres_server, instance_database, tmp_path, store_dir
):
    instance = production_instance
    data = make_data_dir(tmp_path / "data", store_dir)
    catalog = dg.materialize([staging_catalog], resources=resources_for(data), instance=instance)
    assert catalog.success
    staged = dg.materialize(
        [staging_orders, staging_catalog],
        selection=[staging_orders],
        resources=resources_for(data),
        partition_key=DAY,
        instance=instance,
    )
    assert staged.success

    runs = {record.dagster_run.run_id: record for record in instance.get_run_records()}
    assert set(runs) == {catalog.run_id, staged.run_id}
    assert all(record.dagster_run.status == dg.DagsterRunStatus.SUCCESS for record in runs.values())

    # The materialisation, with its partition and row count, as stored in PostgreSQL.
    orders = instance.fetch_materializations(ORDERS_KEY, limit=10).records
    assert [record.run_id for record in orders] == [staged.run_id]
    materialization = orders[0].asset_materialization
    assert materialization.partition == DAY
    day_orders = "select count(*) from staging.orders where o_orderdate = ?"
    [(staged_orders,)] = query(data, day_orders, [DAY])
    assert staged_orders > 0
    assert materialization.metadata["dagster/row_count"].value == staged_orders
    latest = instance.get_latest_materialization_event(ORDERS_KEY)
    assert latest is not None
    assert latest.run_id == staged.run_id

    evaluations = [
        entry.asset_check_evaluation
        for entry in instance.all_logs(
            staged.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    ]
    assert {e.check_name: e.passed for e in evaluations} == dict.fromkeys(STAGING_CHECKS, True)

    # Each step went through its own pool, limited to one slot, given back.
    for step in ("staging_catalog", "staging_orders"):
        pool = instance.event_log_storage.get_concurrency_info(f"duckdb-{step}")
        assert (pool.limit, pool.slot_count) == (1, 1)
        assert pool.claimed_slots == []
        assert pool.pending_steps == []

    # And straight from the database, not through Dagster.
    connection = postgres_server.connect(instance_database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("select status from runs where run_id = %s", [staged.run_id])
            assert cursor.fetchall() == [("SUCCESS",)]
            cursor.execute(
                "select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
                [staged.run_id, "ASSET_MATERIALIZATION"],
            )
            # staging/orders, staging/lineitem and staging/order_rejects
            assert cursor.fetchone() == (3,)
            # Dagster 1.13 also leaves one PLANNED row per check: planned for the partition, the
            # evaluation is stored unpartitioned (the check specs have no partitions_def).
            cursor.execute(
                "select check_name from asset_check_executions"
                " where run_id = %s and execution_status = %s",
                [staged.run_id, "SUCCEEDED"],
            )
            assert sorted(name for (name,) in cursor.fetchall()) == sorted(STAGING_CHECKS)
    finally:
        connection.close()
