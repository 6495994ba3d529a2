"""One SQLAlchemy engine per database URL and process; SQLite files in WAL mode, locked on begin."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import sqlalchemy as sa

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
