"""Analytics refresh: the marts follow every day whose staging or fulfillment changed.

Each tick reads the materialisations of the daily staging and fulfillment assets recorded since its
cursor, up to the latest storage id it read first (`instance.fetch_materializations` works on every
event storage, run-sharded SQLite included). A day counts once the run that wrote it has succeeded,
so that a backfill's days are refreshed together, once, on what the backfill left; a failed run
leaves its days to the run that completes them: a new run of those days, or its re-execution from
the failed step, which writes a daily asset of the same days even when only reconciliation is left.
The days are requested as one run of `analytics_job` per contiguous range (the daily marts'
`BackfillPolicy.single_run()`), which also refreshes the whole-history marts and then the daily
report.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import dagster as dg

from foundation.jobs import analytics_job
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG
from foundation.registry import ANALYTICS

PAGE = 1000


def watched_keys(repository_def: dg.RepositoryDefinition) -> list[dg.AssetKey]:
    """The daily assets outside the analytics group: the marts' inputs and the steps after them.

    Not only what the marts read: a run that failed after its last such step (at reconciliation)
    is completed by a re-execution from failure that writes only the steps left, for the same days.
    """
    assets = repository_def.assets_defs_by_key
    return sorted(
        key
        for key, assets_def in assets.items()
        if assets_def.partitions_def is not None and assets_def.group_names_by_key[key] != ANALYTICS
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
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey], after: int, upto: int
) -> list[tuple[int, str, str | None]]:
    """(storage id, run id, day) of each materialisation of `keys` in (after, upto]."""
    found = []
    for key in keys:
        page = None
        while True:
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=key, after_storage_id=after, before_storage_id=upto + 1
                ),
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
    # Read first: every materialisation up to it can be fetched now, while the ones written as the
    # assets are fetched one after another are left whole to the next tick.
    upto = _latest_storage_id(instance, keys)
    if context.cursor is None:
        # The first tick takes stock: what is already there was there before the sensor.
        return dg.SensorResult(skip_reason="Took stock of the warehouse.", cursor=str(upto))

    after = int(context.cursor)
    changes = _materialisations(instance, keys, after, upto)
    run_ids = sorted({run_id for _, run_id, _ in changes})
    runs = (
        {
            record.dagster_run.run_id: record.dagster_run
            for record in instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
        }
        if run_ids
        else {}
    )
    days: set[str] = set()
    cursor = max(after, upto)
    waiting_for = None
    for storage_id, run_id, day in changes:
        run = runs.get(run_id)
        if run is not None and not run.is_finished:
            # This run and every later change wait until it has finished.
            waiting_for = run_id
            cursor = storage_id - 1
            break
        if run is not None and run.is_success and day is not None:
            days.add(day)

    ranges = contiguous_ranges(days)
    if not ranges:
        reason = f"Waiting for run {waiting_for} to finish." if waiting_for else "No day changed."
        return dg.SensorResult(skip_reason=reason, cursor=str(cursor))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{first}...{last}@{cursor}",
                tags={RANGE_START_TAG: first, RANGE_END_TAG: last},
            )
            for first, last in ranges
        ],
        cursor=str(cursor),
    )
