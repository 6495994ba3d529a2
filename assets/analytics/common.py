"""What the marts share: their decorators, window replacement in the analytics schema, check helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import dagster as dg
import duckdb

from assets.fulfillment.common import window
from assets.metadata import column_schema, result_with_preview
from foundation.partitions import daily_partitions
from foundation.registry import ANALYTICS
from resources.warehouse import WarehouseResource, step_pool

Columns = tuple[tuple[str, str, str], ...]
GROUP = ANALYTICS
OWNERS = ["team:analytics"]


def metadata_for(columns: Columns, keys: Sequence[str]) -> dict:
    """Definition-time metadata: column schema and primary key."""
    return {"dagster/column_schema": column_schema(columns), "primary_key": ", ".join(keys)}


def analytics_asset(
    key: dg.AssetKey,
    *,
    deps: Sequence[dg.AssetKey],
    columns: Columns = (),
    primary_key: Sequence[str] = (),
    kinds: Sequence[str] = (),
    partitioned: bool = False,
    blocking_checks: Mapping[str, str | None] | None = None,
    checks: Mapping[str, str | None] | None = None,
):
    """`dg.asset` for a mart of table `columns`: group, kinds, owners, pool, window if partitioned.

    `blocking_checks` (a failure stops the assets downstream) and `checks` map the names of its
    checks to their descriptions; a mart with a `primary_key` has the blocking check `keys_unique`.
    """
    blocking_checks = {**({"keys_unique": None} if primary_key else {}), **(blocking_checks or {})}
    return dg.asset(
        key=key,
        deps=deps,
        group_name=GROUP,
        kinds={"duckdb", *kinds},
        owners=OWNERS,
        partitions_def=daily_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        pool=step_pool(key.to_python_identifier()),
        metadata=metadata_for(columns, primary_key) if columns else None,
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, blocking=blocking, description=description)
            for blocking, named in ((True, blocking_checks), (False, checks or {}))
            for name, description in named.items()
        ],
    )


def analytics_assets(
    name: str, specs: Sequence[dg.AssetSpec], check_specs: Sequence[dg.AssetCheckSpec]
):
    """`dg.multi_asset` for marts written together a window at a time: group, kinds, owners, pool."""
    return dg.multi_asset(
        name=name,
        specs=[
            spec.replace_attributes(group_name=GROUP, kinds={"duckdb"}, owners=OWNERS)
            for spec in specs
        ],
        check_specs=check_specs,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=step_pool(name),
    )


def _create(con: duckdb.DuckDBPyConnection, table: str, columns: Columns) -> None:
    body = ", ".join(f"{name} {sql_type}" for name, sql_type, _ in columns)
    con.execute(f"create table if not exists {GROUP}.{table} ({body})")


def replace_window_from_query(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Columns,
    day_column: str,
    start: date,
    end: date,
    select_sql: str,
    params: Sequence[object],
) -> int:
    """Swap analytics.<table>'s window rows for a query's, in the caller's transaction; count them."""
    _create(con, table, columns)
    con.execute(
        f"delete from {GROUP}.{table} where {day_column} >= ? and {day_column} < ?",  # noqa: S608
        [start, end],
    )
    names = ", ".join(name for name, _, _ in columns)
    con.execute(f"insert into {GROUP}.{table} ({names}) {select_sql}", list(params))
    return con.execute(
        f"select count(*) from {GROUP}.{table} where {day_column} >= ? and {day_column} < ?",  # noqa: S608
        [start, end],
    ).fetchall()[0][0]


def daily_mart(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    table: str,
    columns: Columns,
    keys: Sequence[str],
    select_sql: str,
    preview_sql: str,
    checks: Mapping[str, str],
):
    """Replace the window's days of analytics.<table> with `select_sql`'s rows and check them.

    `checks` maps the names of the checks after `keys_unique` to their queries for offending keys.
    """
    start, end = window(context)

    def bound(sql: str) -> list:
        return [start, end] * (sql.count("?") // 2)  # every pair of ? is the window

    checks = {"keys_unique": unique_keys_sql(table, keys, "day >= ? and day < ?"), **checks}
    with warehouse.transaction() as con:
        count = replace_window_from_query(
            con, table, columns, "day", start, end, select_sql, bound(select_sql)
        )
        yield result_with_preview(con, count, preview_sql, bound(preview_sql))
        found = {name: offending(con, sql, bound(sql)) for name, sql in checks.items()}
    for name, offending_keys in found.items():
        yield check_result(name, offending_keys)


def replace_table(
    con: duckdb.DuckDBPyConnection, table: str, columns: Columns, select_sql: str
) -> int:
    """Replace the whole of analytics.<table> with a query's rows; return the row count."""
    casts = ", ".join(f"cast({name} as {sql_type}) as {name}" for name, sql_type, _ in columns)
    con.execute(
        f"create or replace table {GROUP}.{table} as select {casts} from ({select_sql})"  # noqa: S608
    )
    return con.execute(f"select count(*) from {GROUP}.{table}").fetchall()[0][0]  # noqa: S608


def offending(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = (), limit: int = 20
) -> list[str]:
    """The keys (first column, as text) a check query returns: empty means the check passed."""
    return [str(row[0]) for row in con.execute(sql, list(params)).fetchmany(limit)]


def unique_keys_sql(table: str, keys: Sequence[str], where: str = "true") -> str:
    """A query for keys of analytics.<table> that occur more than once."""
    cols = ", ".join(keys)
    return (
        f"select concat_ws('/', {cols}) from {GROUP}.{table} where {where} "  # noqa: S608
        f"group by {cols} having count(*) > 1 order by 1"
    )


def not_null_sql(
    table: str, keys: Sequence[str], columns: Sequence[str], where: str = "true"
) -> str:
    """A query for keys of rows of analytics.<table> with a null in any of `columns`."""
    nulls = " or ".join(f"{c} is null" for c in columns)
    return (
        f"select concat_ws('/', {', '.join(keys)}) from {GROUP}.{table} "  # noqa: S608
        f"where ({where}) and ({nulls}) order by 1"
    )


def check_result(name: str, keys: list[str], asset_key: dg.AssetKey | None = None, **extra):
    """An AssetCheckResult that carries the offending rows' keys in its metadata."""
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=not keys,
        metadata={"offending_keys": keys, "offending_count": len(keys), **extra},
    )
