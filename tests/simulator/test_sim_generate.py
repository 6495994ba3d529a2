import json
import re
from collections import Counter
from datetime import date, timedelta

import duckdb
import pytest
from sim_helpers import iter_records, parse, read_lines, total_cents, tree_files

from foundation.layout import CATALOG_TABLES, catalog_path, orders_dir, simulator_dir, store_path
from simulator import history
from simulator.cli import main
from simulator.records import parse_record, to_json_text

ORDER_KEYS = [
    "o_orderkey",
    "o_custkey",
    "o_orderstatus",
    "o_totalprice",
    "o_orderdate",
    "o_orderpriority",
    "o_clerk",
    "o_shippriority",
    "o_comment",
    "lines",
]
LINE_KEYS = [
    "l_linenumber",
    "l_partkey",
    "l_suppkey",
    "l_quantity",
    "l_extendedprice",
    "l_discount",
    "l_tax",
    "l_commitdate",
    "l_shipinstruct",
    "l_shipmode",
    "l_comment",
]


def tpch_rows(parquet, sql):
    with duckdb.connect() as con:
        return con.execute(sql, [str(parquet)]).fetchall()


def test_layout_and_store_json(sim_store):
    for table in CATALOG_TABLES:
        assert catalog_path(sim_store, table).is_file()
    store = json.loads(store_path(sim_store).read_text())
    assert store["scale_factor"] == 0.01
    assert store["history_start"] == "2020-01-01"
    assert store["history_end"] == "2026-08-02"
    assert store["max_history_orderkey"] == 60000
    assert (store["customer_count"], store["part_count"], store["supplier_count"]) == (
        1500,
        2000,
        100,
    )
    days = sorted(p.name for p in orders_dir(sim_store).iterdir())
    assert days[0] == "2020-01-01" and days[-1] == "2026-08-02"
    for name in days[:50]:
        files = sorted(p.name for p in (orders_dir(sim_store) / name).iterdir())
        assert files in (["batch-001.jsonl.gz"], ["batch-001.jsonl.gz", "batch-002.jsonl.gz"])
    # No scratch space or temp files left behind.
    assert not [p for p in sim_store.rglob(".*")]
    assert [p.name for p in simulator_dir(sim_store).iterdir()] == ["store.json"]


def test_catalog_is_tpchgen_output_unchanged(sim_store, tpch_parquet):
    for table in CATALOG_TABLES:
        assert (
            catalog_path(sim_store, table).read_bytes()
            == (tpch_parquet / f"{table}.parquet").read_bytes()
        )


def test_records_match_tpch_shifted_28_years(sim_store, tpch_parquet):
    orders = {
        key: (orderdate, custkey, totalprice)
        for key, orderdate, custkey, totalprice in tpch_rows(
            tpch_parquet / "orders.parquet",
            "SELECT o_orderkey, o_orderdate, o_custkey, o_totalprice FROM read_parquet(?)",
        )
    }
    commits = {
        (key, number): commit
        for key, number, commit in tpch_rows(
            tpch_parquet / "lineitem.parquet",
            "SELECT l_orderkey, l_linenumber, l_commitdate FROM read_parquet(?)",
        )
    }
    seen = Counter()
    lines = 0
    for day, _file, _number, raw in iter_records(sim_store):
        order = parse(raw)
        assert list(order) == ORDER_KEYS
        key = order["o_orderkey"]
        seen[key] += 1
        tpch_date, custkey, totalprice = orders[key]
        assert order["o_orderdate"] == day.isoformat()
        assert day == tpch_date.replace(year=tpch_date.year + 28)
        assert (order["o_custkey"], order["o_totalprice"]) == (custkey, totalprice)
        assert [line["l_linenumber"] for line in order["lines"]] == list(
            range(1, len(order["lines"]) + 1)
        )
        for line in order["lines"]:
            assert list(line) == LINE_KEYS
            commit = commits[(key, line["l_linenumber"])]
            assert line["l_commitdate"] == commit.replace(year=commit.year + 28).isoformat()
        lines += len(order["lines"])
    assert len(seen) == len(orders) == 15000
    assert set(seen.values()) == {1}
    assert lines == len(commits)


def test_records_are_ordered_and_decimals_print_two_places(sim_store):
    day_dir = orders_dir(sim_store) / "2020-01-01"
    raw = b"".join(read_lines(p)[0] for p in sorted(day_dir.iterdir()))
    assert b'"o_totalprice":138053.06,' in raw
    assert b'"l_quantity":30.00,' in raw
    keys = [parse(r)["o_orderkey"] for p in sorted(day_dir.iterdir()) for r in read_lines(p)]
    assert keys == sorted(keys)
    # Python's serializer renders a parsed record byte for byte as DuckDB did.
    for _day, _file, _number, record in list(iter_records(sim_store))[:500]:
        assert to_json_text(parse_record(record)).encode() == record


def test_totals_formula_holds_for_every_history_order(sim_store):
    for _day, _file, _number, raw in iter_records(sim_store):
        order = parse(raw)
        assert total_cents(order) == int(order["o_totalprice"] * 100), order["o_orderkey"]


def test_refuses_existing_store_then_force_regenerates_identically(sim_store, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "landing" / "orders" / "1999-01-01").mkdir(parents=True)
    (data / "landing" / "orders" / "1999-01-01" / "batch-001.jsonl.gz").write_bytes(b"junk")
    (data / "simulator" / "defects").mkdir(parents=True)
    (data / "simulator" / "defects" / "1999-01-01.json").write_text("[]")

    assert main(["generate", "--scale", "0.01", "--data-dir", str(data)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (data / "landing" / "orders" / "1999-01-01" / "batch-001.jsonl.gz").exists()

    assert main(["generate", "--scale", "0.01", "--data-dir", str(data), "--force"]) == 0
    assert tree_files(data) == tree_files(sim_store)
    # Deterministic: every landed byte equals the first generation's.
    for relative in tree_files(sim_store):
        assert (data / relative).read_bytes() == (sim_store / relative).read_bytes(), relative


def test_cli_rejects_bad_options(tmp_path):
    assert main(["generate", "--scale", "0", "--data-dir", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--data-dir", str(tmp_path)])
    assert exc.value.code == 2


def test_history_spans_the_whole_range(sim_store):
    days = sorted(date.fromisoformat(p.name) for p in orders_dir(sim_store).iterdir())
    assert days[0] == date(2020, 1, 1)
    assert days[-1] == date(2026, 8, 2)
    # 2,406 calendar days; SF 0.01 leaves a few of them without orders.
    assert len(days) > 2350 and days[-1] - days[0] == timedelta(days=2405)


def test_progress_lines_name_the_work_and_the_time_left(sim_store, tmp_path, capsys, monkeypatch):
    # Windows of 2,000 orders: eight queries at SF 0.01, each one reported, as SF 10 makes 61.
    monkeypatch.setattr(history, "ORDERS_PER_WINDOW", 2_000)
    data = tmp_path / "data"

    assert main(["generate", "--scale", "0.01", "--data-dir", str(data)]) == 0

    err = capsys.readouterr().err
    assert "\r" not in err  # whole lines, readable in a log
    lines = err.splitlines()
    assert lines[0] == "running tpchgen-cli at scale factor 0.01"
    queries = [line for line in lines if line.startswith("reading the orders of")]
    assert queries[0] == (
        "reading the orders of 2020-01-01 .. 2020-11-15 with their lines (query 1 of 8)"
    )
    assert len(queries) == 8 and queries[-1].endswith("(query 8 of 8)")
    landed = [
        re.fullmatch(
            r"landed ([\d,]+) of 15,000 orders \((\d+)%\) through (\S+): "
            r"\d+ s so far, about \d+ s left",
            line,
        )
        for line in lines
        if line.startswith("landed ")
    ]
    assert all(landed), lines
    assert [int(m[2]) for m in landed] == list(range(5, 101, 5))
    assert landed[-1][1] == "15,000" and landed[-1][3] == "2026-08-02"
    # The same bytes as one query over the whole history (the session's store).
    assert tree_files(data) == tree_files(sim_store)
    for relative in tree_files(sim_store):
        assert (data / relative).read_bytes() == (sim_store / relative).read_bytes(), relative
