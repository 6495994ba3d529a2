"""Metrics for Prometheus: the run-status sensors push what a day's run did, and push it once.

The sensors are evaluated as the daemon evaluates them (`evaluate_tick` on the instance users
run, with the code location's repository), after real runs; what they pushed is read back from
Debian's Pushgateway on loopback (tests/metrics.py), and, in the slow test, from Prometheus'
HTTP API once it has scraped the Pushgateway, with the README's own PromQL queries.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from deploy.dagster_dev import free_port
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG, daily_partitions
from foundation.registry import ORDERS_KEY
from foundation.settings import PROJECT_ROOT, PUSHGATEWAY_URL_ENV
from orchestration_defs.definitions import build_resources, defs
from resources.metrics import PushgatewayResource
from sensors.metrics import run_failure_metrics_sensor, run_success_metrics_sensor
from tests.helpers import WEEKS_END, analyse, query
from tests.metrics import labels_of, pushed, scraped, value

# The last day of the session's staged weeks (tests.helpers.WEEKS_END): staged by a range run first,
# then by each day's run, it is the newest day of every daily asset.
DAY = WEEKS_END
EARLIER = "2021-01-16"
JOB = "order_to_cash_job"
ASSET_JOB = "__ephemeral_asset_job__"  # dg.materialize's runs
STEPS = ("reserve", "invoice", "ship", "notify", "post")


def tick(sensor, instance, url: str | None, cursor: str | None = None):
    """Evaluate a sensor as the daemon does: on the instance, in the code location's repository."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        repository_def=defs.get_repository_def(),
        resources={"metrics": PushgatewayResource(url=url or "")},
    )
    return sensor.evaluate_tick(context)


def order_to_cash(data: Path, instance: dg.DagsterInstance, day: str) -> dg.JobExecutionResult:
    """A day of order_to_cash_job, as the schedule launches it (tests.helpers.order_to_cash_for)."""
    job = dg.build_reconstructable_job(
        "tests.helpers", "order_to_cash_for", reconstructable_kwargs={"data_dir": str(data)}
    )
    with dg.execute_job(job, instance, tags={"dagster/partition": day}) as result:
        assert result.success
        return result


def day_end(day: str) -> float:
    """When an order day closes: midnight UTC after it."""
    return (datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)).timestamp()


def expected_figures(data: Path, day: str) -> dict[str, float]:
    """The day's figures as the warehouse holds them."""

    def one(sql: str) -> float:
        return query(data, sql, [day])[0][0]

    return {
        "orderflow_day_orders": one("select count(*) from staging.orders where o_orderdate = ?"),
        "orderflow_day_lines": one("select count(*) from staging.lineitem where l_orderdate = ?"),
        "orderflow_day_lines_reserved": one(
            "select count(*) from fulfillment.allocations where l_orderdate = ? "
            "and status = 'reserved'"
        ),
        "orderflow_day_lines_backordered": one(
            "select count(*) from fulfillment.allocations where l_orderdate = ? "
            "and status = 'backordered'"
        ),
        "orderflow_day_backorder_notices": one(
            "select count(*) from fulfillment.backorder_notices where o_orderdate = ?"
        ),
        "orderflow_day_orders_shipped": one(
            "select count(distinct o_orderkey) from fulfillment.shipments where o_orderdate = ? "
            "and status = 'shipped'"
        ),
        "orderflow_day_orders_refused": one(
            "select count(distinct o_orderkey) from fulfillment.shipments where o_orderdate = ? "
            "and status <> 'shipped'"
        ),
        "orderflow_day_compensations": one(
            "select count(*) from fulfillment.compensations where o_orderdate = ?"
        ),
        "orderflow_day_order_rejects": 0,
        "orderflow_day_reconciliation_discrepancies": 0,
    }


def test_a_day_s_run_pushes_its_figures_and_a_retried_tick_counts_nothing_twice(
    copy_of_staged, dagster_instance, pushgateway
):
    data, instance = copy_of_staged, dagster_instance
    watching = tick(run_success_metrics_sensor, instance, pushgateway)  # starts watching
    assert pushed(pushgateway) == {}
    run = order_to_cash(data, instance, DAY)
    # The marts of the day, as analytics_automation_sensor requests them: a range of one day.
    assert analyse(data, DAY, DAY, instance=instance).success
    after = tick(run_success_metrics_sensor, instance, pushgateway, watching.cursor)
    samples = pushed(pushgateway)

    figures = expected_figures(data, DAY)
    assert figures["orderflow_day_orders"] > 0 and figures["orderflow_day_lines_reserved"] > 0
    for name, expected in figures.items():
        assert value(samples, name, job="orderflow", day=DAY) == expected, name
    assert (
        value(samples, "orderflow_day_orders", asset="staging/orders")
        == figures["orderflow_day_orders"]
    )
    latency = dict(
        ((step, p), seconds)
        for step, p50, p95 in query(
            data, "select step, p50_s, p95_s from analytics.step_latency where day = ?", [DAY]
        )
        for p, seconds in (("0.5", p50), ("0.95", p95))
    )
    assert {step for step, _ in latency} == set(STEPS)
    for (step, quantile), seconds in latency.items():
        pushed_seconds = value(
            samples, "orderflow_day_order_latency_seconds", day=DAY, step=step, quantile=quantile
        )
        assert pushed_seconds == pytest.approx(seconds), (step, quantile)
    # Freshness: the newest day each daily asset holds, and when it was last materialised.
    for asset in ("staging/orders", "fulfillment/reconciliation", "analytics/step_latency"):
        newest = value(samples, "orderflow_asset_newest_day_end_timestamp_seconds", asset=asset)
        assert newest == day_end(DAY), asset
        assert value(
            samples, "orderflow_asset_last_materialization_timestamp_seconds", asset=asset
        ) > day_end(DAY)
    # The run: counted once, its duration, and each step's duration, retries and failure.
    record = instance.get_run_record_by_id(run.run_id)
    assert value(samples, "orderflow_runs_total", job=JOB, status="success") == 1
    assert value(samples, "orderflow_runs_total", job=JOB, status="failure") == 0
    assert value(samples, "orderflow_run_duration_seconds", job=JOB) == pytest.approx(
        record.end_time - record.start_time
    )
    assert value(samples, "orderflow_run_last_success_timestamp_seconds", job=JOB) == pytest.approx(
        record.end_time
    )
    assert labels_of(samples, "orderflow_run_last_failure_timestamp_seconds") == []
    steps = {labels["step"] for labels in labels_of(samples, "orderflow_step_duration_seconds")}
    assert {"staging_orders", "fulfillment__allocations", "fulfillment__reconciliation"} <= steps
    assert value(samples, "orderflow_step_duration_seconds", job=JOB, step="staging_orders") > 0
    assert value(samples, "orderflow_step_retries", job=JOB, step="fulfillment__shipments") == 0
    assert value(samples, "orderflow_step_failed", job=JOB, step="fulfillment__shipments") == 0
    # Every job of the code location has its run counts, zero until it has run.
    assert value(samples, "orderflow_runs_total", job="staging_job", status="failure") == 0
    # Labels stay bounded: one day per asset, steps and quantiles from the code.
    assert {labels["day"] for labels in labels_of(samples, "orderflow_day_orders")} == {DAY}

    # The same tick evaluated again (a retried tick) pushes the same values: nothing counts twice.
    tick(run_success_metrics_sensor, instance, pushgateway, watching.cursor)
    assert pushed(pushgateway) == samples
    tick(run_success_metrics_sensor, instance, pushgateway, after.cursor)  # nothing new
    assert pushed(pushgateway) == samples


@dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
def flaky() -> None:
    """Always fails: its system is down."""
    raise RuntimeError("the system is down")


@dg.asset
def steady() -> None:
    """Always succeeds."""


def test_a_failed_run_counts_once_with_its_retries(sqlite_instance, pushgateway):
    instance = sqlite_instance
    failures = tick(run_failure_metrics_sensor, instance, pushgateway)  # starts watching
    successes = tick(run_success_metrics_sensor, instance, pushgateway)
    failed = dg.materialize([flaky], instance=instance, raise_on_error=False)
    assert not failed.success
    after = tick(run_failure_metrics_sensor, instance, pushgateway, failures.cursor)
    samples = pushed(pushgateway)
    assert value(samples, "orderflow_runs_total", job=ASSET_JOB, status="failure") == 1
    assert value(samples, "orderflow_runs_total", job=ASSET_JOB, status="success") == 0
    assert value(samples, "orderflow_step_retries", job=ASSET_JOB, step="flaky") == 2
    assert value(samples, "orderflow_step_failed", job=ASSET_JOB, step="flaky") == 1
    end = instance.get_run_record_by_id(failed.run_id).end_time
    assert value(
        samples, "orderflow_run_last_failure_timestamp_seconds", job=ASSET_JOB
    ) == pytest.approx(end)
    # A retried tick, and the next one: the failure still counts once.
    tick(run_failure_metrics_sensor, instance, pushgateway, failures.cursor)
    tick(run_failure_metrics_sensor, instance, pushgateway, after.cursor)
    assert pushed(pushgateway) == samples

    # The job's next run succeeds: the counts go on, the step figures are that run's.
    assert dg.materialize([steady], instance=instance).success
    tick(run_success_metrics_sensor, instance, pushgateway, successes.cursor)
    samples = pushed(pushgateway)
    assert value(samples, "orderflow_runs_total", job=ASSET_JOB, status="failure") == 1
    assert value(samples, "orderflow_runs_total", job=ASSET_JOB, status="success") == 1
    assert value(samples, "orderflow_step_failed", job=ASSET_JOB, step="steady") == 0
    assert {labels["step"] for labels in labels_of(samples, "orderflow_step_failed")} == {"steady"}
    assert value(
        samples, "orderflow_run_last_failure_timestamp_seconds", job=ASSET_JOB
    ) == pytest.approx(end)


@dg.asset(
    key=ORDERS_KEY,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def days_staged(context):
    """Stands for staging/orders: `records_staged` counts the days of its run's window."""
    return dg.MaterializeResult(metadata={"records_staged": len(context.partition_keys)})


def test_each_asset_reports_its_newest_day_and_only_a_run_of_that_day_alone(
    sqlite_instance, pushgateway
):
    instance = sqlite_instance
    watching = tick(run_success_metrics_sensor, instance, pushgateway)

    def after(**run) -> tuple[set[tuple[str, float]], float]:
        """(day, figure) of orderflow_day_orders, and the asset's newest day's end, after a run."""
        assert dg.materialize([days_staged], instance=instance, **run).success
        tick(run_success_metrics_sensor, instance, pushgateway, watching.cursor)
        samples = pushed(pushgateway)
        figures = {
            (labels["day"], value(samples, "orderflow_day_orders", day=labels["day"]))
            for labels in labels_of(samples, "orderflow_day_orders")
        }
        newest = value(
            samples, "orderflow_asset_newest_day_end_timestamp_seconds", asset="staging/orders"
        )
        return figures, newest

    assert after(partition_key=DAY) == ({(DAY, 1)}, day_end(DAY))
    # A backfill's run over both days records its range's figures on each: none for the day.
    assert after(tags={RANGE_START_TAG: EARLIER, RANGE_END_TAG: DAY}) == (set(), day_end(DAY))
    # A run of an earlier day (a late file) leaves the newest day in place.
    assert after(partition_key=EARLIER) == (set(), day_end(DAY))
    assert after(partition_key=DAY) == ({(DAY, 1)}, day_end(DAY))
    # The analytics refresh's one-day range is a run of that day alone.
    assert after(tags={RANGE_START_TAG: DAY, RANGE_END_TAG: DAY}) == ({(DAY, 1)}, day_end(DAY))


def test_without_a_pushgateway_the_sensors_skip_saying_how_to_turn_metrics_on(
    sqlite_instance, monkeypatch
):
    monkeypatch.delenv(PUSHGATEWAY_URL_ENV, raising=False)
    watching = tick(run_success_metrics_sensor, sqlite_instance, None)
    assert dg.materialize([steady], instance=sqlite_instance).success
    result = tick(run_success_metrics_sensor, sqlite_instance, None, watching.cursor)
    assert not result.run_requests
    assert "Metrics are off" in result.skip_message
    assert PUSHGATEWAY_URL_ENV in result.skip_message
    assert "make dev METRICS=1" in result.skip_message


def test_a_pushgateway_that_is_down_fails_the_tick_saying_so(sqlite_instance):
    url = f"http://127.0.0.1:{free_port()}"
    watching = tick(run_success_metrics_sensor, sqlite_instance, url)
    assert dg.materialize([steady], instance=sqlite_instance).success
    result = tick(run_success_metrics_sensor, sqlite_instance, url, watching.cursor)
    (reaction,) = result.dagster_run_reactions
    assert f"The Pushgateway at {url} did not take the metrics" in reaction.error.to_string()


def test_the_code_location_reports_metrics_through_its_resource():
    sensors = {sensor.name for sensor in defs.sensors}
    assert {"run_success_metrics_sensor", "run_failure_metrics_sensor"} <= sensors
    assert isinstance(build_resources()["metrics"], PushgatewayResource)


README = PROJECT_ROOT / "README.md"


def readme_queries() -> list[str]:
    """The PromQL queries the README's "Metrics" section shows."""
    section = README.read_text().split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```promql\n(.*?)\n```", section, flags=re.S)


@pytest.mark.slow
def test_prometheus_finds_a_day_s_series_with_the_readme_s_queries(
    copy_of_staged, sqlite_instance, metrics_servers
):
    data, instance, servers = copy_of_staged, sqlite_instance, metrics_servers
    prometheus = servers.prometheus_url
    successes = tick(run_success_metrics_sensor, instance, servers.pushgateway_url)
    failures = tick(run_failure_metrics_sensor, instance, servers.pushgateway_url)
    order_to_cash(data, instance, DAY)
    assert analyse(data, DAY, DAY, instance=instance).success
    tick(run_success_metrics_sensor, instance, servers.pushgateway_url, successes.cursor)

    figures = expected_figures(data, DAY)
    for name in figures:
        (series,) = scraped(prometheus, name)
        assert series["metric"]["day"] == DAY
        assert float(series["value"][1]) == figures[name], name
    (runs,) = scraped(prometheus, f'orderflow_runs_total{{job="{JOB}",status="success"}}')
    assert float(runs["value"][1]) == 1
    latency = scraped(prometheus, 'orderflow_day_order_latency_seconds{quantile="0.95"}')
    assert {series["metric"]["step"] for series in latency} == set(STEPS)

    # Then a run fails, once Prometheus has seen its job without failures.
    scraped(prometheus, f'orderflow_runs_total{{job="{ASSET_JOB}",status="failure"}} == 0')
    assert not dg.materialize([flaky], instance=instance, raise_on_error=False).success
    tick(run_failure_metrics_sensor, instance, servers.pushgateway_url, failures.cursor)

    # Every query the README shows answers, and these with the figures the warehouse holds.
    queries = readme_queries()
    assert len(queries) >= 4
    answers = {promql: scraped(prometheus, promql) for promql in queries}
    (backorder_rate,) = next(a for q, a in answers.items() if "lines_backordered" in q)
    expected = figures["orderflow_day_lines_backordered"] / figures["orderflow_day_lines"]
    assert float(backorder_rate["value"][1]) == pytest.approx(expected)
    p95 = next(a for q, a in answers.items() if "latency" in q)
    assert {series["metric"]["step"] for series in p95} == set(STEPS)
    freshness = next(a for q, a in answers.items() if "newest_day_end" in q)
    assert all(float(series["value"][1]) > 0 for series in freshness)
    failed_runs = next(q for q in queries if 'status="failure"' in q)

    def failures_by_job(result: list[dict]) -> dict[str, float]:
        return {series["metric"]["job"]: float(series["value"][1]) for series in result}

    counted = failures_by_job(
        scraped(prometheus, failed_runs, until=lambda r: failures_by_job(r).get(ASSET_JOB, 0) >= 1)
    )
    assert counted[JOB] == 0
