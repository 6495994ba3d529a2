"""`dagster dev` in tests, started as `make dev` starts it, and the GraphQL calls the UI makes.

`running(...)` gives `dagster dev` what `python -m deploy.local_postgres -- dagster dev` gives it:
a DAGSTER_HOME holding dagster.postgres.yaml and `LocalPostgres.environment()`, with
DAGSTER_PG_URL naming a database of its own, copied from the session's template (Dagster's
schema). The session's server is shared; the database is dropped when `dagster dev` stops.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from deploy.dagster_dev import free_port, graphql, start, stop, wait_until_loaded
from deploy.local_postgres import LocalPostgres
from foundation.settings import PROJECT_ROOT
from tests.helpers import dagster_home, make_data_dir
from tests.postgres import drop_database, new_database

LOCATION = {"repositoryLocationName": "orderflow", "repositoryName": "__repository__"}
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
# What `make dev` opens its instance with (dagster.postgres.yaml): the stock classes would pass
# a test that only asked for PostgreSQL.
EVENT_LOG = {"module": "deploy.instance_storage", "class": "OrderflowPostgresEventLogStorage"}

INSTANCE = "query { instance { info } }"
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
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""

T = TypeVar("T")


@dataclass(frozen=True)
class DagsterDev:
    """A running `dagster dev`: where it answers and where it keeps things."""

    url: str
    data: Path  # ORDERFLOW_DATA_DIR: warehouse, systems, outbox
    home: Path  # DAGSTER_HOME
    log: Path  # its stdout and stderr
    server: LocalPostgres
    database: str  # the instance's database on `server`

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        """All rows of a query on the instance's database."""
        connection = self.server.connect(self.database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params or [])
                return cursor.fetchall()
        finally:
            connection.close()


@contextmanager
def running(root: Path, store: Path, server: LocalPostgres, template: str) -> Iterator[DagsterDev]:
    """`dagster dev` on a free loopback port over a new data dir under `root` (whose landing zone
    is `store`'s) and a new copy of the database `template`, loaded; stopped and dropped after.
    """
    data = make_data_dir(root / "data", store)
    home = dagster_home(root / "dagster_home", "postgres")
    url = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        database = new_database(server, "dagster_dev", template=template)
        stack.callback(drop_database, server, database)
        env = {
            **os.environ,
            **server.environment(),
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": server.database_url(database),
            "ORDERFLOW_DATA_DIR": str(data),
            "ORDERFLOW_UI_URL": url,  # as `make dev` sets it
            "TMPDIR": str(root),
        }
        dev = DagsterDev(url, data, home, root / "dagster-dev.log", server, database)
        # Shown with a failed test's captured output: where to look.
        print(f"dagster dev at {url}: log {dev.log}, instance database {database}")
        process = start(PROJECT_ROOT / "workspace.yaml", url, env, dev.log)
        stack.callback(stop, process, 30)
        wait_until_loaded(url, process, dev.log)
        event_log = yaml.safe_load(graphql(url, INSTANCE)["instance"]["info"])["event_log_storage"]
        found = {key: event_log.get(key) for key in EVENT_LOG} if type(event_log) is dict else None
        assert found == EVENT_LOG, f"dagster dev's event log is not make dev's: {event_log}"
        yield dev


def poll(what: str, probe: Callable[[], T], seconds: float = 600, every: float = 2) -> T:
    """Call `probe` until it returns something truthy, and return that; fail naming `what`."""
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(every)


def launch(
    url: str,
    job: str,
    partition: str | None = None,
    run_config: dict | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Launch a job (a partition of it, or what `tags` select) through GraphQL; its run id."""
    tags = {**({"dagster/partition": partition} if partition else {}), **(tags or {})}
    params = {
        "selector": {**LOCATION, "jobName": job},
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def wait_for_run(url: str, run_id: str, timeout: float = 300) -> str:
    """Poll a run to a final status; its status then, or the one it has after `timeout` seconds."""
    status, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = graphql(url, STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in FINISHED:
            break
        time.sleep(1)
    return status


def start_sensor(url: str, sensor: str) -> None:
    """Switch a sensor on, as its toggle in *Automation* does."""
    selector = {**LOCATION, "sensorName": sensor}
    started = graphql(url, START_SENSOR, {"selector": selector})["startSensor"]
    assert started["__typename"] == "Sensor", started
