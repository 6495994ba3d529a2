"""The warehouse's DuckDB memory limit and spill directory, as the code location wires them."""

from __future__ import annotations

from orchestration_defs.definitions import build_resources

# More distinct strings than 100 MB hold while they are counted.
LARGER_THAN_THE_LIMIT = (
    "select count(distinct s) from (select range::VARCHAR || repeat('x', 28) as s from range(?))"
)


def test_the_memory_limit_and_spill_directory_take_effect(tmp_path, monkeypatch):
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ORDERFLOW_DUCKDB_MEMORY_LIMIT", "100MB")
    spill = tmp_path / "duckdb_tmp"
    # The settings reach the in-memory instance the warehouse file is attached to.
    with build_resources()["warehouse"].connect() as con:
        settings = con.execute(
            "select current_setting('memory_limit'), current_setting('temp_directory')"
        ).fetchall()
        assert settings == [("95.3 MiB", str(spill))]
        assert not spill.exists()
        # A query needing more than the limit spills there rather than failing.
        assert con.execute(LARGER_THAN_THE_LIMIT, [3_000_000]).fetchall() == [(3_000_000,)]
        assert spill.is_dir()


def test_the_default_limit_is_one_gigabyte(tmp_path, monkeypatch):
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ORDERFLOW_DUCKDB_MEMORY_LIMIT", raising=False)
    with build_resources()["warehouse"].connect() as con:
        limit = con.execute("select current_setting('memory_limit')").fetchall()
    assert limit == [("953.6 MiB",)]
