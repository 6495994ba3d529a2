"""SQL plumbing shared by the systems kept in a relational database (inventory, carrier, ledger).

The SQL is portable between SQLite (the local default) and PostgreSQL (a `postgresql://` URL): only
`ON CONFLICT` (do nothing, or add to a total), plain types and bound parameters. Write
transactions are serialised by the database itself (SQLite's `BEGIN IMMEDIATE`, a PostgreSQL
table lock), so two overlapping runs cannot both decide on the same stock or post the same
entry.
"""

from __future__ import annotations

import itertools
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from resources.faults import SystemRefused, SystemUnavailable

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

T = TypeVar("T")
_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path}"


def engine_for(url: str) -> sa.Engine:
    """One engine per database URL and process (engines pool connections; they are not cheap)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
        return engine


def _create_engine(url: str) -> sa.Engine:
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 120})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" below start transactions, not the driver.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("pragma journal_mode=wal")
        dbapi_connection.execute("pragma synchronous=normal")
        # Bulk calls write millions of index entries per transaction: keep their pages cached
        # (256 MB at most, taken only as used; SQLite's default is 2 MB).
        dbapi_connection.execute("pragma cache_size=-262144")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        # Take the write lock up front: the decisions made inside depend on what was read.
        conn.exec_driver_sql("begin immediate")

    return engine


def is_sqlite(engine: sa.Engine) -> bool:
    """Whether the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(
    engine: sa.Engine, system: str, lock_table: str | None = None
) -> Iterator[sa.Connection]:
    """A serialised write transaction; a database that cannot be reached is a transient fault."""
    import sqlalchemy as sa

    try:
        with engine.begin() as conn:
            if lock_table is not None and not is_sqlite(engine):
                # Identifier from code only (a table name constant of the calling module).
                conn.exec_driver_sql(f"lock table {lock_table} in share row exclusive mode")
            yield conn
    except sa.exc.OperationalError as error:
        raise SystemUnavailable(f"{system} database unavailable: {error.orig}") from error
    except sa.exc.IntegrityError as error:
        # A request that breaks the system's own constraints fails the same way on every retry.
        raise SystemRefused(f"{system} rejected the request: {error.orig}") from error


@contextmanager
def read_connection(engine: sa.Engine, system: str) -> Iterator[sa.Connection]:
    """A connection for reads; a database that cannot be reached is a transient fault."""
    import sqlalchemy as sa

    try:
        with engine.connect() as conn:
            yield conn
    except sa.exc.OperationalError as error:
        raise SystemUnavailable(f"{system} database unavailable: {error.orig}") from error


class StoredElsewhere(Exception):
    """A key of the batch is already stored under a day outside the batch's days."""


def write_known_by_day(
    engine: sa.Engine, system: str, lock_table: str, write: Callable[[sa.Connection, bool], T]
) -> T:
    """Run `write(conn, exact)` in a write transaction, first with `exact=False`.

    A bulk call first looks up the keys it was asked before by the batch's days (one index range,
    where a repeat nearly always is); `write` raises StoredElsewhere when that missed a key (see
    `check_inserted`), and the whole batch is rolled back and redone with an exact key lookup.
    """
    try:
        with write_transaction(engine, system, lock_table) as conn:
            return write(conn, False)
    except StoredElsewhere:
        with write_transaction(engine, system, lock_table) as conn:
            return write(conn, True)


def check_inserted(system: str, what: str, inserted: int, expected: int, exact: bool) -> None:
    """After `insert ... on conflict do nothing` of keys believed new: all of them must be new."""
    if inserted == expected:
        return
    if exact:
        raise SystemRefused(f"{system} stored {inserted} of {expected} new {what}")
    raise StoredElsewhere


_schemas_ready: set[tuple[str, tuple[str, ...]]] = set()
# One row per system sharing a database: the layout version its tables were created with.
VERSIONS_TABLE = (
    "create table if not exists schema_versions ("
    "system varchar(32) primary key, version integer not null)"
)


@dataclass(frozen=True)
class Upgrade:
    """How to bring a system's tables from the layout before `version` to the one at `version`.

    `tables` are renamed to `<table>_old` (their `indexes` dropped first, index names being
    global), the current `create` statements run, then `copy` moves the rows across and the old
    tables are dropped, all in one transaction.
    """

    version: int
    tables: tuple[str, ...]
    indexes: tuple[str, ...]
    copy: tuple[str, ...]


def create_schema(
    engine: sa.Engine,
    statements: Sequence[str],
    system: str = "outside system",
    version: int = 1,
    upgrades: Sequence[Upgrade] = (),
) -> None:
    """Create a system's tables once per database and process, upgrading an older layout.

    Statements may say `{without_rowid}`: SQLite then clusters the table on its primary key
    (one B-tree instead of a row table plus a key index); other databases ignore it. A database
    whose tables predate `schema_versions` is at version 1.
    """
    import sqlalchemy as sa

    marker = (str(engine.url), (system, str(version), *statements))
    if marker in _schemas_ready:
        return
    options = {"without_rowid": " without rowid" if is_sqlite(engine) else ""}
    creates = [statement.format(**options) for statement in statements]
    with write_transaction(engine, system) as conn:
        conn.exec_driver_sql(VERSIONS_TABLE)
        found = fetch_all(conn, "select version from schema_versions where system = ?", (system,))
        if found:
            current = found[0][0]
        else:
            existing = sa.inspect(conn).get_table_names()
            current = 1 if any(table in existing for u in upgrades for table in u.tables) else 0
        pending = [u for u in upgrades if current and current < u.version]
        for upgrade in pending:
            for index in upgrade.indexes:
                conn.exec_driver_sql(f"drop index if exists {index}")
            for table in upgrade.tables:
                # Identifiers from code only (the system module's table names).
                conn.exec_driver_sql(f"alter table {table} rename to {table}_old")
        for statement in creates:
            conn.exec_driver_sql(statement)
        for upgrade in pending:
            for statement in upgrade.copy:
                conn.exec_driver_sql(statement)
            for table in upgrade.tables:
                conn.exec_driver_sql(f"drop table {table}_old")
        conn.exec_driver_sql(
            _driver_sql(
                conn,
                "insert into schema_versions (system, version) values (?, ?) "
                "on conflict (system) do update set version = excluded.version",
            ),
            (system, version),
        )
    _schemas_ready.add(marker)


def _driver_sql(conn: sa.Connection, sql: str) -> str:
    # SQL is written with `?` placeholders; psycopg2 and friends spell them `%s`.
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

    statement = _driver_sql(conn, sql)
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

    sql = _insert_sql(table, columns, ROWS_PER_STATEMENT, conflict)
    inserted = execute_many(conn, sql, groups())
    if tail:  # known once the groups are used up
        sql = _insert_sql(table, columns, len(tail), conflict)
        inserted += execute_many(conn, sql, [tuple(itertools.chain(*tail))])
    return inserted


def _insert_sql(table: str, columns: Sequence[str], count: int, conflict: str = "") -> str:
    """`insert into <table> (<columns>) values (?, ...), ... <conflict>` with `count` rows."""
    marks = f"({', '.join('?' * len(columns))})"
    values = ", ".join([marks] * count)
    return f"insert into {table} ({', '.join(columns)}) values {values} {conflict}".rstrip()  # noqa: S608


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
    execute_many(conn, _insert_sql(table, [*keys, *values], 1, conflict), rows)


def summed(frame: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> Iterator[tuple]:
    """The frame's `values` summed per distinct `keys`: rows of (*keys, *sums) in Python types."""
    if not len(frame):
        return iter(())
    totals = frame.groupby(list(keys), sort=False)[list(values)].sum().reset_index()
    columns = [totals[c].astype("int64" if c in values else object).tolist() for c in totals]
    return zip(*columns, strict=True)


def load_temp_table(conn: sa.Connection, table: str, columns: str, rows: Iterable[tuple]) -> None:
    """Fill a temporary table (emptied first) with the keys a request asks about, to join on.

    `table` and `columns` (e.g. "order_key bigint") are identifiers from code, never from data.
    """
    conn.exec_driver_sql(f"create temporary table if not exists {table} ({columns})")
    conn.exec_driver_sql(f"delete from {table}")  # noqa: S608 - identifier from code
    insert_many(conn, table, [column.split()[0] for column in columns.split(",")], rows)


def fetch_all(conn: sa.Connection, sql: str, params: tuple = ()) -> list[tuple]:
    """All rows of a query with positional parameters, straight through the driver."""
    return [tuple(row) for row in conn.exec_driver_sql(_driver_sql(conn, sql), params)]


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of at most `size` items."""
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]


def fault_state_file(url: str, system: str) -> Path:
    """Where a system's injected-fault counter lives: beside its SQLite file, else the temp dir."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database).with_suffix(".faults")
    return Path(tempfile.gettempdir()) / f"orderflow-{system}.faults"
