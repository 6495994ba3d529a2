"""A system's tables in its database: created once per process, upgraded from older layouts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from foundation.sqldb.bulk import driver_sql, fetch_all
from foundation.sqldb.connections import engine_for, is_sqlite, write_transaction

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import sqlalchemy as sa

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
    tables are dropped, all in one transaction. `columns` (table, column, type) are added to
    tables that lack them, in place: the rows stay where they are (a table an earlier upgrade
    created anew already has them).
    """

    version: int
    tables: tuple[str, ...]
    indexes: tuple[str, ...]
    copy: tuple[str, ...]
    columns: tuple[tuple[str, str, str], ...] = ()


def engine_with_schema(
    url: str,
    statements: Sequence[str],
    system: str = "outside system",
    version: int = 1,
    upgrades: Sequence[Upgrade] = (),
) -> sa.Engine:
    """The engine of `url`, with a system's tables created (once per process) or upgraded.

    Statements may say `{without_rowid}`: SQLite then clusters the table on its primary key
    (one B-tree instead of a row table plus a key index); other databases ignore it. A database
    whose tables predate `schema_versions` is at version 1.
    """
    import sqlalchemy as sa

    engine = engine_for(url)
    marker = (str(engine.url), (system, str(version), *statements))
    if marker in _schemas_ready:
        return engine
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
            for table, column, sql_type in upgrade.columns:
                if column not in {c["name"] for c in sa.inspect(conn).get_columns(table)}:
                    conn.exec_driver_sql(f"alter table {table} add column {column} {sql_type}")
        conn.exec_driver_sql(
            driver_sql(
                conn,
                "insert into schema_versions (system, version) values (?, ?) "
                "on conflict (system) do update set version = excluded.version",
            ),
            (system, version),
        )
    _schemas_ready.add(marker)
    return engine
