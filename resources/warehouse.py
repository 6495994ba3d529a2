"""The warehouse: a DuckDB database reached through dagster-duckdb's `DuckDBResource`.

Assets open one connection per step and hold it no longer than the step, so that the single
DuckDB writer is released for the next run; `transaction()` makes a partition's replace atomic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource

# Schemas are identifiers owned by the code, one per layer (DESIGN.md "Warehouse").
SCHEMAS = ("staging", "fulfillment", "analytics")


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse: a local file by default, any DuckDB path (e.g. `md:`) in production."""

    def _is_local_file(self) -> bool:
        return not (
            self.database in ("", ":memory:")
            or self.database.startswith("md:")
            or "://" in self.database
        )

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open a connection with the layer schemas present."""
        if self._is_local_file():
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as con:
            for schema in SCHEMAS:
                con.execute(f"create schema if not exists {schema}")
            yield con

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open a connection inside one transaction: committed on success, rolled back on error."""
        with self.connect() as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()
