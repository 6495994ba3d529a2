"""`make dev`'s event log (deploy/instance_storage.py) against Dagster's own, on `make dev`'s server.

Real range runs (one run for 40 days, as a backfill makes) of a daily asset with a check and a
daily asset downstream, on the instance dagster.postgres.yaml describes, with a batch size that
splits an asset's partitions across batches and puts assets and checks in one batch. Dagster
derives each partition's *failed* and *in progress* state from its planned event: those states
must be what Dagster's own PostgreSQL storage shows, and every table must hold what it writes.
"""

from __future__ import annotations

import math
import threading

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster_postgres import PostgresEventLogStorage

from deploy.instance_storage import OrderflowPostgresEventLogStorage
from deploy.local_postgres import TEMPLATE

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-10")
KEYS = DAYS.get_partition_keys()
RANGE = {
    "dagster/asset_partition_range_start": KEYS[0],
    "dagster/asset_partition_range_end": KEYS[-1],
}
BATCH_SIZE = 7
ORDERS, SHIPMENTS = dg.AssetKey("orders"), dg.AssetKey("shipments")
PLANNED = (
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
)
# Filled by the server when a row is written, so never equal between two databases.
WRITE_TIME_COLUMNS = {"create_timestamp", "update_timestamp"}


def daily_assets(*, fail: bool = False, started=None, release=None) -> list[dg.AssetsDefinition]:
    """Orders (with a check) and shipments, the second failing if asked; orders can wait."""

    @dg.asset(
        partitions_def=DAYS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        code_version="1",  # its materialisations carry tags that the event log indexes
        check_specs=[dg.AssetCheckSpec("counted", asset=ORDERS)],
    )
    def orders(context):
        context.partition_time_window  # noqa: B018 - a range run, as the project's assets read it
        if started is not None:
            started.set()
            assert release.wait(timeout=300)
        yield dg.MaterializeResult(metadata={"dagster/row_count": 3})
        yield dg.AssetCheckResult(passed=True)

    @dg.asset(
        partitions_def=DAYS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        code_version="1",
        deps=[orders],
    )
    def shipments(context):
        context.partition_time_window  # noqa: B018
        if fail:
            raise dg.Failure("the carrier is down", allow_retries=False)
        return dg.MaterializeResult()

    return [orders, shipments]


@pytest.fixture(autouse=True)
def _batched(monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", str(BATCH_SIZE))


@pytest.fixture
def stock_instance(tmp_path, instance_url):
    """Dagster's own PostgreSQL storage, with make dev's other settings, on a database of its own."""
    config = {
        key: value
        for key, value in yaml.safe_load(TEMPLATE.read_text()).items()
        if key not in ("run_storage", "event_log_storage", "schedule_storage")
    }
    config["storage"] = {"postgres": {"postgres_url": instance_url()}}
    home = tmp_path / "stock_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is PostgresEventLogStorage
        yield instance


@pytest.fixture(params=["make dev", "dagster's own"])
def either_instance(request, dagster_instance, stock_instance):
    """Each test below runs on make dev's instance, and on Dagster's own storage for reference."""
    return dagster_instance if request.param == "make dev" else stock_instance


def statuses(instance: dg.DagsterInstance, key: dg.AssetKey) -> set:
    """The states Dagster shows for the asset's 40 days (the UI's partition status)."""
    return set(instance.get_status_by_partition(key, KEYS, DAYS).values())


def test_make_dev_writes_a_runs_planned_events_in_batches(dagster_instance):
    instance = dagster_instance
    assert type(instance.event_log_storage) is OrderflowPostgresEventLogStorage

    assert dg.materialize(daily_assets(), instance=instance, tags=RANGE).success

    # Every row written in its own transaction would make one transaction per row; a batch is
    # one statement, so its rows share the transaction id that wrote them.
    (run,) = instance.get_run_records()
    with sa.create_engine(instance.event_log_storage.postgres_url).connect() as connection:
        rows, transactions = connection.execute(
            sa.text(
                "select count(*), count(distinct xmin::text) from event_logs"
                " where run_id = :run_id and dagster_event_type = :planned"
            ),
            {"run_id": run.dagster_run.run_id, "planned": PLANNED[0].value},
        ).one()
    assert rows == 2 * len(KEYS)
    planned_events = rows + 1  # and the check's
    assert transactions <= math.ceil(planned_events / BATCH_SIZE)


def test_a_failed_range_run_leaves_its_days_failed(either_instance):
    instance = either_instance
    assert dg.materialize(daily_assets(), instance=instance, tags=RANGE).success
    failed = dg.materialize(
        daily_assets(fail=True), instance=instance, tags=RANGE, raise_on_error=False
    )

    assert not failed.success
    assert statuses(instance, ORDERS) == {dg.AssetPartitionStatus.MATERIALIZED}
    assert statuses(instance, SHIPMENTS) == {dg.AssetPartitionStatus.FAILED}


def test_a_running_range_run_shows_its_days_in_progress(either_instance):
    instance = either_instance
    started, release = threading.Event(), threading.Event()
    outcome = {}
    run = threading.Thread(
        target=lambda: outcome.update(
            result=dg.materialize(
                daily_assets(started=started, release=release), instance=instance, tags=RANGE
            )
        )
    )
    run.start()
    try:
        assert started.wait(timeout=300), "the run did not start"
        in_progress = {key: statuses(instance, key) for key in (ORDERS, SHIPMENTS)}
    finally:
        release.set()
        run.join(timeout=300)

    assert in_progress == {
        ORDERS: {dg.AssetPartitionStatus.IN_PROGRESS},
        SHIPMENTS: {dg.AssetPartitionStatus.IN_PROGRESS},
    }
    assert outcome["result"].success
    assert statuses(instance, SHIPMENTS) == {dg.AssetPartitionStatus.MATERIALIZED}


def replay(events: list[dg.EventLogEntry], storage: PostgresEventLogStorage) -> None:
    """Store the events as Dagster hands them over: planned ones in batches, the rest one by one."""
    pending: list[dg.EventLogEntry] = []

    def flush() -> None:
        for start in range(0, len(pending), BATCH_SIZE):
            storage.store_event_batch(pending[start : start + BATCH_SIZE])
        pending.clear()

    for event in events:
        if event.dagster_event_type in PLANNED:
            pending.append(event)
        else:
            flush()
            storage.store_event(event)
    flush()


def tables(url: str) -> dict[str, list[dict]]:
    """Every table of the database, its rows in id order, without the write-time columns.

    `asset_keys.id` is left out too: each upsert takes a number from its sequence even when it
    updates, so the stock class, upserting once per event, leaves larger gaps; the order of the
    rows is kept.
    """
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            contents = {}
            for table in sa.inspect(connection).get_table_names():
                reflected = sa.Table(table, sa.MetaData(), autoload_with=connection)
                order = [reflected.c.id] if "id" in reflected.c else list(reflected.c)
                rows = connection.execute(sa.select(reflected).order_by(*order)).mappings()
                skipped = WRITE_TIME_COLUMNS | ({"id"} if table == "asset_keys" else set())
                contents[table] = [
                    {column: value for column, value in row.items() if column not in skipped}
                    for row in rows
                ]
            return contents
    finally:
        engine.dispose()


def test_the_tables_hold_what_dagsters_own_event_log_writes(dagster_instance, instance_url):
    # Real runs on make dev's instance: one that succeeds, one whose second asset fails.
    instance = dagster_instance
    assert dg.materialize(daily_assets(), instance=instance, tags=RANGE).success
    dg.materialize(daily_assets(fail=True), instance=instance, tags=RANGE, raise_on_error=False)
    runs = sorted(instance.get_run_records(), key=lambda record: record.create_timestamp)
    events = [event for run in runs for event in instance.all_logs(run.dagster_run.run_id)]
    assert {PLANNED[1], dg.DagsterEventType.ASSET_FAILED_TO_MATERIALIZE} & {
        event.dagster_event_type for event in events
    }

    # The same events stored by Dagster's own class and by make dev's, on new databases.
    stock_url, ours_url = instance_url(), instance_url()
    replay(events, PostgresEventLogStorage(stock_url))
    replay(events, OrderflowPostgresEventLogStorage(ours_url))

    stock, ours = tables(stock_url), tables(ours_url)
    assert len(stock["event_logs"]) == len(events)
    assert len(stock["asset_check_executions"]) >= 2 * len(KEYS)  # PLANNED rows of both runs
    assert stock.keys() == ours.keys()
    for table in stock:
        assert ours[table] == stock[table], table
