"""Helpers shared by the tests: data dirs over the session's store, staging runs, queries."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path

import dagster as dg
import duckdb

from assets.staging.catalog import staging_catalog
from assets.staging.orders import staging_orders
from foundation import settings
from foundation.jobs import order_to_cash_job
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG
from foundation.settings import PROJECT_ROOT, duckdb_config
from foundation.sqldb.connections import sqlite_url
from orchestration_defs.definitions import ANALYTICS_ASSETS, FULFILLMENT_ASSETS
from resources.accounting import SqlAccounting
from resources.carrier import LocalCarrier
from resources.faults import FaultInjection
from resources.inventory import SqlInventory
from resources.notifier import MaildirNotifier
from resources.notifier_outbox import OutboxNotifier
from resources.order_system import LandingZoneOrderSystem
from resources.reports import ReportStore
from resources.rules import RulesResource
from resources.warehouse import WarehouseResource

SCALE = 0.01
HISTORY_START, HISTORY_END = "2020-01-01", "2026-08-02"
# Six weeks that cross a month and a year boundary (stock is topped up monthly, profit is per
# year): the history most tests stage and fulfil, once per session.
WEEKS_START, WEEKS_END = "2020-12-07", "2021-01-17"


INSTANCE_CONFIGS = {"sqlite": "dagster.yaml", "postgres": "dagster.postgres.yaml"}


def dagster_home(root: Path, instance: str = "sqlite") -> Path:
    """A DAGSTER_HOME holding the instance file `make dev INSTANCE=<instance>` uses.

    "sqlite": dagster.yaml (run-sharded SQLite); "postgres": dagster.postgres.yaml, which reads
    its database's URL from DAGSTER_PG_URL when the instance is opened.
    """
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / INSTANCE_CONFIGS[instance], root / "dagster.yaml")
    return root


def make_data_dir(root: Path, store: Path) -> Path:
    """A data dir whose landing zone is the shared store's and whose warehouse is new."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "landing").symlink_to(store / "landing", target_is_directory=True)
    return root


def resources_for(data: Path, faults: dict[str, FaultInjection] | None = None) -> dict:
    """The pipeline's resources pointed at one data dir (local backends, optional faults)."""
    faults = faults or {}
    systems = data / "systems"

    def fault(name: str) -> FaultInjection:
        return faults.get(name, FaultInjection())

    return {
        "warehouse": WarehouseResource(
            database=str(data / "warehouse.duckdb"), connection_config=duckdb_config(data)
        ),
        "order_system": LandingZoneOrderSystem(landing_dir=str(data / "landing")),
        "inventory": SqlInventory(
            url=sqlite_url(systems / "inventory.sqlite"), faults=fault("inventory")
        ),
        "carrier": LocalCarrier(
            url=sqlite_url(systems / "carrier.sqlite"), faults=fault("carrier")
        ),
        "notifier": local_notifier(data, fault("notifier")),
        "reports": ReportStore(directory=str(data / "reports")),
        "accounting": SqlAccounting(
            url=sqlite_url(systems / "accounting.sqlite"), faults=fault("accounting")
        ),
        # The rules file of `$ORDERFLOW_RULES` (a test's own), else the project's rules.yaml.
        "rules": RulesResource.from_file(),
    }


def local_notifier(data: Path, faults: FaultInjection) -> MaildirNotifier | OutboxNotifier:
    """The data dir's outbox, of the kind `$ORDERFLOW_OUTBOX` picks (as the code location does)."""
    if settings.outbox_kind() == "sql":
        return OutboxNotifier(url=sqlite_url(data / "outbox" / "outbox.sqlite"), faults=faults)
    return MaildirNotifier(outbox_dir=str(data / "outbox"), faults=faults)


def write_rules(path: Path, **sections: dict) -> Path:
    """A copy of rules.yaml with some rules changed, e.g. `allocation={"order": "priority"}`."""
    import yaml

    rules = yaml.safe_load((PROJECT_ROOT / "rules.yaml").read_text())
    for section, values in sections.items():
        rules[section].update(values)
    path.write_text(yaml.safe_dump(rules))
    return path


def partition_kwargs(start: str, end: str | None) -> dict:
    """One partition, or the range [start, end] as a single run, as a backfill would."""
    if end is None:
        return {"partition_key": start}
    return {"tags": {RANGE_START_TAG: start, RANGE_END_TAG: end}}


def fulfill(
    data: Path,
    start: str,
    end: str | None = None,
    faults: dict[str, FaultInjection] | None = None,
    **kwargs,
) -> dg.ExecuteInProcessResult:
    """Run the whole fulfillment chain for a partition or a range (staging must be there).

    `tags` (e.g. orderflow/redecide) go with a range's own tags.
    """
    partitions = partition_kwargs(start, end)
    if "tags" in partitions:
        kwargs["tags"] = {**kwargs.get("tags", {}), **partitions.pop("tags")}
    return dg.materialize(
        [staging_orders, staging_catalog, *FULFILLMENT_ASSETS],
        selection=FULFILLMENT_ASSETS,
        resources=resources_for(data, faults),
        **partitions,
        **kwargs,
    )


def order_to_cash_for(data_dir: str) -> dg.JobDefinition:
    """`order_to_cash_job` over the local backends in `data_dir`, as the code location wires it.

    The target of `dg.build_reconstructable_job("tests.helpers", "order_to_cash_for", ...)`, for
    runs that `dg.execute_job` launches and re-executes on a persistent instance.
    """
    return dg.Definitions(
        assets=[staging_catalog, staging_orders, *FULFILLMENT_ASSETS],
        jobs=[order_to_cash_job],
        resources=resources_for(Path(data_dir)),
        executor=dg.in_process_executor,
    ).resolve_job_def("order_to_cash_job")


def load_catalog(data: Path) -> dg.ExecuteInProcessResult:
    """Materialise the catalog assets into the data dir's warehouse."""
    return dg.materialize([staging_catalog], resources=resources_for(data))


def stage(data: Path, start: str, end: str | None = None, **kwargs) -> dg.ExecuteInProcessResult:
    """Stage one partition, or the range [start, end] as a single run, as a backfill would."""
    return dg.materialize(
        [staging_orders, staging_catalog],
        selection=[staging_orders],
        resources=resources_for(data),
        **partition_kwargs(start, end),
        **kwargs,
    )


def query(data: Path, sql: str, params: list | None = None) -> list[tuple]:
    """Rows of a query against the data dir's warehouse.

    Through the resource, so that a connection a failed run still holds (DuckDB keeps one database
    instance per file and process) is shared rather than refused.
    """
    with resources_for(data)["warehouse"].connect() as con:
        return con.execute(sql, params or []).fetchall()


def analyse(data: Path, start: str, end: str | None = None, **kwargs) -> dg.ExecuteInProcessResult:
    """Refresh the partitioned marts for a partition or a range (fulfillment must be there)."""
    partitioned = [a for a in ANALYTICS_ASSETS if a.partitions_def is not None]
    return dg.materialize(
        [staging_orders, staging_catalog, *FULFILLMENT_ASSETS, *ANALYTICS_ASSETS],
        selection=partitioned,
        resources=resources_for(data),
        **partition_kwargs(start, end),
        **kwargs,
    )


def analyse_history(data: Path, **kwargs) -> dg.ExecuteInProcessResult:
    """Refresh the unpartitioned marts and the daily report."""
    whole = [a for a in ANALYTICS_ASSETS if a.partitions_def is None]
    return dg.materialize(
        [staging_orders, staging_catalog, *FULFILLMENT_ASSETS, *ANALYTICS_ASSETS],
        selection=whole,
        resources=resources_for(data),
        **kwargs,
    )


def outputs(data: Path) -> dict[str, tuple[int, str]]:
    """What runs left in a data dir, to compare two runs: (rows, digest of their contents) by name.

    Every warehouse table without its wall-clock columns (timestamps, and durations in seconds
    named `*_s`; floating-point values rounded to 9 places, as parallel sums may differ in the
    last bit), every table of the systems' SQLite databases, and the outbox's messages (folder,
    file name and text). Read a row at a time: whole-history outputs fit in little memory.
    """
    found: dict[str, tuple[int, str]] = {}
    with resources_for(data)["warehouse"].connect() as con:
        columns = con.execute(
            "select table_schema, table_name, list(case when data_type in ('DOUBLE', 'FLOAT') "
            "then format('round({}, 9)', column_name) else column_name end "
            "order by ordinal_position) filter (where data_type not like 'TIMESTAMP%' "
            "and not ends_with(column_name, '_s')) from information_schema.columns "
            "where table_catalog = current_database() group by all order by all"
        ).fetchall()
        for schema, table, names in columns:
            con.execute(f"select {', '.join(names)} from {schema}.{table} order by all")
            found[f"warehouse {schema}.{table}"] = _digest(_fetched(con))
    for database in sorted((data / "systems").glob("*.sqlite")):
        with closing(sqlite3.connect(database)) as con:
            tables = con.execute("select name from sqlite_master where type = 'table' order by 1")
            for (table,) in tables.fetchall():
                width = len(con.execute(f"select * from {table} limit 0").description)
                order = ", ".join(str(n) for n in range(1, width + 1))
                found[f"{database.name} {table}"] = _digest(
                    con.execute(f"select * from {table} order by {order}")
                )
    outbox = data / "outbox"
    messages = sorted(outbox.glob(".*/*/*"))
    found["outbox"] = _digest((str(p.relative_to(outbox)), p.read_bytes()) for p in messages)
    return found


def _digest(rows: Iterable[tuple]) -> tuple[int, str]:
    """How many rows, and a digest of them in order."""
    digest, count = hashlib.sha256(), 0
    for row in rows:
        digest.update(repr(row).encode())
        count += 1
    return count, digest.hexdigest()


def _fetched(con: duckdb.DuckDBPyConnection) -> Iterator[tuple]:
    """The rows of the connection's last query, fetched in batches."""
    while batch := con.fetchmany(10_000):
        yield from batch


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """Every asset check's outcome in a run, by `<asset name>.<check name>`."""
    return {
        f"{e.asset_key.path[-1]}.{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }
