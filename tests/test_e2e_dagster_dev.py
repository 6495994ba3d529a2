"""End to end: `dagster dev` on a free loopback port serves the code location; a partition run
launched through GraphQL succeeds and lands in the warehouse."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.helpers import dagster_home, fulfill, load_catalog, make_data_dir, query, stage

ROOT = Path(__file__).resolve().parent.parent
DAY = "2020-01-02"

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path, store_dir):
    yield from _dagster_dev(tmp_path, store_dir)


def _dagster_dev(tmp_path, store_dir):
    """Start `dagster dev` on a free loopback port over a new data dir; stop it afterwards."""
    data = make_data_dir(tmp_path / "data", store_dir)
    home = dagster_home(tmp_path / "dagster_home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ORDERFLOW_DATA_DIR": str(data),
        "ORDERFLOW_UI_URL": url,  # as `make dev` sets it
        "TMPDIR": str(tmp_path),
    }
    dagster = Path(sys.executable).parent / "dagster"
    log = (tmp_path / "dagster-dev.log").open("w")
    process = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so that it stops with its children
    )
    try:
        # Ready in 5-50 s, more on a loaded machine.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, (tmp_path / "dagster-dev.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail("dagster dev did not answer within 180 s")
        yield url, data
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


def graphql(url: str, query_text: str, variables: dict) -> dict:
    response = requests.post(
        f"{url}/graphql", json={"query": query_text, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def launch(url: str, job: str, partition: str, run_config: dict | None = None) -> str:
    """Launch a job's partition through GraphQL; its run id."""
    params = {
        "selector": {
            "repositoryLocationName": "orderflow",
            "repositoryName": "__repository__",
            "jobName": job,
        },
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    # The code server may still be loading the location right after the webserver answers.
    deadline = time.monotonic() + 60
    while True:
        launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
        if launched["__typename"] == "LaunchRunSuccess" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_for(url: str, run_id: str, timeout: float = 180) -> str:
    """Poll a run to a final status (or give its status after `timeout` seconds)."""
    status, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = graphql(url, STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    return status


def launch_and_wait(url: str, job: str, partition: str) -> str:
    """Launch a job's partition through GraphQL and poll it to a final status."""
    return wait_for(url, launch(url, job, partition))


@pytest.mark.slow
def test_order_to_cash_for_a_day_launched_through_graphql_succeeds(dagster_dev):
    url, data = dagster_dev
    assert launch_and_wait(url, "staging_job", DAY) == "SUCCESS"
    assert query(data, "select count(*) from staging.orders where o_orderdate = ?", [DAY])[0][0] > 0
    assert launch_and_wait(url, "fulfillment_job", DAY) == "SUCCESS"
    invoiced = query(
        data, "select count(*) from fulfillment.invoices where o_orderdate = ?", [DAY]
    )[0][0]
    assert invoiced > 0
    shipped = query(data, "select count(*) from fulfillment.shipment_notifications")[0][0]
    assert len(list((data / "outbox" / f".{DAY}" / "new").iterdir())) >= shipped > 0
    assert (data / "systems" / "accounting.sqlite").is_file()


START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""
SENSOR_RUNS = """
query Runs($tags: [ExecutionTag!]) {
  runsOrError(filter: {tags: $tags}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


@pytest.fixture
def dagster_dev_own_landing(tmp_path, store_dir, monkeypatch):
    """dagster dev over a private copy of the landing zone, so that a test may drop files in it."""
    own = tmp_path / "own-store"
    shutil.copytree(store_dir, own, symlinks=True)
    for url, data in _dagster_dev(tmp_path, own):
        yield url, data, own


@pytest.mark.slow
def test_a_dropped_batch_leads_to_a_sensor_launched_run_that_succeeds(dagster_dev_own_landing):
    url, data, store = dagster_dev_own_landing
    selector = {
        "repositoryLocationName": "orderflow",
        "repositoryName": "__repository__",
        "sensorName": "landing_zone_sensor",
    }
    deadline = time.monotonic() + 60
    while True:
        started = graphql(url, START_SENSOR, {"selector": selector})["startSensor"]
        if started["__typename"] == "Sensor" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert started["__typename"] == "Sensor", started
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
    runs, deadline = [], time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = graphql(url, SENSOR_RUNS, {"tags": tags})["runsOrError"]["results"]
        mine = [
            r
            for r in runs
            if {"key": "dagster/partition", "value": today} in r["tags"]
            and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")
        ]
        if mine:
            break
        time.sleep(2)
    assert mine and mine[0]["status"] == "SUCCESS", runs
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
    selector = {
        "repositoryLocationName": "orderflow",
        "repositoryName": "__repository__",
        "sensorName": sensor,
    }
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
    url, data = dagster_dev
    # A slow carrier keeps the shipments step (a "duckdb" pool holder) busy while it is killed.
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
    home = f"DAGSTER_HOME={data.parent / 'dagster_home'}".encode()
    assert home in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    rerun = launch(url, "order_to_cash_job", DAY)
    assert wait_for(url, killed, timeout=120) == "FAILURE"
    failed_after = time.monotonic() - killed_at
    assert wait_for(url, rerun, timeout=300) == "SUCCESS"
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
