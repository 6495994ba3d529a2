"""End to end: `dagster dev`, started as `make dev` starts it (tests/dagster_dev.py), serves the
code location; a partition run launched through GraphQL succeeds and lands in the warehouse."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.dagster_dev import (
    FINISHED,
    LOCATION,
    graphql,
    launch,
    poll,
    running,
    start_sensor,
    wait_for_run,
)
from tests.helpers import fulfill, load_catalog, make_data_dir, query, stage

DAY = "2020-01-02"


@pytest.mark.slow
def test_order_to_cash_for_a_day_launched_through_graphql_succeeds(dagster_dev):
    url, data = dagster_dev.url, dagster_dev.data
    staged = launch(url, "staging_job", DAY)
    assert wait_for_run(url, staged) == "SUCCESS"
    assert query(data, "select count(*) from staging.orders where o_orderdate = ?", [DAY])[0][0] > 0
    fulfilled = launch(url, "fulfillment_job", DAY)
    assert wait_for_run(url, fulfilled) == "SUCCESS"
    invoiced = query(
        data, "select count(*) from fulfillment.invoices where o_orderdate = ?", [DAY]
    )[0][0]
    assert invoiced > 0
    shipped = query(data, "select count(*) from fulfillment.shipment_notifications")[0][0]
    assert len(list((data / "outbox" / f".{DAY}" / "new").iterdir())) >= shipped > 0
    assert (data / "systems" / "accounting.sqlite").is_file()
    # The runs and their events are in the test's own database on `make dev`'s server.
    events = dagster_dev.rows(
        "select asset_key from event_logs where run_id = %s and dagster_event_type = %s",
        [staged, "ASSET_MATERIALIZATION"],
    )
    assert {"orders", "lineitem", "order_rejects"} <= {json.loads(k)[-1] for (k,) in events}
    runs = {run_id for (run_id,) in dagster_dev.rows("select run_id from runs")}
    assert {staged, fulfilled} <= runs


SENSOR_RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


@pytest.fixture
def dagster_dev_own_landing(tmp_path, store_dir, local_postgres, _instance_template):
    """dagster dev over a private copy of the landing zone, so that a test may drop files in it."""
    own = tmp_path / "own-store"
    shutil.copytree(store_dir, own, symlinks=True)
    with running(tmp_path, own, local_postgres, _instance_template) as dev:
        yield dev.url, dev.data, own


@pytest.mark.slow
def test_a_dropped_batch_leads_to_a_sensor_launched_run_that_succeeds(dagster_dev_own_landing):
    url, data, store = dagster_dev_own_landing
    start_sensor(url, "landing_zone_sensor")
    # The order system drops a new batch for today (today's partition is open).
    today = datetime.now(UTC).date().isoformat()
    sim = Path(sys.executable).parent / "orderflow-sim"
    subprocess.run(
        [
            str(sim),
            "live",
            "--interval",
            "0",
            "--until-count",
            "1",
            "--data-dir",
            str(store),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    tags = [{"key": "dagster/sensor_name", "value": "landing_zone_sensor"}]

    def finished_for_today() -> list[dict]:
        runs = graphql(url, SENSOR_RUNS, {"tags": tags})["runsOrError"]["results"]
        today_tag = {"key": "dagster/partition", "value": today}
        return [r for r in runs if today_tag in r["tags"] and r["status"] in FINISHED]

    mine = poll("the sensor's run for today to finish", finished_for_today, 300)
    assert [r["status"] for r in mine] == ["SUCCESS"], mine
    staged = query(data, "select count(*) from staging.orders where o_orderdate = ?", [today])
    assert staged[0][0] > 0
    assert (
        query(data, "select count(*) from fulfillment.invoices where o_orderdate = ?", [today])[0][
            0
        ]
        > 0
    )


LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message stepKey } } }
  }
}
"""


ALERT_SENSORS = ("run_failure_alert_sensor", "blocking_check_alert_sensor")
WORKER_STARTED = re.compile(r"Started process for run \(pid: (\d+)\)\.")


def run_events(url: str, run_id: str) -> list[dict]:
    return graphql(url, LOGS, {"runId": run_id})["logsForRun"]["events"]


def worker_pid(events: list[dict]) -> int | None:
    """The run worker's pid, from the event the code server logs when it starts the worker."""
    for event in events:
        if match := WORKER_STARTED.fullmatch(event.get("message") or ""):
            return int(match[1])
    return None


TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 100) { status error { message } } } }
  }
}
"""


def sensor_ticks(url: str, sensor: str) -> list[dict]:
    selector = {**LOCATION, "sensorName": sensor}
    found = graphql(url, TICKS, {"selector": selector})["sensorOrError"]
    return found["sensorState"]["ticks"]


def admin_alerts(data: Path) -> list[str]:
    folder = data / "outbox" / ".admin" / "new"
    return [p.read_text() for p in folder.iterdir()] if folder.is_dir() else []


def outside_systems(data: Path, day: str) -> dict:
    """What the outside systems hold for a day (and the stock they reserved from)."""
    systems = data / "systems"

    def rows(database: str, sql: str, *params) -> list[tuple]:
        with closing(sqlite3.connect(systems / database)) as con:
            return sorted(con.execute(sql, params).fetchall())

    return {
        "reservations": rows(
            "inventory.sqlite", "select * from reservations where order_day = ?", day
        ),
        "stock": rows("inventory.sqlite", "select * from stock"),
        "shipments": rows("carrier.sqlite", "select * from shipments where order_day = ?", day),
        "shipment lines": rows(
            "carrier.sqlite", "select * from shipment_lines where order_day = ?", day
        ),
        "journal entries": rows(
            "accounting.sqlite", "select * from journal_entries where entry_day = ?", day
        ),
        "journal lines": rows(
            "accounting.sqlite", "select * from journal_lines where entry_day = ?", day
        ),
        "mails": {p.name: p.read_bytes() for p in (data / "outbox" / f".{day}" / "new").iterdir()},
    }


@pytest.mark.slow
def test_a_run_killed_mid_step_does_not_block_the_next_run(dagster_dev, tmp_path, store_dir):
    url, data = dagster_dev.url, dagster_dev.data
    # A slow carrier keeps the shipments step (holding its pool slot) busy while it is killed.
    slow = {"resources": {"carrier": {"config": {"faults": {"slow_seconds": 120}}}}}
    killed = launch(url, "order_to_cash_job", DAY, slow)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        events = run_events(url, killed)
        pid = worker_pid(events)
        started = {e["stepKey"] for e in events if e["__typename"] == "ExecutionStepStartEvent"}
        if pid and "fulfillment__shipments" in started:
            break
        time.sleep(1)
    else:
        pytest.fail(f"the shipments step did not start: {events}")
    # The run worker of this test's dagster dev, nothing else.
    home = f"DAGSTER_HOME={dagster_dev.home}".encode()
    assert home in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    rerun = launch(url, "order_to_cash_job", DAY)
    assert wait_for_run(url, killed, timeout=120) == "FAILURE"
    failed_after = time.monotonic() - killed_at
    assert wait_for_run(url, rerun, timeout=300) == "SUCCESS"
    recovered_after = time.monotonic() - killed_at
    print(
        f"\nrun worker killed mid-step: its run failed after {failed_after:.0f} s, "
        f"the next run of the day succeeded {recovered_after:.0f} s after the kill"
    )

    # The alert sensors tick on this instance without error (twice at least: a tick after the
    # first reads from its cursor), and the admin hears of the killed run with a link to it.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        alerted = [a for a in admin_alerts(data) if f"Run: {killed}" in a]
        ticks = {s: sensor_ticks(url, s) for s in ALERT_SENSORS}
        if alerted and all(len(t) >= 2 for t in ticks.values()):
            break
        time.sleep(2)
    assert [t for s in ALERT_SENSORS for t in ticks[s] if t["status"] == "FAILURE"] == []
    assert all(len(t) >= 2 for t in ticks.values()), ticks
    (alert,) = alerted
    assert f"Open the run: {url}/runs/{killed}" in alert

    clean = make_data_dir(tmp_path / "clean", store_dir)
    assert load_catalog(clean).success
    assert stage(clean, DAY).success
    assert fulfill(clean, DAY).success
    assert outside_systems(data, DAY) == outside_systems(clean, DAY)
