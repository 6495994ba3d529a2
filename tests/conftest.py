"""Shared fixtures: one generated SF 0.01 store per session, fresh data dirs and warehouses per test.

The generated landing zone is read-only for tests (the pipeline never writes it), so each test gets
its own data dir whose `landing/` links to the session's store and whose warehouse is new. Tests
that need history use six weeks of it (WEEKS_START..WEEKS_END), staged and fulfilled once per
session in seconds; only `slow` tests stage the whole history (minutes).
"""

from __future__ import annotations

import os

# Outside-system steps back off 2 s, 4 s, 8 s in production; tests keep the shape, not the wait.
# Set before the assets are imported: a RetryPolicy is fixed when its asset is defined.
os.environ.setdefault("ORDERFLOW_RETRY_DELAY_S", "0.1")

import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from deploy.local_metrics import LocalMetrics
from deploy.local_postgres import LocalPostgres
from simulator.history import find_tpchgen, generate_store
from tests.dagster_dev import DagsterDev, running
from tests.helpers import (
    HISTORY_END,
    HISTORY_START,
    SCALE,
    WEEKS_END,
    WEEKS_START,
    check_outcomes,
    dagster_home,
    fulfill,
    load_catalog,
    make_data_dir,
    stage,
)
from tests.metrics import running_servers
from tests.postgres import drop_database, local_server, new_database, running_server

# Two tiers: `make test` runs every test not marked `slow`, `make test-slow` the `slow` ones, under
# pyproject's timeout (900 s). A fast test, its first use of a session fixture included, takes at
# most a third of FAST_TIMEOUT_S on a loaded 2-core machine: a hang fails in minutes.
FAST_TIMEOUT_S = 300


def pytest_configure(config: pytest.Config) -> None:
    # A background job (CI, `make test &`) starts with SIGINT ignored, and after a run on the main
    # thread Dagster gives SIGTERM SIGINT's handler: SIGTERM ignored too. A run on another thread
    # then spawns its compute-log `tail -F` processes ignoring SIGTERM, so they outlive the run and
    # Dagster waits 2 × 30 s for each. Interrupts behave as in a terminal instead.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") is not None:
            continue
        if "staged_history" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(
                f"{item.nodeid} stages the whole history: mark it `slow`, or use staged_weeks"
            )
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAST_TIMEOUT_S))


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL server shared by the session (tests/postgres.py)."""
    yield from running_server()


@pytest.fixture
def pushgateway(tmp_path) -> Iterator[str]:
    """A Pushgateway of the test's own on a free loopback port (tests/metrics.py): its URL."""
    with running_servers(tmp_path / "metrics", prometheus=False) as servers:
        yield servers.pushgateway_url


@pytest.fixture
def metrics_servers(tmp_path) -> Iterator[LocalMetrics]:
    """The Pushgateway and Prometheus scraping it every second (tests/metrics.py)."""
    with running_servers(tmp_path / "metrics") as servers:
        yield servers


@pytest.fixture(scope="session")
def local_postgres() -> Iterator[LocalPostgres]:
    """`make dev`'s PostgreSQL server (deploy/local_postgres.py), shared by the session."""
    yield from local_server()


@pytest.fixture(scope="session")
def _instance_template(local_postgres, tmp_path_factory) -> str:
    """A database holding Dagster's schema, made once by opening `make dev`'s instance on it."""
    name = new_database(local_postgres, "instance_template")
    home = dagster_home(tmp_path_factory.mktemp("template_home"), "postgres")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_PG_URL", local_postgres.database_url(name))
        dg.DagsterInstance.from_config(str(home)).dispose()
    return name


@pytest.fixture
def instance_url(local_postgres, _instance_template) -> Iterator[Callable[[], str]]:
    """Makes databases with Dagster's schema (copies of the template) and returns their URLs."""
    made = []

    def make() -> str:
        made.append(new_database(local_postgres, "instance", template=_instance_template))
        return local_postgres.database_url(made[-1])

    yield make
    for name in made:
        drop_database(local_postgres, name)


@pytest.fixture
def dagster_instance(tmp_path, monkeypatch, instance_url) -> Iterator[dg.DagsterInstance]:
    """A new instance of the kind `make dev` runs, for one test, on a database of its own.

    dagster.postgres.yaml in a DAGSTER_HOME of its own; DAGSTER_PG_URL is set for the test, so
    processes it starts and instances opened from the same home share the database.
    """
    monkeypatch.setenv("DAGSTER_PG_URL", instance_url())
    home = dagster_home(tmp_path / "dagster_home", "postgres")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture
def dagster_dev(tmp_path, store_dir, local_postgres, _instance_template) -> Iterator[DagsterDev]:
    """`dagster dev` as `make dev` runs it, over a new data dir and database (tests/dagster_dev.py)."""
    with running(tmp_path, store_dir, local_postgres, _instance_template) as dev:
        yield dev


@pytest.fixture(scope="session", autouse=True)
def _isolated_dagster_home(tmp_path_factory):
    """Keep every Dagster instance and temporary file of the session out of the repo."""
    os.environ["DAGSTER_HOME"] = str(dagster_home(tmp_path_factory.mktemp("dagster_home")))
    # The pipeline's default data dir is an empty one of the session's: nothing a test runs reads
    # or writes the repo's data/ (where a developer's outage state, for one, may be switched on).
    os.environ["ORDERFLOW_DATA_DIR"] = str(tmp_path_factory.mktemp("default-data"))
    os.environ.pop("ORDERFLOW_WAREHOUSE", None)


@pytest.fixture(scope="session")
def _new_sqlite_home(tmp_path_factory) -> Path:
    """A SQLite DAGSTER_HOME whose storage is created (and then closed), to copy for each test."""
    home = dagster_home(tmp_path_factory.mktemp("new_dagster_home"))
    dg.DagsterInstance.from_config(str(home)).dispose()
    return home


@pytest.fixture
def sqlite_instance(tmp_path, _new_sqlite_home) -> Iterator[dg.DagsterInstance]:
    """A new instance of the kind `make dev INSTANCE=sqlite` runs, on its own DAGSTER_HOME."""
    home = shutil.copytree(_new_sqlite_home, tmp_path / "sqlite_dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory) -> Path:
    """A generated SF 0.01 store (catalog and full order history), shared by the whole session."""
    data = tmp_path_factory.mktemp("store")
    generate_store(data, SCALE)
    return data


@pytest.fixture(scope="session")
def defect_store(tmp_path_factory) -> Path:
    """An SF 0.01 store carrying corrupted and duplicated records (manifests in simulator/defects)."""
    data = tmp_path_factory.mktemp("defect-store")
    generate_store(data, SCALE, corrupt_rate=0.05, duplicate_rate=0.03, seed=7)
    return data


@pytest.fixture(scope="session")
def tpch_parquet(tmp_path_factory) -> Path:
    """TPC-H SF 0.01 Parquet straight from tpchgen-cli: the reference for the history."""
    out = tmp_path_factory.mktemp("tpch")
    subprocess.run(
        [str(find_tpchgen()), "parquet", "-s", str(SCALE), "--output-dir", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def data_dir(tmp_path, store_dir) -> Path:
    """A fresh data dir over the shared store."""
    return make_data_dir(tmp_path / "data", store_dir)


def _staged(data: Path, start: str, end: str) -> Path:
    assert load_catalog(data).success
    assert stage(data, start, end).success
    return data


def _private_copy(tmp_path: Path, shared: Path) -> Path:
    """A test's own copy of a shared data dir's warehouse and outside systems."""
    data = make_data_dir(tmp_path / "data", (shared / "landing").resolve().parent)
    shutil.copy(shared / "warehouse.duckdb", data / "warehouse.duckdb")
    if (shared / "systems").is_dir():
        shutil.copytree(shared / "systems", data / "systems")
    return data


@pytest.fixture(scope="session")
def catalog_warehouse(tmp_path_factory, store_dir) -> Path:
    """A warehouse file with only the store's catalog staged: tests copy it rather than stage it."""
    data = make_data_dir(tmp_path_factory.mktemp("catalog") / "data", store_dir)
    assert load_catalog(data).success
    return data / "warehouse.duckdb"


@pytest.fixture(scope="session")
def staged_weeks(tmp_path_factory, store_dir) -> Path:
    """A warehouse with WEEKS_START..WEEKS_END staged in one run (a backfill), shared read-only."""
    data = make_data_dir(tmp_path_factory.mktemp("staged-weeks") / "data", store_dir)
    return _staged(data, WEEKS_START, WEEKS_END)


@pytest.fixture
def copy_of_staged(tmp_path, staged_weeks) -> Path:
    """A private copy of the staged weeks, for tests that write to it."""
    return _private_copy(tmp_path, staged_weeks)


@pytest.fixture(scope="session")
def fulfilled_weeks(tmp_path_factory, store_dir, staged_weeks) -> Path:
    """The staged weeks run through the chain in one run (a backfill), shared read-only."""
    data = make_data_dir(tmp_path_factory.mktemp("fulfilled-weeks") / "data", store_dir)
    shutil.copy(staged_weeks / "warehouse.duckdb", data / "warehouse.duckdb")
    result = fulfill(data, WEEKS_START, WEEKS_END)
    assert result.success
    outcomes = check_outcomes(result)
    assert all(outcomes.values()), outcomes
    return data


@pytest.fixture
def copy_of_fulfilled(tmp_path, fulfilled_weeks) -> Path:
    """A private copy of the fulfilled weeks: warehouse and outside systems."""
    return _private_copy(tmp_path, fulfilled_weeks)


@pytest.fixture(scope="session")
def staged_history(tmp_path_factory, store_dir) -> Path:
    """The whole history staged in one run (a full backfill): for `slow` tests only."""
    data = make_data_dir(tmp_path_factory.mktemp("history") / "data", store_dir)
    return _staged(data, HISTORY_START, HISTORY_END)
