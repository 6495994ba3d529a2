"""Statements on many rows at once (inserts, running totals), every value a bound parameter."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa


def driver_sql(conn: sa.Connection, sql: str) -> str:
    """SQL written with `?` placeholders, as the connection's driver spells them."""
    # psycopg2 and friends spell them `%s`.
    if conn.dialect.paramstyle in ("format", "pyformat"):
        return sql.replace("?", "%s")
    return sql


def execute_many(conn: sa.Connection, sql: str, rows: Iterable[tuple]) -> int:
    """Run a statement once per row of positional parameters, straight through the driver.

    Bulk paths skip SQLAlchemy's per-row parameter processing, which costs more than SQLite's
    own insert, and stream the rows (an iterator is never copied into a list); values are still
    bound parameters, never SQL text. Returns the rows changed (summed over the rows by sqlite3
    and psycopg2). Driver errors are raised as SQLAlchemy's, like every other statement's.
    """
    import sqlalchemy as sa

    statement = driver_sql(conn, sql)
    # The DBAPI connection of the caller's transaction: the rows belong to that transaction.
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(statement, rows)
        return max(cursor.rowcount, 0)
    except conn.dialect.loaded_dbapi.Error as error:
        raise sa.exc.DBAPIError.instance(
            statement, None, error, conn.dialect.loaded_dbapi.Error
        ) from error
    finally:
        cursor.close()


# Rows per INSERT statement in `insert_many`: the per-statement work is paid once per 64 rows
# (bench/RESULTS.md, issue #3).
ROWS_PER_STATEMENT = 64


def insert_many(
    conn: sa.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple],
    conflict: str = "",
) -> int:
    """Insert rows, many per statement (`insert ... values (...), (...), ...`); return how many.

    The rows are streamed (never copied into one list) and every value is a bound parameter;
    `table`, `columns` and `conflict` (e.g. "on conflict do nothing") come from code. A
    statement may hold the same key twice, so `conflict` must not be a DO UPDATE (PostgreSQL
    refuses to update a row twice in one statement).
    """
    source = iter(rows)
    tail: list[tuple] = []

    def groups() -> Iterator[tuple]:
        while True:
            group = list(itertools.islice(source, ROWS_PER_STATEMENT))
            if len(group) < ROWS_PER_STATEMENT:
                tail.extend(group)
                return
            yield tuple(itertools.chain.from_iterable(group))

    sql = insert_sql(table, columns, ROWS_PER_STATEMENT, conflict)
    inserted = execute_many(conn, sql, groups())
    if tail:  # known once the groups are used up
        sql = insert_sql(table, columns, len(tail), conflict)
        inserted += execute_many(conn, sql, [tuple(itertools.chain(*tail))])
    return inserted


def insert_sql(table: str, columns: Sequence[str], count: int, conflict: str = "") -> str:
    """`insert into <table> (<columns>) values (?, ...), ... <conflict>` with `count` rows."""
    marks = f"({', '.join('?' * len(columns))})"
    values = ", ".join([marks] * count)
    return f"insert into {table} ({', '.join(columns)}) values {values} {conflict}".rstrip()  # noqa: S608


def load_temp_table(conn: sa.Connection, table: str, columns: str, rows: Iterable[tuple]) -> None:
    """Fill a temporary table (emptied first) with the keys a request asks about, to join on.

    `table` and `columns` (e.g. "order_key bigint") are identifiers from code, never from data.
    """
    conn.exec_driver_sql(f"create temporary table if not exists {table} ({columns})")
    conn.exec_driver_sql(f"delete from {table}")  # noqa: S608 - identifier from code
    insert_many(conn, table, [column.split()[0] for column in columns.split(",")], rows)


def fetch_all(conn: sa.Connection, sql: str, params: tuple = ()) -> list[tuple]:
    """All rows of a query with positional parameters, straight through the driver."""
    return [tuple(row) for row in conn.exec_driver_sql(driver_sql(conn, sql), params)]


def add_to_totals(
    conn: sa.Connection,
    table: str,
    keys: Sequence[str],
    values: Sequence[str],
    rows: Iterable[tuple],
) -> None:
    """Add each row's values to the totals row with its keys, in the caller's transaction.

    A system keeps running totals (per day, say) beside its detail rows, in the same transaction
    as those rows, so a report reads a few thousand rows instead of millions. `table`, `keys`
    and `values` are identifiers from code, never from data.
    """
    added = ", ".join(f"{v} = {table}.{v} + excluded.{v}" for v in values)
    conflict = f"on conflict ({', '.join(keys)}) do update set {added}"
    # One row per statement: rows may repeat a key, which PostgreSQL refuses within one.
    execute_many(conn, insert_sql(table, [*keys, *values], 1, conflict), rows)


def summed(frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> Iterator[tuple]:
    """The frame's `values` summed per distinct `keys`: rows of (*keys, *sums) in Python types."""
    if not len(frame):
        return iter(())
    totals = frame.groupby(list(keys), sort=False)[list(values)].sum().reset_index()
    columns = [totals[c].astype("int64" if c in values else object).tolist() for c in totals]
    return zip(*columns, strict=True)
