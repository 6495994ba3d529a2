"""End to end: `dagster dev` on a free loopback port serves the code location; a partition run
launched through GraphQL succeeds and lands in the warehouse."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.helpers import make_data_dir, query

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
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ORDERFLOW_DATA_DIR": str(data),
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
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, (tmp_path / "dagster-dev.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail("dagster dev did not answer within 120 s")
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


def launch_and_wait(url: str, job: str, partition: str) -> str:
    """Launch a job's partition through GraphQL and poll it to a final status."""
    params = {
        "selector": {
            "repositoryLocationName": "orderflow",
            "repositoryName": "__repository__",
            "jobName": job,
        },
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
    run_id = launched["run"]["runId"]

    status, deadline = None, time.monotonic() + 180
    while time.monotonic() < deadline:
        status = graphql(url, STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    return status


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
