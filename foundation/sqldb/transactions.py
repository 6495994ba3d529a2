"""Serialised write transactions and reads; a database error becomes a transient or permanent fault."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from foundation.failures import SystemRefused, SystemUnavailable
from foundation.sqldb.engines import is_sqlite

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import sqlalchemy as sa

T = TypeVar("T")


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
