"""The landing-zone order system: listing batches, reading records, clear errors."""

from __future__ import annotations

import gzip
from datetime import date

import dagster as dg
import pytest

from resources.order_system import LandingZoneOrderSystem, OrderFileError


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    for day, name, body in [
        ("2021-05-01", "batch-001.jsonl.gz", gzip.compress(b'{"a":1}\n{"a":2}\n')),
        ("2021-05-01", "batch-002.jsonl", b'{"a":3}\r\n\n{"a":4}\n'),
        ("2021-05-02", "batch-001.jsonl", b'{"a":5}\n'),
        ("2021-05-02", ".batch-002.jsonl.gz.123.tmp", b"partial"),
        ("2021-05-02", "notes.txt", b"not a batch"),
        ("2021-05-03", "batch-001.jsonl", b'{"a":6}\n'),
    ]:
        (root / "orders" / day).mkdir(parents=True, exist_ok=True)
        (root / "orders" / day / name).write_bytes(body)
    (root / "orders" / "not-a-day").mkdir()
    return root


def test_lists_batches_of_the_window_in_arrival_order(landing):
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    batches = system.list_batches(date(2021, 5, 1), date(2021, 5, 3))
    assert [b.name for b in batches] == [
        "2021-05-01/batch-001.jsonl.gz",
        "2021-05-01/batch-002.jsonl",
        "2021-05-02/batch-001.jsonl",
    ]
    assert all(b.version for b in batches)


def test_reads_records_with_their_file_and_line(landing):
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    batches = system.list_batches(date(2021, 5, 1), date(2021, 5, 4))
    frames = list(system.read_records(batches, chunk_bytes=1))
    # A frame per day when the chunk is tiny: a day is never split across frames.
    assert [sorted(set(f["batch_day"])) for f in frames] == [
        ["2021-05-01"],
        ["2021-05-02"],
        ["2021-05-03"],
    ]
    first = frames[0]
    assert list(
        zip(first["source_file"], first["line_number"], first["raw_text"], strict=True)
    ) == [
        ("2021-05-01/batch-001.jsonl.gz", 1, '{"a":1}'),
        ("2021-05-01/batch-001.jsonl.gz", 2, '{"a":2}'),
        ("2021-05-01/batch-002.jsonl", 1, '{"a":3}'),
        ("2021-05-01/batch-002.jsonl", 3, '{"a":4}'),
    ]
    assert list(system.read_records([])) == []


def test_bad_bytes_are_kept_per_line(landing):
    path = landing / "orders" / "2021-05-03" / "batch-002.jsonl"
    path.write_bytes(b'{"a":7}\n{"a":"\xff"}\n')
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    [frame] = system.read_records(system.list_batches(date(2021, 5, 3), date(2021, 5, 4)))
    rows = list(zip(frame["line_number"], frame["raw_text"], frame["utf8_valid"], strict=True))
    assert rows[-2:] == [(1, '{"a":7}', True), (2, '{"a":"\\xff"}', False)]


def test_unreadable_file_names_the_file_and_the_fix(landing):
    path = landing / "orders" / "2021-05-03" / "batch-002.jsonl.gz"
    path.write_bytes(b"\x1f\x8b this is not gzip")
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    with pytest.raises(OrderFileError, match="re-export") as error:
        list(system.read_records(system.list_batches(date(2021, 5, 3), date(2021, 5, 4))))
    assert str(path) in str(error.value)


def test_missing_catalog_is_a_clear_permanent_failure(tmp_path):
    system = LandingZoneOrderSystem(landing_dir=str(tmp_path))
    with pytest.raises(dg.Failure, match="orderflow-sim generate"):
        system.catalog_location("customer")
    with pytest.raises(ValueError):
        system.catalog_location("../../etc/passwd")
