"""Statements on many rows at once (inserts, running totals), every value a bound parameter."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

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


# Statements per round trip to a PostgreSQL server in `execute_many` (psycopg2's own executemany
# makes a round trip per row).
STATEMENTS_PER_ROUND_TRIP = 500


def execute_many(conn: sa.Connection, sql: str, rows: Iterable[tuple]) -> None:
    """Run a statement once per row of positional parameters, straight through the driver.

    Bulk paths skip SQLAlchemy's per-row parameter processing, which costs more than SQLite's
    own insert, and stream the rows (an iterator is never copied into a list); values are still
    bound parameters, never SQL text. On PostgreSQL the statements go to the server many per
    round trip. Driver errors are raised as SQLAlchemy's, like every other statement's.
    """
    with _driver_cursor(conn, sql) as (cursor, statement):
        if conn.dialect.driver == "psycopg2":
            from psycopg2.extras import execute_batch

            execute_batch(cursor, statement, rows, page_size=STATEMENTS_PER_ROUND_TRIP)
        else:
            cursor.executemany(statement, rows)


def _execute_counted(conn: sa.Connection, sql: str, rows: Iterable[tuple]) -> int:
    """`execute_many` returning the rows changed, for statements that each carry many rows.

    One round trip per statement: psycopg2 and sqlite3 sum the row counts of an executemany,
    where a batch of statements per round trip would report only its last statement's.
    """
    with _driver_cursor(conn, sql) as (cursor, statement):
        cursor.executemany(statement, rows)
        return max(cursor.rowcount, 0)


@contextmanager
def _driver_cursor(conn: sa.Connection, sql: str) -> Iterator[tuple[Any, str]]:
    """A DBAPI cursor in the caller's transaction, its driver's errors raised as SQLAlchemy's."""
    import sqlalchemy as sa

    statement = driver_sql(conn, sql)
    # The DBAPI connection of the caller's transaction: the rows belong to that transaction.
    cursor = conn.connection.cursor()
    try:
        yield cursor, statement
    except conn.dialect.loaded_dbapi.Error as error:
        raise sa.exc.DBAPIError.instance(
            statement, None, error, conn.dialect.loaded_dbapi.Error
        ) from error
    finally:
        cursor.close()


# Rows per INSERT statement in `insert_many` on SQLite: the per-statement work is paid once per 64
# rows (bench/RESULTS.md, issue #3).
ROWS_PER_STATEMENT = 64


def insert_many(
    conn: sa.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple],
    conflict: str = "",
) -> int:
    """Insert rows, many per statement (`insert ... values (...), (...), ...`); return how many new.

    The rows are streamed (never copied into one list) and every value is a bound parameter;
    `table`, `columns` and `conflict` (e.g. "on conflict do nothing") come from code. A
    statement may hold the same key twice, so `conflict` must not be a DO UPDATE (PostgreSQL
    refuses to update a row twice in one statement). On PostgreSQL the rows are copied
    (`_copy_insert`).
    """
    if conn.dialect.driver == "psycopg2":
        return _copy_insert(conn, table, ", ".join(columns), rows, conflict)
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
    inserted = _execute_counted(conn, sql, groups())
    if tail:  # known once the groups are used up
        sql = insert_sql(table, columns, len(tail), conflict)
        inserted += _execute_counted(conn, sql, [tuple(itertools.chain(*tail))])
    return inserted


# Rows per COPY in `_copy_insert` and `update_many`: one page of text in memory at a time.
ROWS_PER_COPY = 50_000


def _copy_insert(conn: sa.Connection, table: str, names: str, rows: Iterable, conflict: str) -> int:
    """`insert_many` on PostgreSQL: the rows COPYed into a temporary table, then inserted from it.

    COPY is PostgreSQL's bulk path: rows go as data, with no statement text to parse, where a
    many-row INSERT was most of the systems' time there (py-spy, bench/RESULTS.md). The insert from
    the temporary table applies `conflict` and counts the new rows as the INSERT would.
    """
    inserted = 0
    with _copy_into_temporary(conn, table, names, "copy") as (cursor, staged, pages):
        for _ in pages(rows):
            cursor.execute(
                f"insert into {table} ({names}) select {names} from {staged} {conflict}"  # noqa: S608
            )
            inserted += max(cursor.rowcount, 0)
            cursor.execute(f"truncate {staged}")
    return inserted


@contextmanager
def _copy_into_temporary(
    conn: sa.Connection, table: str, names: str, prefix: str
) -> Iterator[tuple[Any, str, Callable[[Iterable[tuple]], Iterator[None]]]]:
    """A temporary table of `table`'s columns `names`, made for this call and dropped after it.

    Yields a cursor, the table's name and `pages(rows)`, which COPYs the rows into it a page at a
    time, yielding after each page.
    """
    staged = f"{prefix}_{table}"
    # Made for this call's columns (a temporary table may be filled with other columns next time).
    conn.exec_driver_sql(
        f"create temporary table {staged} as "  # noqa: S608 - identifiers from code
        f"select {names} from {table} with no data"
    )
    with _driver_cursor(conn, f"copy {staged} ({names}) from stdin") as (cursor, statement):

        def pages(rows: Iterable[tuple]) -> Iterator[None]:
            source = iter(rows)
            while page := list(itertools.islice(source, ROWS_PER_COPY)):
                cursor.copy_expert(statement, io.StringIO(_copy_text(page)))
                yield

        yield cursor, staged, pages
        cursor.execute(f"drop table {staged}")


_NULL = "\\N"  # COPY's text format spells NULL as backslash-N
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def update_many(
    conn: sa.Connection,
    table: str,
    values: Sequence[str],
    keys: Sequence[str],
    rows: Iterable[tuple],
) -> None:
    """Set the `values` columns of the row with the `keys` columns, for rows of (*values, *keys).

    A key appears once among the rows. On SQLite a statement per row (in-process, that is fast);
    on PostgreSQL, where a statement per row is a round trip and a plan each, the rows are
    COPYed into a temporary table and applied by one UPDATE ... FROM. `table`, `values` and
    `keys` are identifiers from code.
    """
    if conn.dialect.driver != "psycopg2":
        sets = ", ".join(f"{name} = ?" for name in values)
        where = " and ".join(f"{name} = ?" for name in keys)
        execute_many(conn, f"update {table} set {sets} where {where}", rows)  # noqa: S608
        return
    names = ", ".join([*values, *keys])
    with _copy_into_temporary(conn, table, names, "update") as (cursor, staged, pages):
        for _ in pages(rows):
            pass
        sets = ", ".join(f"{name} = u.{name}" for name in values)
        where = " and ".join(f"{table}.{name} = u.{name}" for name in keys)
        cursor.execute(f"update {table} set {sets} from {staged} u where {where}")  # noqa: S608


# Types whose str() is their COPY text, unless it holds a character to escape.
_PLAIN = frozenset({int, float, str, bool, type(None)})


def _copy_text(page: list[tuple]) -> str:
    """Rows of one width in COPY's text format: tab-separated, NULL as backslash-N, escaped.

    Most values are numbers or text with no tab, newline, carriage return or backslash: such
    rows are joined as they are (2.5 times faster than escaping every value), checked by counting
    those characters against the separators and NULLs put there; other pages are escaped value by
    value, bytes in bytea's hex form.
    """
    if {type(value) for row in page for value in row} <= _PLAIN:
        nulls, lines = 0, []
        for row in page:
            fields = [_NULL if value is None else str(value) for value in row]
            if _NULL in fields:
                nulls += sum(value is None for value in row)
            lines.append("\t".join(fields))
        text = "\n".join(lines) + "\n"
        if (
            "\r" not in text
            and text.count("\\") == nulls
            and text.count("\t") == len(page) * (len(page[0]) - 1)
            and text.count("\n") == len(page)
        ):
            return text
    return "".join("\t".join(map(_copy_value, row)) + "\n" for row in page)


def _copy_value(value: object) -> str:
    if value is None:
        return _NULL
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()  # bytea's hex input, its backslash escaped for COPY
    return str(value).translate(_COPY_ESCAPES)


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
