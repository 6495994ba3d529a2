from datetime import date, timedelta

import duckdb
import pytest
from sim_helpers import parse, read_lines, total_cents

from foundation.layout import catalog_path, day_dir, orders_dir
from simulator.cli import main
from simulator.days import (
    catch_up,
    generate_orders,
    retail_price_cents,
    simulate_day,
    supplier_of_part,
)
from simulator.errors import SimulatorError, StoreNotFoundError
from simulator.store import load_store

FIRST = date(2026, 8, 3)


def catalog(data_dir, table, columns):
    with duckdb.connect() as con:
        return con.execute(
            f"SELECT {columns} FROM read_parquet(?)", [str(catalog_path(data_dir, table))]
        ).fetchall()


def day_bytes(data_dir, day):
    return {p.name: p.read_bytes() for p in sorted(day_dir(data_dir, day).iterdir())}


def day_orders(data_dir, day):
    return [parse(r) for p in sorted(day_dir(data_dir, day).iterdir()) for r in read_lines(p)]


def test_day_is_deterministic_whatever_else_was_generated(day_store, tmp_path_factory, sim_store):
    other = tmp_path_factory.mktemp("other")
    (other / "simulator").mkdir()
    (other / "simulator" / "store.json").write_bytes(
        (day_store / "simulator" / "store.json").read_bytes()
    )
    target = FIRST + timedelta(days=40)
    simulate_day(day_store, target)
    catch_up(other, until=target + timedelta(days=3))
    assert day_bytes(day_store, target) == day_bytes(other, target)

    files = simulate_day(day_store, target)
    mtimes = [p.stat().st_mtime_ns for p in files]
    assert simulate_day(day_store, target) == files
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    assert [p.name for p in files] == [
        "batch-001.jsonl.gz",
        "batch-002.jsonl.gz",
        "batch-003.jsonl.gz",
    ]


def test_batches_option_rewrites_the_day(day_store):
    simulate_day(day_store, FIRST, batches=3)
    before = [o["o_orderkey"] for o in day_orders(day_store, FIRST)]
    files = simulate_day(day_store, FIRST, batches=1)
    assert [p.name for p in files] == ["batch-001.jsonl.gz"]
    assert [p.name for p in day_dir(day_store, FIRST).iterdir()] == ["batch-001.jsonl.gz"]
    assert [o["o_orderkey"] for o in day_orders(day_store, FIRST)] == before


def test_keys_never_collide(day_store):
    info = load_store(day_store)
    days = catch_up(day_store, until=FIRST + timedelta(days=59))
    assert days == [FIRST + timedelta(days=i) for i in range(60)]
    keys = [o["o_orderkey"] for d in days for o in day_orders(day_store, d)]
    assert len(keys) == len(set(keys))
    assert min(keys) > info.max_history_orderkey
    for d in days:
        block = info.max_history_orderkey + (d - FIRST).days * info.day_key_capacity
        assert all(
            block < o["o_orderkey"] <= block + info.day_key_capacity
            for o in day_orders(day_store, d)
        )
    # Present days are skipped.
    assert catch_up(day_store, until=FIRST + timedelta(days=61)) == [
        FIRST + timedelta(days=60),
        FIRST + timedelta(days=61),
    ]


def test_values_follow_tpch_distributions(day_store):
    info = load_store(day_store)
    orders = [o for i in range(200) for o in generate_orders(info, FIRST + timedelta(days=i))]
    mean = len(orders) / 200
    assert 5 < mean < 7.5  # 1.5 M * 0.01 / 2406 = 6.2
    assert all(o["o_custkey"] % 3 != 0 and 1 <= o["o_custkey"] <= 1500 for o in orders)
    assert {o["o_orderstatus"] for o in orders} == {"O"}
    assert {o["o_shippriority"] for o in orders} == {0}
    assert {len(o["lines"]) for o in orders} == set(range(1, 8))
    for order in orders:
        assert total_cents(order) == int(order["o_totalprice"] * 100)
        for line in order["lines"]:
            assert 1 <= line["l_quantity"] <= 50 and line["l_quantity"] == int(line["l_quantity"])
            assert 0 <= line["l_discount"] <= 0.10 and 0 <= line["l_tax"] <= 0.08
            commit = date.fromisoformat(line["l_commitdate"])
            assert 30 <= (commit - date.fromisoformat(order["o_orderdate"])).days <= 90
            assert int(line["l_extendedprice"] * 100) == int(
                line["l_quantity"]
            ) * retail_price_cents(line["l_partkey"])


def test_retail_price_formula_matches_part_parquet(day_store):
    for partkey, price in catalog(day_store, "part", "p_partkey, p_retailprice"):
        assert retail_price_cents(partkey) == int(price * 100)


def test_supplier_formula_matches_partsupp_parquet(day_store):
    info = load_store(day_store)
    pairs = set(catalog(day_store, "partsupp", "ps_partkey, ps_suppkey"))
    generated = {
        (p, supplier_of_part(p, i, info.supplier_count))
        for p in range(1, info.part_count + 1)
        for i in range(4)
    }
    assert generated == pairs
    orders = [o for i in range(30) for o in generate_orders(info, FIRST + timedelta(days=i))]
    assert all((li["l_partkey"], li["l_suppkey"]) in pairs for o in orders for li in o["lines"])


def test_refuses_history_dates_and_missing_store(day_store, tmp_path, capsys):
    with pytest.raises(SimulatorError, match="inside the generated history"):
        simulate_day(day_store, date(2026, 8, 2))
    assert main(["day", "2026-08-02", "--data-dir", str(day_store)]) == 2
    assert "history" in capsys.readouterr().err
    with pytest.raises(StoreNotFoundError):
        simulate_day(tmp_path / "empty", FIRST)
    assert main(["catch-up", "--data-dir", str(tmp_path / "empty")]) == 2


def test_cli_day_and_catch_up(day_store, capsys):
    assert main(["day", "2026-08-05", "--batches", "2", "--data-dir", str(day_store)]) == 0
    assert len(list(day_dir(day_store, date(2026, 8, 5)).iterdir())) == 2
    until = "2026-08-10"
    assert main(["catch-up", "--until", until, "--data-dir", str(day_store)]) == 0
    assert "wrote 7 days" in capsys.readouterr().out
    assert sorted(p.name for p in orders_dir(day_store).iterdir())[-1] == until
