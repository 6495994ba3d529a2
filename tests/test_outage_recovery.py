"""The README's recovery recipe on the kind of instance users run, with real Dagster runs.

Outage on (`orderflow-sim outage SYSTEM --down`) -> a day's run retries its step, fails, and an
admin is alerted -> outage off -> re-execution from failure succeeds without editing any config
(the UI cannot edit it) -> every reservation, shipment, e-mail and ledger entry exists exactly once,
as many as a clean run of the same day makes.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from foundation import settings
from resources.notifier import MaildirNotifier
from sensors.alerts import run_failure_alert_sensor
from tests.helpers import make_data_dir, query

DAY = "2021-03-10"
# The steps that call the system that is down (the day has back-orders and refused shipments).
FAILING_STEPS = {
    "carrier": {"fulfillment__shipments"},
    "notifier": {
        "fulfillment__backorder_notices",
        "fulfillment__compensations",
        "fulfillment__shipment_notifications",
    },
}
WAREHOUSE_TABLES = (
    "allocations",
    "invoices",
    "shipments",
    "shipment_notifications",
    "ledger_postings",
)


@pytest.fixture
def instance(dagster_instance):
    """A Dagster instance as `make dev` runs it (tests/conftest.py)."""
    return dagster_instance


def job_for(data: Path) -> dg.ReconstructableJob:
    return dg.build_reconstructable_job(
        "tests.helpers", "order_to_cash_for", reconstructable_kwargs={"data_dir": str(data)}
    )


def run_day(data: Path, instance: dg.DagsterInstance) -> dg.JobExecutionResult:
    with dg.execute_job(job_for(data), instance, tags={"dagster/partition": DAY}) as result:
        return result


def outage(data: Path, system: str, switch: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("orderflow-sim")), "outage", system, switch],
        env={**os.environ, "ORDERFLOW_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def effects(data: Path) -> dict[str, int]:
    """What the outside systems and the warehouse hold for the day's run."""
    systems = data / "systems"

    def count(database: str, table: str) -> int:
        with sqlite3.connect(systems / database) as con:
            return con.execute(f"select count(*) from {table}").fetchone()[0]

    customer_mail = [
        path for path in (data / "outbox").glob(".*/new/*") if path.parent.parent.name != ".admin"
    ]
    return {
        "reservations": count("inventory.sqlite", "reservations"),
        "shipments": count("carrier.sqlite", "shipments"),
        "shipment lines": count("carrier.sqlite", "shipment_lines"),
        "ledger entries": count("accounting.sqlite", "journal_entries"),
        "ledger lines": count("accounting.sqlite", "journal_lines"),
        "customer e-mails": len(customer_mail),
        **{
            f"warehouse {table}": query(data, f"select count(*) from fulfillment.{table}")[0][0]
            for table in WAREHOUSE_TABLES
        },
    }


@pytest.fixture
def clean_effects(tmp_path, store_dir, instance, monkeypatch) -> dict[str, int]:
    data = make_data_dir(tmp_path / "clean", store_dir)
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(data))
    assert run_day(data, instance).success
    found = effects(data)
    assert found["shipments"] > 0 and found["customer e-mails"] > 0, found
    return found


@pytest.mark.parametrize("system", ["carrier", "notifier"])
def test_outage_then_reexecute_from_failure_completes_exactly_once(
    system, tmp_path, store_dir, instance, clean_effects, monkeypatch
):
    data = make_data_dir(tmp_path / "data", store_dir)
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(data))
    outage(data, system, "--down")

    failed = run_day(data, instance)
    assert not failed.success
    steps = FAILING_STEPS[system]
    retries = instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert Counter(e.step_key for e in retries) == dict.fromkeys(steps, settings.retry_max())
    failures = instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert {e.step_key for e in failures} == steps
    for failure in failures:
        message = failure.dagster_event.event_specific_data.error.message
        assert f"orderflow-sim outage {system} --up" in message

    # The run-failure sensor alerts an admin, even when the notifier is the system that is down.
    (run_failure,) = instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=run_failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(failed.run_id),
        resources={"notifier": MaildirNotifier(outbox_dir=str(data / "outbox"))},
    ).for_run_failure()
    run_failure_alert_sensor(context)
    (alert,) = [p.read_text() for p in (data / "outbox" / ".admin" / "new").iterdir()]
    assert f"{system} is down" in alert and failed.run_id in alert

    outage(data, system, "--up")
    options = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
    # The UI's re-execution carries the failed run's tags (its partition); execute_job takes them.
    with dg.execute_job(
        job_for(data), instance, tags=failed.dagster_run.tags, reexecution_options=options
    ) as recovered:
        assert recovered.success
        rerun = {
            e.step_key
            for e in instance.all_logs(recovered.run_id, of_type=dg.DagsterEventType.STEP_START)
        }
    done_before = {
        e.step_key
        for e in instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
    }
    assert steps <= rerun and not rerun & done_before
    assert effects(data) == clean_effects
