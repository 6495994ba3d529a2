"""Metrics for Prometheus: whenever a run ends, what operators watch goes to the Pushgateway.

Two run-status sensors (a run succeeded, a run failed) push, for every job of the code location
and the run's own, its finished runs by status and its last run's duration, steps, retries and
failures; and for every asset, when it was last materialised, the newest day it holds and that
day's figures, from the metadata the asset recorded (its row count, back-ordered lines, refused
orders, discrepancies, step latency percentiles...). Every value is read from the instance, never
added up tick after tick, and each push replaces its whole group: a tick that is retried or
evaluated twice pushes the same values, so nothing is counted twice. Labels stay bounded: job,
step and asset names come from the code, and each asset reports one day, the newest it holds,
replaced by the next one; the days' history is Prometheus' to keep.
"""

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG
from foundation.registry import (
    ALLOCATIONS_KEY,
    BACKORDER_NOTICES_KEY,
    COMPENSATIONS_KEY,
    LINEITEM_KEY,
    ORDERS_KEY,
    RECONCILIATION_KEY,
    SHIPMENTS_KEY,
    STEP_LATENCY_KEY,
)
from foundation.settings import PUSHGATEWAY_URL_ENV
from resources.metrics import PushgatewayResource

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.metrics_core import Metric

# The Pushgateway's job for the assets' figures, which belong to no single Dagster job.
ASSETS_JOB = "orderflow"
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
# A day's figures: (metadata key its asset records, metric, meaning), by asset.
DAY_FIGURES: dict[dg.AssetKey, tuple[tuple[str, str, str], ...]] = {
    ORDERS_KEY: (
        ("records_staged", "orderflow_day_orders", "Orders staged for the day."),
        ("records_rejected", "orderflow_day_order_rejects", "Order records rejected."),
    ),
    LINEITEM_KEY: (("dagster/row_count", "orderflow_day_lines", "Order lines staged."),),
    ALLOCATIONS_KEY: (
        ("lines_reserved", "orderflow_day_lines_reserved", "Lines the stock covered."),
        ("lines_backordered", "orderflow_day_lines_backordered", "Lines back-ordered."),
    ),
    BACKORDER_NOTICES_KEY: (
        ("dagster/row_count", "orderflow_day_backorder_notices", "Back-order e-mails sent."),
    ),
    SHIPMENTS_KEY: (
        ("orders_shipped", "orderflow_day_orders_shipped", "Orders the carrier shipped."),
        ("orders_refused", "orderflow_day_orders_refused", "Orders the carrier refused."),
    ),
    COMPENSATIONS_KEY: (
        ("dagster/row_count", "orderflow_day_compensations", "Refused orders compensated."),
    ),
    RECONCILIATION_KEY: (
        (
            "discrepancies",
            "orderflow_day_reconciliation_discrepancies",
            "Figures on which the warehouse and an outside system differ.",
        ),
    ),
}
# step_latency's `<step>_p50_s` and `<step>_p95_s` (assets/analytics/timeline.py).
LATENCY_KEY = re.compile(r"(?P<step>[a-z]+)_p(?P<percentile>50|95)_s")


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> "GaugeMetricFamily":
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, documentation, labels=list(labels))


def job_metrics(instance: dg.DagsterInstance, job: str) -> list["Metric"]:
    """A job's finished runs by status, and its last finished run with its steps."""
    from prometheus_client.core import CounterMetricFamily

    runs = CounterMetricFamily(
        "orderflow_runs", "Finished runs of the job, by status.", labels=["status"]
    )
    for status in FINISHED:
        count = instance.get_runs_count(dg.RunsFilter(job_name=job, statuses=[status]))
        runs.add_metric([status.value.lower()], count)
    families: list[Metric] = [runs]
    for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
        last = _last_run(instance, job, [status])
        if last is not None and last.end_time is not None:
            name = f"orderflow_run_last_{status.value.lower()}_timestamp_seconds"
            family = _gauge(name, f"When the job's last {status.value.lower()} run ended.")
            family.add_metric([], last.end_time)
            families.append(family)
    last = _last_run(instance, job, list(FINISHED))
    if last is None:
        return families
    if last.start_time is not None and last.end_time is not None:
        duration = _gauge("orderflow_run_duration_seconds", "The job's last finished run's time.")
        duration.add_metric([], last.end_time - last.start_time)
        families.append(duration)
    step_duration = _gauge(
        "orderflow_step_duration_seconds", "Each step's time in the job's last run.", ["step"]
    )
    retries = _gauge(
        "orderflow_step_retries", "Each step's retries in the job's last run.", ["step"]
    )
    failed = _gauge(
        "orderflow_step_failed", "1 for a step that failed in the job's last run.", ["step"]
    )
    for step in instance.get_run_step_stats(last.dagster_run.run_id):
        if step.start_time is not None and step.end_time is not None:
            step_duration.add_metric([step.step_key], step.end_time - step.start_time)
        retries.add_metric([step.step_key], max((step.attempts or 1) - 1, 0))
        is_failure = step.status is not None and step.status.value == "FAILURE"
        failed.add_metric([step.step_key], 1 if is_failure else 0)
    return [*families, step_duration, retries, failed]


def _last_run(instance: dg.DagsterInstance, job: str, statuses: list) -> dg.RunRecord | None:
    """The job's run in one of `statuses` whose status changed last."""
    records = instance.get_run_records(
        dg.RunsFilter(job_name=job, statuses=statuses), limit=1, order_by="update_timestamp"
    )
    return records[0] if records else None


def asset_metrics(
    instance: dg.DagsterInstance, partitioned: Mapping[dg.AssetKey, bool]
) -> list["Metric"]:
    """Each asset's freshness, and its newest day's figures where a run of that day recorded them.

    `partitioned` tells, for each asset, whether it is partitioned by day.
    """
    materialized = _gauge(
        "orderflow_asset_last_materialization_timestamp_seconds",
        "When the asset was last materialised.",
        ["asset"],
    )
    newest = _gauge(
        "orderflow_asset_newest_day_end_timestamp_seconds",
        "The end (midnight UTC after it) of the newest order day the asset holds.",
        ["asset"],
    )
    figures = {
        name: _gauge(name, meaning, ["asset", "day"])
        for named in DAY_FIGURES.values()
        for _, name, meaning in named
    }
    latency = _gauge(
        "orderflow_day_order_latency_seconds",
        "Percentiles of the time the day's orders took at each step (from the step before).",
        ["asset", "day", "step", "quantile"],
    )
    for key in sorted(partitioned):
        asset = key.to_user_string()
        last = instance.fetch_materializations(key, limit=1).records
        if not last:
            continue
        materialized.add_metric([asset], last[0].timestamp)
        day = _newest_day(instance, key) if partitioned[key] else None
        if day is None:
            continue
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        newest.add_metric([asset], end.timestamp())
        if key not in DAY_FIGURES and key != STEP_LATENCY_KEY:
            continue
        metadata = _day_metadata(instance, key, day.isoformat())
        for metadata_key, name, _ in DAY_FIGURES.get(key, ()):
            number = _number(metadata.get(metadata_key))
            if number is not None:
                figures[name].add_metric([asset, day.isoformat()], number)
        if key == STEP_LATENCY_KEY:
            for metadata_key, entry in metadata.items():
                match = LATENCY_KEY.fullmatch(metadata_key)
                number = _number(entry)
                if match and number is not None:
                    quantile = "0.5" if match["percentile"] == "50" else "0.95"
                    latency.add_metric([asset, day.isoformat(), match["step"], quantile], number)
    return [materialized, newest, *figures.values(), latency]


def _newest_day(instance: dg.DagsterInstance, key: dg.AssetKey) -> date | None:
    days = []
    for partition in instance.get_materialized_partitions(key):
        try:
            days.append(date.fromisoformat(partition))
        except (TypeError, ValueError):
            continue
    return max(days, default=None)


def _day_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, day: str) -> dict:
    """The metadata of the day's latest materialisation, if a run of that day alone recorded it.

    A range's run (a backfill) records the figures of its whole range on each of its days.
    """
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
    ).records
    if not records:
        return {}
    run = instance.get_run_record_by_id(records[0].run_id)
    tags = run.dagster_run.tags if run is not None else {}
    single_day = tags.get("dagster/partition") == day or (
        tags.get(RANGE_START_TAG) == day and tags.get(RANGE_END_TAG) == day
    )
    materialization = records[0].asset_materialization
    return dict(materialization.metadata) if single_day and materialization else {}


def _number(entry) -> float | None:
    value = getattr(entry, "value", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def push_metrics(context: dg.RunStatusSensorContext, metrics: PushgatewayResource):
    """Push the jobs' and the assets' metrics as the instance has them now."""
    if not metrics.enabled:
        return dg.SkipReason(
            f"Metrics are off: set {PUSHGATEWAY_URL_ENV} to a Prometheus Pushgateway "
            "(`make dev METRICS=1` starts one) to push them."
        )
    instance, repository = context.instance, context.repository_def
    jobs = {context.dagster_run.job_name}
    assets: dict[dg.AssetKey, bool] = {}
    if repository is not None:
        jobs |= {job.name for job in repository.get_all_jobs()}
        assets = {
            key: a.partitions_def is not None
            for key, a in repository.assets_defs_by_key.items()
            if a.is_materializable
        }
    for job in sorted(jobs):
        metrics.push(job, job_metrics(instance, job))
    metrics.push(ASSETS_JOB, asset_metrics(instance, assets))
    context.log.info(
        f"Pushed the metrics of {len(jobs)} jobs and {len(assets)} assets to {metrics.address} "
        f"after run {context.dagster_run.run_id} ({context.dagster_run.job_name})"
    )
    return None


run_success_metrics_sensor = dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="run_success_metrics_sensor",
    description="After a run succeeds, push the jobs' and assets' metrics to the Pushgateway.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)(push_metrics)

run_failure_metrics_sensor = dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.FAILURE,
    name="run_failure_metrics_sensor",
    description="After a run fails, push the jobs' and assets' metrics to the Pushgateway.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)(push_metrics)
