"""The analytics refresh on the instance users run: every day that changed is refreshed, as one
run per contiguous range of days with the whole-history marts and the report, which covers the
latest order day in the warehouse.

First the sensor's ticks, with `build_sensor_context` on the instance `make dev` runs
(dagster.postgres.yaml, tests/conftest.py), each requested run executed as `analytics_job` would
run it. Then the real thing under `dagster dev`, started as `make dev` starts it
(tests/dagster_dev.py): a 30-day backfill, and the runs the sensor launches.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.staging.catalog import staging_catalog
from assets.staging.orders import staging_orders
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG
from foundation.registry import DAILY_REPORT_KEY
from orchestration_defs.definitions import ANALYTICS_ASSETS, FULFILLMENT_ASSETS, defs
from resources.accounting import SqlAccounting
from resources.faults import FaultInjection, SystemUnavailable
from resources.inventory import SqlInventory
from sensors.analytics import analytics_automation_sensor, contiguous_ranges, watched_keys
from tests.dagster_dev import FINISHED, LOCATION, graphql, launch, poll, wait_for_run
from tests.helpers import check_outcomes, partition_kwargs, query, resources_for, stage

UPSTREAM = [staging_catalog, staging_orders, *FULFILLMENT_ASSETS]
PAST = ("2026-07-01", "2026-07-05")  # a backfill of five past days
LATER = "2026-07-20"  # a later day, as the schedule runs it
RERUN = "2026-07-03"  # a past day run again after the later day
DAILY_TABLES = {
    "daily_sales": "day",
    "fulfillment_kpis": "day",
    "order_timeline": "o_orderdate",
    "step_latency": "day",
}


def order_to_cash(data: Path, home: str, start: str, end: str | None = None, **faults):
    """Stage and fulfil a day or a range in one run, as order_to_cash_job does.

    On an instance of its own over the DAGSTER_HOME `home`, as a run's process opens it.
    """
    with dg.DagsterInstance.from_config(home) as instance:
        return dg.materialize(
            UPSTREAM,
            resources=resources_for(data, {k: FaultInjection(**v) for k, v in faults.items()}),
            instance=instance,
            raise_on_error=False,
            **partition_kwargs(start, end),
        )


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return analytics_automation_sensor(context)


def ranges(result: dg.SensorResult) -> list[tuple[str, str]]:
    """The partition range of each requested run."""
    return [
        (
            request.tags[RANGE_START_TAG],
            request.tags[RANGE_END_TAG],
        )
        for request in result.run_requests or []
    ]


def run_requested(data: Path, instance, result: dg.SensorResult) -> dg.ExecuteInProcessResult:
    """Execute the tick's one run request as a run of analytics_job."""
    (request,) = result.run_requests
    assert request.job_name in (None, "analytics_job")
    return materialize(data, instance, ANALYTICS_ASSETS, tags=request.tags)


def materialize(data: Path, instance, selection, **kwargs) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [*UPSTREAM, *ANALYTICS_ASSETS],
        selection=selection,
        resources=resources_for(data),
        instance=instance,
        **kwargs,
    )
    assert result.success
    outcomes = check_outcomes(result)
    assert all(outcomes.values()), outcomes
    return result


def report_day(result: dg.ExecuteInProcessResult) -> str:
    return (
        result.asset_materializations_for_node("analytics__daily_report")[0].metadata["day"].value
    )


def days_in_marts(data: Path) -> dict[str, list[str]]:
    return {
        table: [
            day
            for (day,) in query(
                data, f"select distinct {column}::VARCHAR from analytics.{table} order by 1"
            )
        ]
        for table, column in DAILY_TABLES.items()
    }


def test_changed_days_refresh_as_one_run_per_range_and_the_report_covers_the_latest_day(
    data_dir, dagster_instance, monkeypatch
):
    instance = dagster_instance
    home = instance.root_directory
    # The first tick takes stock.
    result = tick(instance, None)
    assert not result.run_requests

    # A backfill of five past days, one run. While it runs, the sensor waits for it: the run
    # stages its orders, then its first inventory call waits until the test has ticked.
    ticked = threading.Event()
    decide_frame = SqlInventory.decide_frame

    def after_the_tick(self, lines, terms=None):
        assert ticked.wait(timeout=300), "the test did not tick"
        return decide_frame(self, lines, terms)

    monkeypatch.setattr(SqlInventory, "decide_frame", after_the_tick)
    outcome = []
    backfill = threading.Thread(target=lambda: outcome.append(order_to_cash(data_dir, home, *PAST)))
    backfill.start()
    try:
        staged = []
        while not staged and backfill.is_alive():
            staged = instance.fetch_materializations(dg.AssetKey(["staging", "orders"]), 1).records
            time.sleep(0.2)
        assert staged, "the backfill ended before staging its orders"
        result = tick(instance, result.cursor)
        assert not instance.get_run_by_id(staged[0].run_id).is_finished
    finally:
        ticked.set()
        backfill.join()
    assert not result.run_requests
    assert result.skip_reason.skip_message == f"Waiting for run {staged[0].run_id} to finish."
    assert outcome[0].success

    # Done: its five days as one run, with the whole-history marts and the report.
    result = tick(instance, result.cursor)
    assert ranges(result) == [PAST]
    run = run_requested(data_dir, instance, result)
    assert report_day(run) == PAST[1]
    past_days = [f"2026-07-0{n}" for n in range(1, 6)]
    assert days_in_marts(data_dir) == {table: past_days for table in DAILY_TABLES}
    for table in ("customer_value", "profit_by_nation_year", "inventory_health"):
        assert query(data_dir, f"select count(*) from analytics.{table}")[0][0] > 0, table
    assert not tick(instance, result.cursor).run_requests

    # A later day: until its marts refresh, a report materialised by hand still covers it (the
    # latest order day in the warehouse) and says that the marts lag it.
    assert order_to_cash(data_dir, home, LATER).success
    lagging = materialize(data_dir, instance, [DAILY_REPORT_KEY])
    assert report_day(lagging) == LATER
    text = (data_dir / "reports" / f"{LATER}.md").read_text()
    assert f"The marts have no figures for {LATER} yet" in text
    result = tick(instance, result.cursor)
    assert ranges(result) == [(LATER, LATER)]
    assert report_day(run_requested(data_dir, instance, result)) == LATER

    # A past day fails half-way (the inventory is down): nothing to refresh until a run of the
    # day succeeds; then only that day, and the report stays on the latest order day rather than
    # the last day of the run.
    failed = order_to_cash(data_dir, home, RERUN, inventory={"down": True})
    assert not failed.success
    result = tick(instance, result.cursor)
    assert not result.run_requests
    assert order_to_cash(data_dir, home, RERUN).success
    result = tick(instance, result.cursor)
    assert ranges(result) == [(RERUN, RERUN)]
    assert report_day(run_requested(data_dir, instance, result)) == LATER
    text = (data_dir / "reports" / f"{LATER}.md").read_text()
    assert "The marts have no figures" not in text
    orders = query(
        data_dir,
        "select count(*) from fulfillment.invoices where o_orderdate = ? and o_orderkey not in "
        "(select o_orderkey from fulfillment.compensations)",
        [LATER],
    )[0][0]
    assert f"**{orders:,} orders**" in text

    assert not tick(instance, result.cursor).run_requests
    assert days_in_marts(data_dir) == {table: [*past_days, LATER] for table in DAILY_TABLES}


def order_to_cash_job_for(data: Path) -> dg.ReconstructableJob:
    """order_to_cash_job as `dg.execute_job` launches and re-executes it (tests.helpers)."""
    return dg.build_reconstructable_job(
        "tests.helpers", "order_to_cash_for", reconstructable_kwargs={"data_dir": str(data)}
    )


def steps(instance: dg.DagsterInstance, run_id: str, event: dg.DagsterEventType) -> set[str]:
    return {e.step_key for e in instance.all_logs(run_id, of_type=event)}


def test_a_run_failing_after_the_marts_inputs_refreshes_its_day_once_re_executed(
    data_dir, dagster_instance, monkeypatch
):
    instance = dagster_instance
    job = order_to_cash_job_for(data_dir)
    result = tick(instance, None)

    def accounting_down(self, start, end):
        raise SystemUnavailable("accounting is down")

    # Reconciliation, the last step, fails: the marts' inputs for the day are written, and wait.
    with monkeypatch.context() as outage:
        outage.setattr(SqlAccounting, "recount_day_totals", accounting_down)
        with dg.execute_job(job, instance, tags={"dagster/partition": RERUN}) as failed:
            assert not failed.success
    failed_steps = steps(instance, failed.run_id, dg.DagsterEventType.STEP_FAILURE)
    assert failed_steps == {"fulfillment__reconciliation"}
    result = tick(instance, result.cursor)
    assert not result.run_requests

    # Re-executed from failure as the UI does: only reconciliation runs, and the day refreshes.
    options = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
    with dg.execute_job(
        job, instance, tags=failed.dagster_run.tags, reexecution_options=options
    ) as recovered:
        assert recovered.success
    rerun = steps(instance, recovered.run_id, dg.DagsterEventType.STEP_START)
    assert rerun == {"fulfillment__reconciliation"}
    result = tick(instance, result.cursor)
    assert ranges(result) == [(RERUN, RERUN)]
    assert not tick(instance, result.cursor).run_requests


def test_materialisations_written_while_a_tick_reads_are_refreshed(
    data_dir, dagster_instance, monkeypatch
):
    instance = dagster_instance
    result = tick(instance, None)
    assert order_to_cash(data_dir, instance.root_directory, RERUN).success
    result = tick(instance, result.cursor)
    assert ranges(result) == [(RERUN, RERUN)]

    # While the tick reads the watched assets one after another, a run rewrites the first of
    # them for RERUN, then another stages LATER (a later one of them).
    first = watched_keys(defs.get_repository_def())[0]
    fetch = instance.fetch_materializations
    written = []

    def fetch_while_runs_write(*args, **kwargs):
        found = fetch(*args, **kwargs)
        if not written:
            written.append(first)
            rewrite = dg.materialize(
                UPSTREAM,
                selection=[first],
                resources=resources_for(data_dir),
                instance=instance,
                partition_key=RERUN,
            )
            assert rewrite.success
            assert stage(data_dir, LATER, instance=instance).success
        return found

    monkeypatch.setattr(instance, "fetch_materializations", fetch_while_runs_write)
    result = tick(instance, result.cursor)
    assert written
    requested = ranges(result)
    requested += ranges(tick(instance, result.cursor))
    assert sorted(requested) == [(RERUN, RERUN), (LATER, LATER)]


def test_changed_days_group_into_contiguous_ranges():
    days = ["2026-07-04", "2026-07-01", "2026-07-20", "2026-07-02", "2026-07-03", "2026-07-01"]
    assert contiguous_ranges(days) == [("2026-07-01", "2026-07-04"), ("2026-07-20", "2026-07-20")]
    assert contiguous_ranges(["2026-02-28", "2026-03-01"]) == [("2026-02-28", "2026-03-01")]
    assert contiguous_ranges([]) == []


RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    ... on Runs { results { runId status endTime assetSelection { path } tags { key value } } }
  }
}
"""
TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 1) { timestamp } } }
  }
}
"""
BACKFILL = ("2026-06-01", "2026-06-30")


def automation_runs(url: str) -> list[dict]:
    tags = [{"key": "dagster/sensor_name", "value": "analytics_automation_sensor"}]
    runs = graphql(url, RUNS, {"tags": tags})["runsOrError"]["results"]
    for run in runs:
        run["tags"] = {tag["key"]: tag["value"] for tag in run["tags"]}
        run["assets"] = {"/".join(key["path"]) for key in run["assetSelection"] or []}
    return runs


@pytest.mark.slow
def test_a_30_day_backfill_refreshes_the_marts_in_one_run_under_dagster_dev(dagster_dev):
    url, data = dagster_dev.url, dagster_dev.data
    selector = {**LOCATION, "sensorName": "analytics_automation_sensor"}

    def ticks() -> list[dict]:
        return graphql(url, TICKS, {"selector": selector})["sensorOrError"]["sensorState"]["ticks"]

    # The sensor is on by default; its first tick takes stock.
    poll("the sensor's first tick", ticks)

    # A 30-day backfill of the order-to-cash chain: one run over the range (single_run policy).
    start, end = BACKFILL
    backfill = launch(url, "order_to_cash_job", tags={RANGE_START_TAG: start, RANGE_END_TAG: end})
    assert wait_for_run(url, backfill, timeout=600) == "SUCCESS"

    def all_finished() -> list[dict]:
        runs = automation_runs(url)
        return runs if runs and all(run["status"] in FINISHED for run in runs) else []

    runs = poll("the sensor's run to finish", all_finished)
    # One more tick after the last run has ended requests nothing more.
    last_end = max(run["endTime"] for run in runs)
    poll("a tick after the run", lambda: any(t["timestamp"] > last_end for t in ticks()))
    runs = automation_runs(url)

    # One run for the 30 days: the daily marts over the range, the whole-history marts, the report.
    assert len(runs) == 1, [(run["assets"], run["tags"]) for run in runs]
    (run,) = runs
    assert run["status"] == "SUCCESS", run
    assert run["tags"][RANGE_START_TAG] == start
    assert run["tags"][RANGE_END_TAG] == end
    days = query(
        data,
        "select count(distinct day) from analytics.daily_sales where day between ? and ?",
        [start, end],
    )
    assert days[0][0] == 30
    for table in ("customer_value", "profit_by_nation_year", "inventory_health"):
        assert query(data, f"select count(*) from analytics.{table}")[0][0] > 0, table
    report = (data / "reports" / f"{end}.md").read_text()
    assert report.startswith(f"# Orderflow daily report — {end}")
