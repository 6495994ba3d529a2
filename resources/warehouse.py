"""The warehouse: a DuckDB database reached through dagster-duckdb's `DuckDBResource`.

Assets open one connection per step (two where a step calls an outside system between reading and
writing) and hold it no longer than that; `transaction()` makes a partition's replace atomic.

A local file is attached to one in-memory DuckDB per process and detached when its last
connection closes: starting a DuckDB database costs ~20 ms (its built-in extensions load), an
ATTACH ~3 ms, and DETACH checkpoints and releases the file's lock as closing would.

DuckDB lets one process at a time open a file (it refuses the others rather than waiting), so
a process holds an exclusive `flock` on `<file>.lock` exactly while it has the file attached:
step processes of parallel branches and of overlapping runs wait their turn for the brief reads
and writes, and call the outside systems meanwhile. The kernel releases the lock when its holder
exits, killed or not, so a dead run never blocks the warehouse.
"""

from __future__ import annotations

import fcntl
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

from foundation import settings
from foundation.registry import ANALYTICS, FULFILLMENT, STAGING

# Schemas are identifiers owned by the code, one per layer (DESIGN.md "Warehouse").
SCHEMAS = (STAGING, FULFILLMENT, ANALYTICS)

# A program other than this resource (a DuckDB shell, say) holding the file: wait for it as
# dagster-duckdb's get_connection does.
ATTACH_RETRIES = 10
# How often a process waiting for the lock file tries again (a step's turn starts within this).
LOCK_POLL_SECONDS = 0.02


class _Attachments:
    """One process's in-memory DuckDB instances and the database files attached to them.

    One instance per connection config; per file, its alias and how many connections use it,
    and per path the descriptor holding its lock file and how many attachments share it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instances: dict[str, duckdb.DuckDBPyConnection] = {}
        self.aliases: dict[tuple[str, str], list] = {}  # (config, path) -> [alias, users]
        self.file_locks: dict[str, list[int]] = {}  # path -> [descriptor, attachments]
        self.numbers = itertools.count(1)

    @contextmanager
    def cursor(
        self, path: str, config: dict[str, Any], lock_timeout: float
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        key = (json.dumps(config, sort_keys=True, default=str), path)
        with self.lock:
            base = self.instances.get(key[0])
            if base is None:
                base = self.instances[key[0]] = duckdb.connect(":memory:", config=config)
            entry = self.aliases.get(key)
            if entry is None:
                alias = f"warehouse_{next(self.numbers)}"  # an identifier from code
                self._hold(path, lock_timeout)
                try:
                    _attach(base, path, alias)
                except BaseException:
                    self._let_go(path)
                    raise
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
                    try:
                        base.execute(f"detach {entry[0]}")
                    finally:
                        self._let_go(path)

    def _hold(self, path: str, timeout: float) -> None:
        held = self.file_locks.get(path)
        if held is None:
            held = self.file_locks[path] = [_lock_file(path, timeout), 0]
        held[1] += 1

    def _let_go(self, path: str) -> None:
        held = self.file_locks[path]
        held[1] -= 1
        if held[1] == 0:
            del self.file_locks[path]
            os.close(held[0])  # closing the lock file's descriptor releases its lock


def _lock_file(path: str, timeout: float) -> int:
    """Take `<path>.lock` exclusively, waiting up to `timeout` s; the open descriptor holds it."""
    lock_path = f"{path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = time.monotonic() - started
            if waited >= LOCK_POLL_SECONDS:  # a step's bar in the timeline includes its waits
                dg.get_dagster_logger().debug(f"Waited {waited:.2f} s for the warehouse {path}")
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise dg.Failure(
                    description=(
                        f"The warehouse {path} stayed in use by another process for {timeout:g} s "
                        f"(it holds the lock file {lock_path}). Steps hold it only while they read "
                        "or write, so that process is stuck or is a long step of another run: "
                        f"`fuser -v {lock_path}` shows it. End it, or let it finish, then "
                        "re-execute this run from the failed step; to wait longer, raise the "
                        "warehouse resource's lock_timeout_seconds."
                    ),
                    allow_retries=False,
                ) from None
            time.sleep(LOCK_POLL_SECONDS)
        except BaseException:
            os.close(fd)
            raise


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


def step_pool(step: str) -> str:
    """The concurrency pool of a step that uses the warehouse: its own, of one slot (dagster.yaml).

    The warehouse's lock file, not a pool, keeps DuckDB's single writer. The pool keeps what the
    lock cannot: a step's read, outside-system calls and write-back, which take the lock apart,
    never interleave with the same step of an overlapping run (whose write would otherwise be
    overwritten by a result computed from older inputs). Different steps run side by side.
    `$ORDERFLOW_WAREHOUSE_POOL` puts every step in one pool instead, where the lock file cannot
    be trusted (a network volume mounted on several machines).
    """
    return settings.warehouse_pool() or f"duckdb-{step}"


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse: a local file by default, any DuckDB path (e.g. `md:`) in production."""

    lock_timeout_seconds: float = 1800.0
    """How long a step waits for other processes to let go of a local file before it fails."""

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
        path = str(Path(self.database).resolve())
        with _attachments().cursor(path, config, self.lock_timeout_seconds) as con:
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
