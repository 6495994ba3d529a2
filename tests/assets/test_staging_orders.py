"""Staging of landed orders: one day, the whole history (slow), re-runs, late batches and bad input."""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from simulator.days import catch_up
from tests.helpers import HISTORY_END, HISTORY_START, load_catalog, make_data_dir, query, stage

DAY = "2020-01-02"


def landed_records(store: Path, day: str) -> list[str]:
    """The record lines of a day's batches in the store, in arrival order."""
    records = []
    for path in sorted((store / "landing" / "orders" / day).glob("*.jsonl.gz")):
        records += [
            line for line in gzip.decompress(path.read_bytes()).decode().split("\n") if line
        ]
    return records


def checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_one_partition_stages_exactly_its_day(data_dir, store_dir):
    assert load_catalog(data_dir).success
    result = stage(data_dir, DAY)
    assert result.success
    expected = {json.loads(r)["o_orderkey"] for r in landed_records(store_dir, DAY)}
    staged = {row[0] for row in query(data_dir, "select o_orderkey from staging.orders")}
    assert staged == expected
    assert query(data_dir, "select distinct l_orderdate from staging.lineitem") == [
        (date(2020, 1, 2),)
    ]
    assert all(checks(result).values()), checks(result)
    metadata = result.asset_materializations_for_node("staging_orders")[0].metadata
    assert metadata["records_read"].value == len(expected)


@pytest.mark.slow
def test_full_history_equals_tpchgen_output_row_for_row(staged_history, tpch_parquet):
    tpch = tpch_parquet
    orders = f"'{tpch / 'orders.parquet'}'"
    lineitem = f"'{tpch / 'lineitem.parquet'}'"
    shifted_orders = f"""
        select * replace ((o_orderdate + interval 28 year)::date as o_orderdate) from {orders}"""
    shifted_lines = f"""
        select l_orderkey, l_partkey, l_suppkey, l_linenumber, l_quantity, l_extendedprice,
            l_discount, l_tax, (l_commitdate + interval 28 year)::date, l_shipinstruct,
            l_shipmode, l_comment from {lineitem}"""
    staged_lines = """
        select l_orderkey, l_partkey, l_suppkey, l_linenumber, l_quantity, l_extendedprice,
            l_discount, l_tax, l_commitdate, l_shipinstruct, l_shipmode, l_comment
        from staging.lineitem"""
    for theirs, ours in (
        (shifted_orders, "select * from staging.orders"),
        (shifted_lines, staged_lines),
    ):
        assert query(staged_history, f"select count(*) from ({theirs})") == query(
            staged_history, f"select count(*) from ({ours})"
        )
        assert query(staged_history, f"({theirs}) except all ({ours})") == []
        assert query(staged_history, f"({ours}) except all ({theirs})") == []
    assert query(staged_history, "select count(*) from staging.order_rejects") == [(0,)]
    assert query(staged_history, "select min(o_orderdate), max(o_orderdate) from staging.orders")[
        0
    ] == tuple(date.fromisoformat(d) for d in (HISTORY_START, HISTORY_END))


TABLE_FINGERPRINT = """
    select (select count(*) || ':' || sum(hash(t)) from staging.orders t),
           (select count(*) || ':' || sum(hash(t)) from staging.lineitem t),
           (select count(*) || ':' || sum(hash(t)) from staging.order_rejects t)
"""


def test_rerunning_partitions_and_ranges_changes_nothing(copy_of_staged):
    before = query(copy_of_staged, TABLE_FINGERPRINT)
    # A range across the month and year boundary, then one of its days twice.
    assert stage(copy_of_staged, "2020-12-21", "2021-01-10").success
    assert stage(copy_of_staged, "2021-01-04").success
    assert stage(copy_of_staged, "2021-01-04").success
    assert query(copy_of_staged, TABLE_FINGERPRINT) == before


def own_landing(tmp_path: Path, store: Path, days: list[str], catalog: Path | None = None) -> Path:
    """A data dir with a private, writable copy of some days' batches and the store's catalog.

    With `catalog` (the catalog_warehouse fixture), its warehouse has the catalog staged already.
    """
    data = tmp_path / "data"
    (data / "landing" / "orders").mkdir(parents=True)
    if catalog is not None:
        shutil.copy(catalog, data / "warehouse.duckdb")
    (data / "landing" / "catalog").symlink_to(
        store / "landing" / "catalog", target_is_directory=True
    )
    for day in days:
        shutil.copytree(store / "landing" / "orders" / day, data / "landing" / "orders" / day)
    return data


def test_late_batch_restages_its_day_once(tmp_path, store_dir, catalog_warehouse):
    data = own_landing(tmp_path, store_dir, [DAY], catalog_warehouse)
    assert stage(data, DAY).success
    first = query(data, "select count(*) from staging.orders")[0][0]
    existing = json.loads(landed_records(store_dir, DAY)[0])
    new_order = copy.deepcopy(existing)
    new_order["o_orderkey"] = 10_000_001
    late = data / "landing" / "orders" / DAY / "batch-999.jsonl"
    late.write_text(json.dumps(new_order) + "\n" + json.dumps(existing) + "\n")
    result = stage(data, DAY)
    assert result.success
    assert query(data, "select count(*) from staging.orders")[0][0] == first + 1
    rejects = query(data, "select source_file, line_number, reason from staging.order_rejects")
    assert rejects == [
        (f"{DAY}/batch-999.jsonl", 2, rejects[0][2]),
    ]
    assert rejects[0][2].startswith(
        f"duplicate of order {existing['o_orderkey']} first received in {DAY}/"
    )
    assert all(checks(result).values())


def _line(record: dict, **changes) -> dict:
    out = copy.deepcopy(record)
    out["lines"][0].update(changes)
    return out


# (name, make the bad record text from a good record, expected reason fragment)
DEFECTS = [
    ("malformed_json", lambda r: json.dumps(r)[:-7], "malformed JSON"),
    ("not_an_object", lambda r: json.dumps([r]), "not a JSON object"),
    (
        "missing_field",
        lambda r: json.dumps({k: v for k, v in r.items() if k != "o_custkey"}),
        "missing o_custkey",
    ),
    ("null_field", lambda r: json.dumps({**r, "o_clerk": None}), "missing o_clerk"),
    (
        "mistyped_total",
        lambda r: json.dumps({**r, "o_totalprice": "12a.5"}),
        "o_totalprice is not a decimal",
    ),
    (
        "mistyped_key",
        lambda r: json.dumps({**r, "o_orderkey": 1.5}),
        "o_orderkey is not an integer",
    ),
    (
        "mistyped_quantity",
        lambda r: json.dumps(_line(r, l_quantity="ten")),
        "line 1: l_quantity is not a decimal",
    ),
    (
        "lines_not_array",
        lambda r: json.dumps({**r, "lines": "x"}),
        "lines is missing, empty or not an array",
    ),
    (
        "no_lines",
        lambda r: json.dumps({**r, "lines": []}),
        "lines is missing, empty or not an array",
    ),
    (
        "three_decimals",
        lambda r: json.dumps(_line(r, l_discount=0.045)),
        "l_discount is not a decimal with two places",
    ),
    (
        "bad_date",
        lambda r: json.dumps({**r, "o_orderdate": "2020-13-45"}),
        "o_orderdate is not a date",
    ),
    (
        "wrong_day",
        lambda r: json.dumps({**r, "o_orderdate": "2020-01-03"}),
        "is not the batch day 2020-01-02",
    ),
    (
        "negative_quantity",
        lambda r: json.dumps(_line(r, l_quantity=-r["lines"][0]["l_quantity"])),
        "l_quantity must be positive",
    ),
    (
        "unknown_customer",
        lambda r: json.dumps({**r, "o_custkey": 999_999_999}),
        "unknown customer 999999999",
    ),
    (
        "unknown_part",
        lambda r: json.dumps(_line(r, l_partkey=999_999_999)),
        "line 1: unknown part 999999999",
    ),
    (
        "total_mismatch",
        lambda r: json.dumps({**r, "o_totalprice": round(r["o_totalprice"] + 0.01, 2)}),
        "does not equal the sum of its lines",
    ),
    (
        "bad_status",
        lambda r: json.dumps({**r, "o_orderstatus": "X"}),
        "o_orderstatus must be O, F or P",
    ),
    (
        "repeated_line_number",
        lambda r: json.dumps({**r, "lines": [r["lines"][0], r["lines"][0]]}),
        "repeated",
    ),
]


@pytest.mark.parametrize(("name", "corrupt", "reason"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_each_kind_of_bad_record_is_rejected_with_its_reason(
    tmp_path, store_dir, catalog_warehouse, name, corrupt, reason
):
    data = own_landing(tmp_path, store_dir, [], catalog_warehouse)
    good, other = (json.loads(r) for r in landed_records(store_dir, DAY)[:2])
    bad_text = corrupt(other)
    batch = data / "landing" / "orders" / DAY / "batch-001.jsonl"
    batch.parent.mkdir(parents=True)
    batch.write_text(json.dumps(good) + "\n" + bad_text + "\n")
    result = stage(data, DAY)
    assert result.success
    assert query(data, "select o_orderkey from staging.orders") == [(good["o_orderkey"],)]
    rejects = query(
        data, "select source_file, line_number, reason, raw_text from staging.order_rejects"
    )
    assert len(rejects) == 1
    source, line, got_reason, raw = rejects[0]
    assert (source, line, raw) == (f"{DAY}/batch-001.jsonl", 2, bad_text)
    assert reason in got_reason
    assert all(checks(result).values())


def test_non_utf8_record_is_rejected_and_kept_as_escaped_text(
    tmp_path, store_dir, catalog_warehouse
):
    data = own_landing(tmp_path, store_dir, [], catalog_warehouse)
    good, other = landed_records(store_dir, DAY)[:2]
    bad = other.replace('"o_comment":"', '"o_comment":"\udcff', 1).encode(
        "utf-8", "surrogateescape"
    )
    batch = data / "landing" / "orders" / DAY / "batch-001.jsonl.gz"
    batch.parent.mkdir(parents=True)
    batch.write_bytes(gzip.compress(bad + b"\n" + good.encode() + b"\n"))
    assert stage(data, DAY).success
    assert query(data, "select count(*) from staging.orders") == [(1,)]
    [(line, reason, raw)] = query(
        data, "select line_number, reason, raw_text from staging.order_rejects"
    )
    assert (line, reason) == (1, "not valid UTF-8")
    assert "\\xff" in raw


def test_unreadable_batch_fails_the_step_naming_the_file(tmp_path, store_dir, catalog_warehouse):
    data = own_landing(tmp_path, store_dir, [DAY], catalog_warehouse)
    assert stage(data, DAY).success
    before = query(data, TABLE_FINGERPRINT)
    broken = data / "landing" / "orders" / DAY / "batch-005.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"o_orderkey": 1}\n')[:-12])
    result = stage(data, DAY, raise_on_error=False)
    assert not result.success
    message = result.failure_data_for_node("staging_orders").error.message
    assert str(broken) in message and "re-export" in message
    # The failed step rolled back: the day is as it was, nothing half-replaced.
    assert query(data, TABLE_FINGERPRINT) == before


def test_missing_catalog_fails_with_the_fix(data_dir):
    result = stage(data_dir, DAY, raise_on_error=False)
    assert not result.success
    assert "materialise the catalog" in result.failure_data_for_node("staging_orders").error.message


def test_catalog_tables_match_the_order_systems_files(data_dir):
    result = load_catalog(data_dir)
    assert result.success
    for table in ("region", "nation", "supplier", "customer", "part", "partsupp"):
        parquet = data_dir / "landing" / "catalog" / f"{table}.parquet"
        assert query(data_dir, f"select count(*) from staging.{table}") == query(
            data_dir, f"select count(*) from '{parquet}'"
        )
    counts = {
        m.asset_key.path[-1]: m.metadata["dagster/row_count"].value
        for m in result.asset_materializations_for_node("staging_catalog")
    }
    assert counts["nation"] == 25 and counts["region"] == 5


@pytest.mark.xdist_group("defect_store")
def test_generated_defects_are_rejected_exactly_and_nothing_is_lost(tmp_path, defect_store):
    data = make_data_dir(tmp_path / "data", defect_store)
    assert load_catalog(data).success
    start, end = "2020-01-01", "2020-03-31"
    result = stage(data, start, end)
    assert result.success and all(checks(result).values())

    expected_rejects, duplicates, records = set(), set(), 0
    for day_dir in sorted((defect_store / "landing" / "orders").glob("2020-0[1-3]-*")):
        for path in day_dir.glob("*.jsonl.gz"):
            records += sum(1 for line in gzip.decompress(path.read_bytes()).split(b"\n") if line)
        manifest = defect_store / "simulator" / "defects" / f"{day_dir.name}.json"
        for defect in json.loads(manifest.read_text()) if manifest.exists() else []:
            where = (f"{day_dir.name}/{defect['file']}", defect["line"])
            (duplicates if defect["kind"] == "duplicate" else expected_rejects).add(where)
    assert expected_rejects and duplicates, "the store should carry both kinds of defect"

    rejects = {
        (source, line): reason
        for source, line, reason in query(
            data, "select source_file, line_number, reason from staging.order_rejects"
        )
    }
    assert set(rejects) == expected_rejects | duplicates
    assert all(rejects[where].startswith("duplicate of order") for where in duplicates)
    staged = query(data, "select count(*), count(distinct o_orderkey) from staging.orders")[0]
    assert staged[0] == staged[1] == records - len(rejects)
    metadata = result.asset_materializations_for_node("staging_orders")[0].metadata
    assert metadata["records_read"].value == records
    assert metadata["records_rejected"].value == len(rejects)


def test_simulated_days_after_the_history_stage_cleanly(tmp_path, store_dir):
    data = own_landing(tmp_path, store_dir, [])
    (data / "simulator").mkdir()
    shutil.copy(store_dir / "simulator" / "store.json", data / "simulator" / "store.json")
    days = catch_up(data, until=date(2026, 8, 5))
    assert days == [date(2026, 8, 3), date(2026, 8, 4), date(2026, 8, 5)]
    assert load_catalog(data).success
    result = stage(data, "2026-08-03", "2026-08-05")
    assert result.success and all(checks(result).values())
    records = sum(len(landed_records(data, day.isoformat())) for day in days)
    assert query(data, "select count(*) from staging.order_rejects") == [(0,)]
    assert query(data, "select count(*) from staging.orders") == [(records,)]
    # Keys of simulated days never collide with the history's.
    assert query(data, "select min(o_orderkey) from staging.orders")[0][0] > 60_000
