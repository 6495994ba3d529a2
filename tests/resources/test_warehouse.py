"""The warehouse resource: schemas exist, a failed transaction leaves nothing behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from resources.warehouse import WarehouseResource

ROOT = Path(__file__).resolve().parents[2]


def test_connect_creates_the_file_and_layer_schemas(tmp_path):
    warehouse = WarehouseResource(database=str(tmp_path / "nested" / "w.duckdb"))
    with warehouse.connect() as con:
        schemas = {
            r[0]
            for r in con.execute("select schema_name from information_schema.schemata").fetchall()
        }
    assert {"staging", "fulfillment", "analytics"} <= schemas
    assert (tmp_path / "nested" / "w.duckdb").exists()


def test_transaction_rolls_back_on_error(tmp_path):
    path = tmp_path / "w.duckdb"
    warehouse = WarehouseResource(database=str(path))
    with warehouse.transaction() as con:
        con.execute("create table staging.t (x int)")
        con.execute("insert into staging.t values (1)")
    with pytest.raises(RuntimeError), warehouse.transaction() as con:
        con.execute("delete from staging.t")
        con.execute("insert into staging.t values (2), (3)")
        raise RuntimeError("step failed half-way")
    with warehouse.connect() as con:
        assert con.execute("select x from staging.t").fetchall() == [(1,)]


def _other_process_reads(path) -> str:
    """What another process gets when it opens the warehouse file: its rows or the error."""
    code = (
        "import sys, duckdb\n"
        "try:\n"
        "    print(duckdb.connect(sys.argv[1]).execute('select x from staging.t').fetchall())\n"
        "except duckdb.IOException as e:\n"
        "    print('locked', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_file_is_locked_only_while_a_connection_is_open(tmp_path):
    """Connections share one attachment per process; the last to close releases the file."""
    path = tmp_path / "w.duckdb"
    warehouse = WarehouseResource(database=str(path))
    with warehouse.transaction() as con:
        con.execute("create table staging.t (x int)")
        con.execute("insert into staging.t values (1)")
    assert _other_process_reads(path) == "[(1,)]"
    with warehouse.connect() as outer:
        with warehouse.connect() as inner:  # a second connection in the same process
            inner.execute("insert into staging.t values (2)")
        assert outer.execute("select count(*) from staging.t").fetchall() == [(2,)]
        assert _other_process_reads(path).startswith("locked")
    assert _other_process_reads(path) == "[(1,), (2,)]"


def test_connections_from_threads_write_the_same_file(tmp_path):
    """Runs in threads of one process (in-process tests) share the file as DuckDB's cache did."""
    warehouse = WarehouseResource(database=str(tmp_path / "w.duckdb"))
    with warehouse.connect() as con:
        con.execute("create table staging.t (x int)")

    def insert(x: int) -> None:
        with warehouse.transaction() as con:
            con.execute("insert into staging.t values (?)", [x])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(insert, range(40)))
    with warehouse.connect() as con:
        assert con.execute("select count(*), sum(x) from staging.t").fetchall() == [(40, 780)]


# Holds the warehouse through the resource, as a step would, until told to let go.
HOLDER = """
import sys, time
from pathlib import Path
from resources.warehouse import WarehouseResource
database, holding, release = sys.argv[1:]
with WarehouseResource(database=database).transaction() as con:
    con.execute("create table if not exists staging.t (x int)")
    con.execute("insert into staging.t values (7)")
    Path(holding).touch()
    while not Path(release).exists():
        time.sleep(0.01)
"""

# Whether another process can take the lock file's lock at once.
TRY_LOCK = """
import fcntl, sys
with open(sys.argv[1], "a") as f:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("free")
    except BlockingIOError:
        print("held")
"""


def _holder(tmp_path) -> tuple[subprocess.Popen, Path]:
    """A process holding the warehouse at tmp_path/w.duckdb; touch the returned path to release it."""
    holding, release = tmp_path / "holding", tmp_path / "release"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "w.duckdb"), str(holding), str(release)],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while not holding.exists():
        assert process.poll() is None and time.monotonic() < deadline, "the holder did not start"
        time.sleep(0.01)
    return process, release


def _lock_state(lock_file: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(lock_file)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_lock_file_is_held_exactly_while_the_file_is_attached(tmp_path):
    """The cross-process lock beside the database covers every attachment, reads included."""
    path = tmp_path / "w.duckdb"
    warehouse = WarehouseResource(database=str(path))
    with warehouse.connect() as con:
        con.execute("select 1").fetchall()
        assert _lock_state(tmp_path / "w.duckdb.lock") == "held"
    assert _lock_state(tmp_path / "w.duckdb.lock") == "free"


def test_a_second_process_waits_for_the_holder_then_goes_on(tmp_path):
    holder, release = _holder(tmp_path)
    warehouse = WarehouseResource(database=str(tmp_path / "w.duckdb"), lock_timeout_seconds=120)
    threading.Timer(1.0, release.touch).start()
    with warehouse.connect() as con:  # waits for the holder's transaction
        assert con.execute("select x from staging.t").fetchall() == [(7,)]
    assert holder.wait(timeout=60) == 0


def test_waiting_past_the_bound_fails_naming_the_file_and_the_fix(tmp_path):
    holder, release = _holder(tmp_path)
    try:
        warehouse = WarehouseResource(database=str(tmp_path / "w.duckdb"), lock_timeout_seconds=0.5)
        with pytest.raises(dg.Failure) as failure, warehouse.connect():
            pass
    finally:
        release.touch()
        holder.wait(timeout=60)
    message = failure.value.description
    assert str(tmp_path / "w.duckdb.lock") in message
    assert str(tmp_path / "w.duckdb") in message
    assert "lock_timeout_seconds" in message and "fuser" in message


def test_a_killed_holder_releases_the_warehouse_at_once(tmp_path):
    """Unlike a pool slot, the lock goes with the process: the kernel releases it on SIGKILL."""
    holder, _ = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    warehouse = WarehouseResource(database=str(tmp_path / "w.duckdb"), lock_timeout_seconds=5)
    with warehouse.connect() as con:
        # The killed holder's transaction never committed.
        tables = "select count(*) from information_schema.tables where table_name = 't'"
        assert con.execute(tables).fetchall() == [(0,)]
