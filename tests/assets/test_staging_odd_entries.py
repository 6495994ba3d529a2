"""Staging over odd landing entries: oversized records, non-canonical and empty day folders, links."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from resources.order_system import KEPT_BYTES, MAX_RECORD_BYTES
from tests.helpers import load_catalog, query, stage

DAY = "2020-01-02"  # a Thursday: ISO 2020-W01-4


def own_landing(tmp_path: Path, store: Path, days: list[str]) -> Path:
    """A data dir with a private, writable copy of some days' batches and the store's catalog."""
    data = tmp_path / "data"
    (data / "landing" / "orders").mkdir(parents=True)
    shutil.copytree(store / "landing" / "catalog", data / "landing" / "catalog")
    for day in days:
        shutil.copytree(store / "landing" / "orders" / day, data / "landing" / "orders" / day)
    return data


def day_records(data: Path, day: str) -> list[str]:
    records = []
    for path in sorted((data / "landing" / "orders" / day).glob("*.jsonl.gz")):
        records += [
            line for line in gzip.decompress(path.read_bytes()).decode().split("\n") if line
        ]
    return records


def orders_metadata(result) -> dict:
    [orders] = [
        m
        for m in result.asset_materializations_for_node("staging_orders")
        if m.asset_key.path[-1] == "orders"
    ]
    return {key: value.value for key, value in orders.metadata.items()}


def test_a_record_over_the_size_limit_is_rejected_and_accounted_for(tmp_path, store_dir):
    data = own_landing(tmp_path, store_dir, [DAY])
    landed = day_records(data, DAY)
    # A valid order in every respect but its size: today it would be staged.
    padded = json.loads(landed[0])
    padded["o_orderkey"] = 900_000_001
    padded["o_comment"] = "x" * (2 * MAX_RECORD_BYTES)
    late = data / "landing" / "orders" / DAY / "batch-900.jsonl.gz"
    late.write_bytes(gzip.compress(json.dumps(padded).encode() + b"\n", compresslevel=1))
    assert load_catalog(data).success
    result = stage(data, DAY)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    metadata = orders_metadata(result)
    assert metadata["records_read"] == len(landed) + 1
    assert metadata["records_staged"] == len(landed)
    [(line, reason, kept)] = query(
        data,
        "select source_file || ':' || line_number, reason, length(raw_text) "
        "from staging.order_rejects",
    )
    assert line == f"{DAY}/batch-900.jsonl.gz:1"
    assert f"over the limit of {MAX_RECORD_BYTES} bytes per record" in reason
    assert kept == KEPT_BYTES
    assert query(data, "select count(*) from staging.orders where o_orderkey = 900000001") == [(0,)]


def test_only_canonical_day_folders_are_staged_and_the_others_reported(tmp_path, store_dir):
    data = own_landing(tmp_path, store_dir, [DAY])
    orders = data / "landing" / "orders"
    for name in ("20200102", "2020-W01-4"):  # the same day, spelt otherwise: read as copies today
        shutil.copytree(orders / DAY, orders / name)
    assert load_catalog(data).success
    result = stage(data, DAY)
    assert result.success
    metadata = orders_metadata(result)
    assert metadata["records_read"] == len(day_records(data, DAY))
    assert metadata["records_rejected"] == 0
    assert "orders/20200102: " in metadata["ignored_entries"]
    assert "orders/2020-W01-4: " in metadata["ignored_entries"]
    assert "YYYY-MM-DD" in metadata["ignored_entries"]


def test_an_empty_day_folder_says_so_in_the_metadata(tmp_path, store_dir):
    data = own_landing(tmp_path, store_dir, [DAY])
    (data / "landing" / "orders" / "2020-01-03").mkdir()
    assert load_catalog(data).success
    result = stage(data, "2020-01-03")
    assert result.success
    metadata = orders_metadata(result)
    assert metadata["records_read"] == 0
    assert "2020-01-03" in metadata["empty_day_folders"]
    assert "orders/2020-01-03/ holds no batch file" in metadata["empty_day_folders"]


def _link_outside(orders: Path, tmp_path: Path) -> tuple[Path, str]:
    outside = tmp_path / "elsewhere"
    shutil.copytree(orders / DAY, outside)
    link = orders / DAY / "batch-901.jsonl.gz"
    link.symlink_to(next(outside.glob("*.jsonl.gz")))
    return link, "outside the landing zone"


def _dangling_link(orders: Path, tmp_path: Path) -> tuple[Path, str]:
    link = orders / DAY / "batch-901.jsonl.gz"
    link.symlink_to(tmp_path / "gone.jsonl.gz")
    return link, "which does not exist"


def _file_named_like_the_day(orders: Path, tmp_path: Path) -> tuple[Path, str]:
    shutil.rmtree(orders / DAY)
    (orders / DAY).write_text("{}\n")
    return orders / DAY, "is a file, not a day folder"


def _directory_named_like_a_batch(orders: Path, tmp_path: Path) -> tuple[Path, str]:
    (orders / DAY / "batch-901.jsonl.gz").mkdir()
    return orders / DAY / "batch-901.jsonl.gz", "is a directory, not a batch file"


@pytest.mark.parametrize(
    "make_entry",
    [_link_outside, _dangling_link, _file_named_like_the_day, _directory_named_like_a_batch],
)
def test_an_entry_that_cannot_be_staged_fails_the_step_naming_it(tmp_path, store_dir, make_entry):
    data = own_landing(tmp_path, store_dir, [DAY])
    entry, what = make_entry(data / "landing" / "orders", tmp_path)
    assert load_catalog(data).success
    result = stage(data, DAY, raise_on_error=False)
    assert not result.success
    error = result.failure_data_for_node("staging_orders").error
    assert error.cls_name == "Failure"
    assert str(entry) in error.message and what in error.message
