"""The warehouse resource: schemas exist, a failed transaction leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from resources.warehouse import WarehouseResource


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
