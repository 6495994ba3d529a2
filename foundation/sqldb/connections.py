"""One engine per database URL and process, and serialised transactions that raise the two failures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from foundation.failures import SystemRefused, SystemUnavailable

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
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
