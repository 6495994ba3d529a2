"""The warehouse: a DuckDB database reached through dagster-duckdb's `DuckDBResource`.

Assets open one connection per step (two where a step calls an outside system between reading and
writing) and hold it no longer than that, so that the single DuckDB writer is released for the
next run; `transaction()` makes a partition's replace atomic.

A local file is attached to one in-memory DuckDB per process and detached when its last
connection closes: starting a DuckDB database costs ~20 ms (its built-in extensions load), an
ATTACH ~3 ms, and DETACH checkpoints and releases the file's lock as closing would.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from foundation.registry import ANALYTICS, FULFILLMENT, STAGING

# Schemas are identifiers owned by the code, one per layer (DESIGN.md "Warehouse").
SCHEMAS = (STAGING, FULFILLMENT, ANALYTICS)

# Another process holding the file's lock: wait for it as dagster-duckdb's get_connection does.
ATTACH_RETRIES = 10


class _Attachments:
    """One process's in-memory DuckDB instances and the database files attached to them.

    One instance per connection config; per file, its alias and how many connections use it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instances: dict[str, duckdb.DuckDBPyConnection] = {}
        self.aliases: dict[tuple[str, str], list] = {}  # (config, path) -> [alias, users]
        self.numbers = itertools.count(1)

    @contextmanager
    def cursor(self, path: str, config: dict[str, Any]) -> Iterator[duckdb.DuckDBPyConnection]:
        key = (json.dumps(config, sort_keys=True, default=str), path)
        with self.lock:
            base = self.instances.get(key[0])
            if base is None:
                base = self.instances[key[0]] = duckdb.connect(":memory:", config=config)
            entry = self.aliases.get(key)
            if entry is None:
                alias = f"warehouse_{next(self.numbers)}"  # an identifier from code
                _attach(base, path, alias)
                entry = self.aliases[key] = [alias, 0]
            entry[1] += 1
            con = base.cursor()
        try:
            con.execute(f"use {entry[0]}")
            yield con
        finally:
            con.close()
            with self.lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self.aliases[key]
                    base.execute(f"detach {entry[0]}")


def _attach(base: duckdb.DuckDBPyConnection, path: str, alias: str) -> None:
    """Attach the file, waiting while another process holds its lock."""
    delay = 0.1
    for attempt in range(ATTACH_RETRIES + 1):
        try:
            base.execute(f"attach ? as {alias}", [path])
            return
        except duckdb.IOException:
            if attempt == ATTACH_RETRIES:
                raise
            dg.get_dagster_logger().debug(f"{path} is locked; retrying in {delay:.1f} s")
            time.sleep(delay)
            delay *= 2


_ATTACHMENTS = _Attachments()
_ATTACHMENTS_PID = os.getpid()


def _attachments() -> _Attachments:
    """The current process's attachments: a forked child must not use its parent's instances."""
    global _ATTACHMENTS, _ATTACHMENTS_PID
    if os.getpid() != _ATTACHMENTS_PID:
        _ATTACHMENTS, _ATTACHMENTS_PID = _Attachments(), os.getpid()
    return _ATTACHMENTS


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse: a local file by default, any DuckDB path (e.g. `md:`) in production."""

    def _is_local_file(self) -> bool:
        return not (
            self.database in ("", ":memory:")
            or self.database.startswith("md:")
            or "://" in self.database
        )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse; a local file is attached, other paths connect."""
        if not self._is_local_file():
            with super().get_connection() as con:
                yield con
            return
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        config = {"custom_user_agent": "dagster", **self.connection_config}
        with _attachments().cursor(str(Path(self.database).resolve()), config) as con:
            yield con

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open a connection with the layer schemas present."""
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
