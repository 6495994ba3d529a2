"""The warehouse resource: schemas exist, a failed transaction leaves nothing behind."""

from __future__ import annotations

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
