"""Schedule, failure and check alerts, reconciliation: triggers and the error path."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import dagster as dg

from orchestration_defs.definitions import defs
from resources.faults import FaultInjection
from resources.notifier import MaildirNotifier
from sensors.alerts import blocking_check_alert_sensor, run_failure_alert_sensor
from tests.helpers import analyse, check_outcomes, fulfill, query, resources_for

DAY = "2021-03-10"


def admin_mail(outbox) -> list[str]:
    return [p.read_text() for p in sorted((outbox / ".admin" / "new").glob("*"))]


def test_schedule_runs_yesterdays_partition_after_midnight_utc():
    schedule = defs.resolve_schedule_def("order_to_cash_schedule")
    assert schedule.cron_schedule == "15 0 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "order_to_cash_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 25, 0, 15, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.run_key == "order_to_cash_schedule:2026-11-24"
    assert request.partition_key == "2026-11-24"
    # A tick just after a month and a year boundary targets the last day before it.
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2027, 1, 1, 0, 15, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    assert schedule.evaluate_tick(context).run_requests[0].partition_key == "2026-12-31"


def test_a_failed_run_alerts_an_admin_with_job_partition_step_error_and_link(
    copy_of_history, tmp_path
):
    instance = dg.DagsterInstance.ephemeral()
    result = fulfill(
        copy_of_history,
        DAY,
        faults={"inventory": FaultInjection(down=True)},
        raise_on_error=False,
        instance=instance,
    )
    assert not result.success
    (entry,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    failure = entry.dagster_event
    notifier = MaildirNotifier(outbox_dir=str(tmp_path / "outbox"))
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"notifier": notifier},
    ).for_run_failure()
    run_failure_alert_sensor(context)
    run_failure_alert_sensor(context)  # a repeated tick alerts once
    (alert,) = admin_mail(tmp_path / "outbox")
    assert "Subject: [orderflow] Run failed: __ephemeral_asset_job__ 2021-03-10" in alert
    assert "fulfillment__inventory_stock" in alert
    assert "inventory is down" in alert
    assert f"http://127.0.0.1:3000/runs/{result.run_id}" in alert


def test_a_failed_blocking_check_alerts_an_admin(copy_of_fulfilled, tmp_path):
    data = copy_of_fulfilled
    instance = dg.DagsterInstance.ephemeral()
    notifier = MaildirNotifier(outbox_dir=str(tmp_path / "outbox"))
    context = dg.build_sensor_context(instance=instance, resources={"notifier": notifier})
    # The first tick only starts watching.
    assert isinstance(blocking_check_alert_sensor(context), dg.SkipReason)
    cursor = context.cursor
    query(
        data,
        "insert into fulfillment.compensations (o_orderkey, o_orderdate, net_cents) "
        "values (-1, ?, 999)",
        [DAY],
    )
    assert not analyse(data, DAY, raise_on_error=False, instance=instance).success
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"notifier": notifier}
    )
    blocking_check_alert_sensor(context)
    alerts = admin_mail(tmp_path / "outbox")
    assert len(alerts) == 1
    assert (
        "Blocking check failed: analytics/daily_sales revenue_agrees_with_fulfillment" in alerts[0]
    )
    assert DAY in alerts[0]
    # The next tick has nothing new.
    again = dg.build_sensor_context(
        instance=instance, cursor=context.cursor, resources={"notifier": notifier}
    )
    assert isinstance(blocking_check_alert_sensor(again), dg.SkipReason)


def reconcile(data, day, **kwargs):
    from assets.fulfillment.reconciliation import reconciliation
    from assets.staging.catalog import staging_catalog
    from assets.staging.orders import staging_orders
    from orchestration_defs.definitions import ANALYTICS_ASSETS, FULFILLMENT_ASSETS

    return dg.materialize(
        [staging_catalog, staging_orders, *FULFILLMENT_ASSETS, *ANALYTICS_ASSETS],
        selection=[reconciliation],
        resources=resources_for(data),
        partition_key=day,
        **kwargs,
    )


def test_reconciliation_agrees_then_finds_an_injected_discrepancy(copy_of_fulfilled):
    data = copy_of_fulfilled
    result = reconcile(data, DAY)
    assert result.success and check_outcomes(result) == {"reconciliation.systems_reconcile": True}
    assert query(data, "select count(*), bool_and(matches) from fulfillment.reconciliation")[0][1]
    # Someone deletes a reservation in the inventory system and a journal line in the ledger.
    with sqlite3.connect(data / "systems" / "inventory.sqlite") as con:
        order, line = con.execute(
            "select order_key, line_number from reservations where order_day = ? limit 1", [DAY]
        ).fetchone()
        con.execute(
            "delete from reservations where order_key = ? and line_number = ?", [order, line]
        )
    with sqlite3.connect(data / "systems" / "accounting.sqlite") as con:
        entry, number = con.execute(
            "select entry_key, line_number from journal_lines "
            "where entry_day = ? and account = 'revenue' limit 1",
            [DAY],
        ).fetchone()
        con.execute(
            "delete from journal_lines where entry_day = ? and entry_key = ? and line_number = ?",
            [DAY, entry, number],
        )
    result = reconcile(data, DAY)
    assert check_outcomes(result) == {"reconciliation.systems_reconcile": False}
    differing = query(
        data,
        "select system, measure from fulfillment.reconciliation where not matches order by 1, 2",
    )
    systems = {system for system, _ in differing}
    assert systems == {"inventory", "accounting"}
    alerts = [p.read_text() for p in (data / "outbox" / ".admin" / "new").glob("*")]
    assert any("Reconciliation found" in a and DAY in a for a in alerts)
    # Re-running with the same discrepancies does not alert again.
    reconcile(data, DAY)
    assert len(list((data / "outbox" / ".admin" / "new").glob("*"))) == len(alerts)


def test_a_fault_scenario_is_set_from_run_config_alone(copy_of_history, monkeypatch):
    # What a user types in the launchpad: only the faults, no database URL.
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(copy_of_history))
    result = fulfill(
        copy_of_history,
        DAY,
        run_config={"resources": {"carrier": {"config": {"faults": {"outage_calls": 1}}}}},
    )
    assert result.success
    retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == ["fulfillment__shipments"]
    assert (copy_of_history / "systems" / "carrier.sqlite").is_file()
