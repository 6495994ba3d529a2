"""The analytics automation on the instance users run: every day that changed is refreshed, as one
run per contiguous range of days, then the whole-history marts and the report, which covers the
latest order day in the warehouse.

The automation is evaluated with `dg.evaluate_automation_conditions` on an instance made from the
project's dagster.yaml (run-sharded SQLite, as under `make dev`); the requested work is then run
as the sensor's backfill runs it (one run per contiguous range, BackfillPolicy.single_run()).
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from assets.analytics.report import DAILY_REPORT_KEY
from assets.staging.catalog import staging_catalog
from assets.staging.orders import staging_orders
from orchestration_defs.definitions import ANALYTICS_ASSETS, FULFILLMENT_ASSETS, defs
from tests.helpers import check_outcomes, partition_kwargs, query, resources_for

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = [staging_catalog, staging_orders, *FULFILLMENT_ASSETS]
DAILY_MARTS = {
    dg.AssetKey(["analytics", name])
    for name in ("daily_sales", "fulfillment_kpis", "order_timeline", "step_latency")
}
WHOLE_HISTORY_MARTS = {
    dg.AssetKey(["analytics", name])
    for name in ("customer_value", "profit_by_nation_year", "inventory_health")
}
PAST = ("2026-07-01", "2026-07-05")  # a backfill of five past days
LATER = "2026-07-20"  # a later day, as the schedule runs it
RERUN = "2026-07-03"  # a past day run again after the later day


@pytest.fixture
def instance(tmp_path):
    """An instance like `make dev`'s: a DAGSTER_HOME holding a copy of the project's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def order_to_cash(data: Path, instance: dg.DagsterInstance, start: str, end: str | None = None):
    """Stage and fulfil a day or a range in one run, as order_to_cash_job does."""
    result = dg.materialize(
        UPSTREAM, resources=resources_for(data), instance=instance, **partition_kwargs(start, end)
    )
    assert result.success


def requested(result) -> dict[dg.AssetKey, set[str | None]]:
    """What an evaluation requested: partitions per asset (None for an unpartitioned asset)."""
    keys = DAILY_MARTS | WHOLE_HISTORY_MARTS | {DAILY_REPORT_KEY}
    return {
        key: set(result.get_requested_partitions(key))
        for key in keys
        if result.get_num_requested(key)
    }


def contiguous_ranges(days: set[str]) -> list[tuple[str, str]]:
    """Days grouped into [first, last] runs of consecutive days."""
    ranges: list[list[date]] = []
    for day in sorted(date.fromisoformat(d) for d in days):
        if ranges and day - ranges[-1][1] == timedelta(days=1):
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return [(first.isoformat(), last.isoformat()) for first, last in ranges]


def materialize(data: Path, instance, selection, **kwargs) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [*UPSTREAM, *ANALYTICS_ASSETS],
        selection=list(selection),
        resources=resources_for(data),
        instance=instance,
        **kwargs,
    )
    assert result.success
    outcomes = check_outcomes(result)
    assert all(outcomes.values()), outcomes
    return result


def run_as_requested(data: Path, instance, wanted: dict) -> int:
    """Run the requested work as the sensor's backfill does; return the number of runs."""
    runs = 0
    by_days: dict[frozenset, set[dg.AssetKey]] = {}
    for key, partitions in wanted.items():
        if partitions != {None}:
            by_days.setdefault(frozenset(partitions), set()).add(key)
    for days, keys in by_days.items():
        for first, last in contiguous_ranges(set(days)):
            materialize(data, instance, keys, **partition_kwargs(first, last))
            runs += 1
    whole = [key for key, partitions in wanted.items() if partitions == {None}]
    if whole:
        materialize(data, instance, whole)
        runs += 1
    return runs


def report_day(result: dg.ExecuteInProcessResult) -> str:
    return result.asset_materializations_for_node("analytics__daily_report")[0].metadata["day"].value


def refresh(data: Path, instance, cursor, days: set[str]):
    """One tick after an upstream change, checked and run; then the report's tick; return both."""
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    wanted = requested(result)
    # Exactly the changed days, for every daily mart, and the whole-history marts once; the report
    # waits for its marts.
    assert wanted == {
        **{key: days for key in DAILY_MARTS},
        **{key: {None} for key in WHOLE_HISTORY_MARTS},
    }
    assert run_as_requested(data, instance, wanted) == len(contiguous_ranges(days)) + 1

    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert requested(result) == {DAILY_REPORT_KEY: {None}}
    report = materialize(data, instance, [DAILY_REPORT_KEY])
    return result.cursor, report


def test_every_changed_day_refreshes_as_one_run_per_range_and_the_report_covers_the_latest_day(
    data_dir, instance
):
    # The sensor's first tick takes stock: nothing has changed yet.
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert result.total_requested == 0

    # A backfill of five past days: their marts, as one run, not only the latest partition's.
    order_to_cash(data_dir, instance, *PAST)
    past_days = {(date(2026, 7, 1) + timedelta(days=n)).isoformat() for n in range(5)}
    cursor, report = refresh(data_dir, instance, result.cursor, past_days)
    assert report_day(report) == PAST[1]

    # A later day lands: until its marts refresh, a report materialised by hand still covers it
    # (the latest order day in the warehouse), and says that the marts lag it.
    order_to_cash(data_dir, instance, LATER)
    lagging = materialize(data_dir, instance, [DAILY_REPORT_KEY])
    assert report_day(lagging) == LATER
    assert "The marts have no figures for 2026-07-20 yet" in (
        data_dir / "reports" / f"{LATER}.md"
    ).read_text()
    cursor, report = refresh(data_dir, instance, cursor, {LATER})
    assert report_day(report) == LATER

    # A past day runs again: only that day refreshes, and the report stays on the latest order
    # day, not on the last day of the run that refreshed the marts.
    order_to_cash(data_dir, instance, RERUN)
    cursor, report = refresh(data_dir, instance, cursor, {RERUN})
    assert report_day(report) == LATER
    text = (data_dir / "reports" / f"{LATER}.md").read_text()
    assert "The marts have no figures" not in text
    orders = query(
        data_dir,
        "select count(*) from fulfillment.invoices where o_orderdate = ? and o_orderkey not in "
        "(select o_orderkey from fulfillment.compensations)",
        [LATER],
    )[0][0]
    assert f"**{orders:,} orders**" in text

    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.total_requested == 0

    changed = sorted(past_days | {LATER})
    for table, day in [
        ("daily_sales", "day"),
        ("fulfillment_kpis", "day"),
        ("order_timeline", "o_orderdate"),
        ("step_latency", "day"),
    ]:
        days = query(data_dir, f"select distinct {day}::VARCHAR from analytics.{table} order by 1")  # noqa: S608
        assert [d for (d,) in days] == changed, table
    for table in ("customer_value", "profit_by_nation_year", "inventory_health"):
        assert query(data_dir, f"select count(*) from analytics.{table}")[0][0] > 0, table  # noqa: S608
