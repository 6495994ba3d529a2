"""Analytics refresh: the marts follow every day whose staging or fulfillment changed.

Each tick reads the materialisations of the daily assets the marts read, recorded since its cursor
(a storage id: `instance.fetch_materializations` works on every event storage, run-sharded SQLite
included). A day counts once the run that wrote it has succeeded, so that a backfill's days are
refreshed together, once, on what the backfill left; a failed run leaves its days to the run that
completes them. The days are requested as one run of `analytics_job` per contiguous range (the
daily marts' `BackfillPolicy.single_run()`), which also refreshes the whole-history marts and then
the daily report.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import dagster as dg

from assets.analytics.common import GROUP
from orchestration_defs.jobs import analytics_job

PAGE = 1000


def watched_keys(repository_def: dg.RepositoryDefinition) -> list[dg.AssetKey]:
    """The daily assets outside the analytics group that the marts read (their declared deps)."""
    assets = repository_def.assets_defs_by_key
    read = {
        dep
        for key, assets_def in assets.items()
        if assets_def.group_names_by_key[key] == GROUP
        for dep in assets_def.asset_deps[key]
    }
    return sorted(
        key
        for key in read
        if key in assets
        and assets[key].partitions_def is not None
        and assets[key].group_names_by_key[key] != GROUP
    )


def contiguous_ranges(days: Iterable[str]) -> list[tuple[str, str]]:
    """Days (YYYY-MM-DD) grouped into [first, last] ranges of consecutive days."""
    ranges: list[list[date]] = []
    for day in sorted({date.fromisoformat(d) for d in days}):
        if ranges and day - ranges[-1][1] == timedelta(days=1):
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    return [(first.isoformat(), last.isoformat()) for first, last in ranges]


def _materialisations(
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey], after: int
) -> list[tuple[int, str, str | None]]:
    """(storage id, run id, day) of each materialisation of `keys` after storage id `after`."""
    found = []
    for key in keys:
        page = None
        while True:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
                limit=PAGE,
                cursor=page,
                ascending=True,
            )
            found += [(r.storage_id, r.run_id, r.partition_key) for r in result.records]
            if not result.has_more:
                break
            page = result.cursor
    return sorted(found)


def _latest_storage_id(instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey]) -> int:
    latest = (instance.fetch_materializations(key, limit=1).records for key in keys)
    return max((records[0].storage_id for records in latest if records), default=0)


@dg.sensor(
    name="analytics_automation_sensor",
    job=analytics_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "After staging or fulfillment changed some days (a run, a backfill, a re-execution), "
        "refreshes their marts: one run of analytics_job per contiguous range of days, with the "
        "whole-history marts and the daily report."
    ),
)
def analytics_automation_sensor(context: dg.SensorEvaluationContext):
    """Request one analytics run per contiguous range of days changed by succeeded runs."""
    keys = watched_keys(context.repository_def)
    instance = context.instance
    if context.cursor is None:
        # The first tick takes stock: what is already there was there before the sensor.
        latest = _latest_storage_id(instance, keys)
        return dg.SensorResult(skip_reason="Took stock of the warehouse.", cursor=str(latest))

    changes = _materialisations(instance, keys, after=int(context.cursor))
    run_ids = sorted({run_id for _, run_id, _ in changes})
    runs = (
        {run.run_id: run for run in instance.get_runs(dg.RunsFilter(run_ids=run_ids))}
        if run_ids
        else {}
    )
    days: set[str] = set()
    cursor = int(context.cursor)
    waiting_for = None
    for storage_id, run_id, day in changes:
        run = runs.get(run_id)
        if run is not None and not run.is_finished:
            # This run and every later change wait until it has finished.
            waiting_for = run_id
            break
        if run is not None and run.is_success and day is not None:
            days.add(day)
        cursor = storage_id

    ranges = contiguous_ranges(days)
    if not ranges:
        reason = f"Waiting for run {waiting_for} to finish." if waiting_for else "No day changed."
        return dg.SensorResult(skip_reason=reason, cursor=str(cursor))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{first}...{last}@{cursor}",
                tags={
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                },
            )
            for first, last in ranges
        ],
        cursor=str(cursor),
    )
