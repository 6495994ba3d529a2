"""Schedule, failure and check alerts, reconciliation: triggers and the error path."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from datetime import UTC, datetime

import dagster as dg

from foundation.settings import PROJECT_ROOT
from orchestration_defs.definitions import defs
from resources.faults import FaultInjection
from resources.notifier import MaildirNotifier
from sensors.alerts import blocking_check_alert_sensor, run_failure_alert_sensor
from tests.helpers import analyse, check_outcomes, fulfill, query, resources_for

DAY = "2021-01-06"  # inside the session's staged and fulfilled weeks


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


def tick(sensor: dg.SensorDefinition, instance, outbox, cursor: str | None = None) -> str | None:
    """Evaluate a sensor as the daemon does, on the given instance; the cursor it leaves."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"notifier": MaildirNotifier(outbox_dir=str(outbox))},
    )
    return sensor.evaluate_tick(context).cursor


def test_a_failed_run_alerts_an_admin_with_job_partition_step_error_and_link(
    copy_of_staged, tmp_path, dagster_instance, monkeypatch
):
    monkeypatch.setenv("ORDERFLOW_UI_URL", "http://ui.example:4321/")
    outbox = tmp_path / "outbox"
    cursor = tick(run_failure_alert_sensor, dagster_instance, outbox)  # starts watching
    result = fulfill(
        copy_of_staged,
        DAY,
        faults={"inventory": FaultInjection(down=True)},
        raise_on_error=False,
        instance=dagster_instance,
    )
    assert not result.success
    after = tick(run_failure_alert_sensor, dagster_instance, outbox, cursor)
    tick(run_failure_alert_sensor, dagster_instance, outbox, cursor)  # a retried tick alerts once
    tick(run_failure_alert_sensor, dagster_instance, outbox, after)  # nothing new
    (alert,) = admin_mail(outbox)
    assert "Subject: [orderflow] Run failed: __ephemeral_asset_job__ 2021-01-06" in alert
    assert "fulfillment__inventory_stock" in alert
    assert "inventory is down" in alert
    assert f"Open the run: http://ui.example:4321/runs/{result.run_id}\n" in alert


def test_make_dev_points_alert_links_at_the_ui_it_serves():
    # The Makefile's defaults, whatever the shell running the tests has set.
    env = {k: v for k, v in os.environ.items() if k not in ("ORDERFLOW_UI_URL", "INSTANCE")}

    def dev_command(*args: str, **extra: str) -> str:
        """The line `make dev` would run `dagster dev` with (make -n: nothing is run)."""
        done = subprocess.run(
            ["make", "-n", "dev", *args],
            cwd=PROJECT_ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        )
        commands = done.stdout.replace("\\\n", " ").splitlines()
        (line,) = [line for line in commands if " dev -w " in line]
        return line

    line = dev_command()
    assert 'ORDERFLOW_UI_URL="http://127.0.0.1:3000"' in line
    # On the local PostgreSQL instance, which passes the environment on to dagster dev.
    assert " -m deploy.local_postgres --home " in line
    line = dev_command("HOST=dagster.lan", "PORT=4321")
    assert 'ORDERFLOW_UI_URL="http://dagster.lan:4321"' in line
    assert "-h dagster.lan -p 4321" in line
    # Served on every interface: the links name this machine's loopback, which a browser can open.
    line = dev_command("HOST=0.0.0.0", "PORT=4321")
    assert 'ORDERFLOW_UI_URL="http://127.0.0.1:4321"' in line
    assert "-h 0.0.0.0 -p 4321" in line
    # Behind a proxy the public address is set by hand and wins.
    line = dev_command("PORT=4321", ORDERFLOW_UI_URL="https://dagster.example.com")
    assert 'ORDERFLOW_UI_URL="https://dagster.example.com"' in line
    # The SQLite instance gets the same links.
    line = dev_command("INSTANCE=sqlite", "PORT=4321")
    assert 'ORDERFLOW_UI_URL="http://127.0.0.1:4321"' in line
    assert "local_postgres" not in line


def test_a_failed_blocking_check_alerts_an_admin(copy_of_fulfilled, tmp_path, dagster_instance):
    data, outbox = copy_of_fulfilled, tmp_path / "outbox"
    cursor = tick(blocking_check_alert_sensor, dagster_instance, outbox)  # starts watching
    assert admin_mail(outbox) == []
    query(
        data,
        "insert into fulfillment.compensations (o_orderkey, o_orderdate, net_cents) "
        "values (-1, ?, 999)",
        [DAY],
    )
    result = analyse(data, DAY, raise_on_error=False, instance=dagster_instance)
    assert not result.success
    after = tick(blocking_check_alert_sensor, dagster_instance, outbox, cursor)
    tick(blocking_check_alert_sensor, dagster_instance, outbox, cursor)  # a retried tick
    tick(blocking_check_alert_sensor, dagster_instance, outbox, after)  # nothing new
    (alert,) = admin_mail(outbox)
    assert "Blocking check failed: analytics/daily_sales revenue_agrees_with_fulfillment" in alert
    assert DAY in alert
    assert f"http://127.0.0.1:3000/runs/{result.run_id}" in alert


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
    # The rate thresholds of rules.yaml alert on nothing: those checks pass throughout.
    thresholds = {
        "reconciliation.backorder_rate_within_threshold": True,
        "reconciliation.on_time_rate_within_threshold": True,
    }
    assert result.success
    assert check_outcomes(result) == {"reconciliation.systems_reconcile": True, **thresholds}
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
    assert check_outcomes(result) == {"reconciliation.systems_reconcile": False, **thresholds}
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


def test_a_fault_scenario_is_set_from_run_config_alone(copy_of_staged, monkeypatch):
    # What a user types in the launchpad: only the faults, no database URL.
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(copy_of_staged))
    result = fulfill(
        copy_of_staged,
        DAY,
        run_config={"resources": {"carrier": {"config": {"faults": {"outage_calls": 1}}}}},
    )
    assert result.success
    retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == ["fulfillment__shipments"]
    assert (copy_of_staged / "systems" / "carrier.sqlite").is_file()
