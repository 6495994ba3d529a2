"""Lineage is the truth: each asset declares exactly the warehouse tables its SQL reads.

Every asset is materialised on a few days of a real store through a warehouse whose connections
show each statement to DuckDB's binder first (EXPLAIN's unoptimised logical plan names every table
scanned, CTEs, subqueries and DML included); the tables an asset step reads, less the ones it
writes, must be the upstream assets it declares (asset key [schema, table] = table schema.table).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from orchestration_defs.definitions import defs
from resources.warehouse import SCHEMAS, WarehouseResource
from tests.helpers import HISTORY_END, partition_kwargs, resources_for

README = Path(__file__).resolve().parent.parent / "README.md"
# The last days of the store's history: a few orders a day at SF 0.01, every step has rows.
FIRST_DAY = "2026-07-28"

# Tables read per asset step (node name), filled by RecordingWarehouse during a run.
READS: dict[str, set[str]] = defaultdict(set)

# Deps through an outside system rather than the warehouse, by asset step and upstream table:
# inventory_stock seeds the inventory system's stock, which allocations reserve against and
# inventory_health reads from the system itself.
THROUGH_OUTSIDE_SYSTEMS = {
    ("fulfillment/allocations", "fulfillment.inventory_stock"),
    ("analytics/inventory_health", "fulfillment.inventory_stock"),
}

# Statements that cannot read a table; everything else is shown to the binder.
NOT_READING = {
    duckdb.StatementType.TRANSACTION,
    duckdb.StatementType.SET,
    duckdb.StatementType.VARIABLE_SET,
    duckdb.StatementType.PRAGMA,
}
# What assets may use of a connection besides execute(): none of it runs SQL text.
PASSED_THROUGH = {
    "begin",
    "commit",
    "rollback",
    "register",
    "unregister",
    "fetchall",
    "fetchmany",
    "df",
    "description",
}


def scanned_tables(plan: list[dict]) -> Iterator[str]:
    """The `schema.table` of every table scan in an EXPLAIN (FORMAT JSON) plan."""
    for operator in plan:
        table = operator.get("extra_info", {}).get("Table")
        if table:
            yield ".".join(table.split(".")[-2:])  # drop the catalog (database) name
        yield from scanned_tables(operator.get("children", []))


class RecordingConnection:
    """A warehouse connection that records the layer tables each statement reads, per asset step."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    def execute(self, query: str, parameters=None):
        """Record the tables the statement reads (binding it first), then run it."""
        statements = duckdb.extract_statements(query)
        if len(statements) != 1 and parameters:
            raise AssertionError(f"parameters for several statements: {query}")
        node = dg.AssetExecutionContext.get().assets_def.node_def.name
        result = None
        for statement in statements:
            if statement.type not in NOT_READING:
                # The same connection: it sees the step's temporary tables and registered frames.
                # A statement the binder refuses would fail just the same when run next.
                explained = self._con.execute(
                    f"explain (format json) {statement.query}", parameters
                ).fetchall()
                plan = json.loads(dict(explained)["logical_plan"])
                READS[node].update(
                    table for table in scanned_tables(plan) if table.split(".")[0] in SCHEMAS
                )
            query_text = statement.query if len(statements) > 1 else query
            result = self._con.execute(query_text, parameters)
        return result

    def __getattr__(self, name: str):
        if name not in PASSED_THROUGH:
            raise AttributeError(
                f"the lineage test does not see SQL run through `{name}`: record it in "
                "tests/test_lineage.py (RecordingConnection) or use execute()"
            )
        return getattr(self._con, name)


class RecordingWarehouse(WarehouseResource):
    """The project's warehouse, whose connections record what each statement reads."""

    @contextmanager
    def get_connection(self) -> Iterator[RecordingConnection]:
        """A DuckDB connection wrapped in a RecordingConnection."""
        with super().get_connection() as con:
            con.execute("set session explain_output = 'all'")  # keep the unoptimised plan
            yield RecordingConnection(con)


def table_of(asset_key: dg.AssetKey) -> str:
    """The warehouse table an asset key names."""
    return ".".join(asset_key.path)


def lineage_differences() -> list[str]:
    """Per asset step: the tables it reads but does not declare, and declares but never reads."""
    differences = []
    for assets_def in defs.assets:
        own = {table_of(key) for key in assets_def.keys}
        declared = {table_of(dep.asset_key) for spec in assets_def.specs for dep in spec.deps}
        read = READS[assets_def.node_def.name] - own
        declared -= own
        label = ", ".join(sorted(key.to_user_string() for key in assets_def.keys))
        outside = {table for step, table in THROUGH_OUTSIDE_SYSTEMS if step == label}
        differences += [f"{label} reads {table}, not a declared dep" for table in read - declared]
        differences += [
            f"{label} declares {table} and never reads it" for table in declared - read - outside
        ]
        differences += [
            f"{label} is listed in THROUGH_OUTSIDE_SYSTEMS with {table}, which it "
            + ("reads" if table in read else "does not declare")
            for table in outside - (declared - read)
        ]
    return sorted(differences)


def test_every_asset_declares_exactly_the_tables_it_reads(data_dir):
    """Materialise every asset over a few days, then compare what each read with its deps."""
    READS.clear()
    resources = {
        **resources_for(data_dir),
        "warehouse": RecordingWarehouse(database=str(data_dir / "warehouse.duckdb")),
    }
    result = dg.materialize(
        defs.assets, resources=resources, **partition_kwargs(FIRST_DAY, HISTORY_END)
    )
    assert result.success
    steps = {assets_def.node_def.name for assets_def in defs.assets}
    # Every asset step opened the warehouse through the recorder.
    assert set(READS) == steps, sorted(steps - set(READS))
    differences = lineage_differences()
    assert not differences, "\n".join(differences)


def test_the_readme_lists_each_assets_upstream():
    """README's "What is built so far" table of upstream assets is the declared lineage."""
    lines = README.read_text().splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("| asset | upstream")]
    assert header, "README.md has no `| asset | upstream ... |` table under What is built so far"
    start = header[0]
    listed = {}
    for line in itertools.takewhile(str.strip, lines[start + 2 :]):
        asset, upstream = (cell.strip() for cell in line.strip("|").split("|"))
        listed[asset.strip("`")] = sorted(name.strip(" `") for name in upstream.split(","))
    declared = {
        spec.key.to_user_string(): sorted(dep.asset_key.path[-1] for dep in spec.deps)
        for spec in defs.resolve_all_asset_specs()
        if spec.deps
    }
    assert listed == declared
