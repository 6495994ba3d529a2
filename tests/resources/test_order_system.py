"""The landing-zone order system: listing batches, reading records, clear errors."""

from __future__ import annotations

import gzip
import tracemalloc
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from foundation import layout
from resources.order_system import (
    KEPT_BYTES,
    MAX_RECORD_BYTES,
    LandingZoneOrderSystem,
    OrderFileError,
    estimated_orders,
)


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


def day_batches(system: LandingZoneOrderSystem, day: str):
    """The batches of one day, as the staging step lists them."""
    first = date.fromisoformat(day)
    return system.list_batches(first, date.fromordinal(first.toordinal() + 1)).batches


def test_lists_batches_of_the_window_in_arrival_order(landing):
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    batches = system.list_batches(date(2021, 5, 1), date(2021, 5, 3)).batches
    assert [b.name for b in batches] == [
        "2021-05-01/batch-001.jsonl.gz",
        "2021-05-01/batch-002.jsonl",
        "2021-05-02/batch-001.jsonl",
    ]
    assert all(b.version for b in batches)


def test_the_orders_estimated_from_file_sizes_are_as_many_or_a_few_more(store_dir, tmp_path):
    # Sizing chunks from the files' sizes errs towards more orders (smaller chunks), not fewer.
    system = LandingZoneOrderSystem(landing_dir=str(layout.landing_dir(store_dir)))
    batches = system.list_batches(date(2020, 1, 1), date(2020, 7, 1)).batches
    landed = sum(len(frame) for frame in system.read_records(batches))
    assert landed > 1_000
    assert landed <= estimated_orders(batches) <= 2 * landed  # SF 0.01's files compress worst
    # The same orders as text files are estimated on their own scale.
    text = tmp_path / "landing"
    for batch in batches:
        unzipped = text / "orders" / batch.name.removesuffix(".gz")
        unzipped.parent.mkdir(parents=True, exist_ok=True)
        unzipped.write_bytes(gzip.decompress(batch.path.read_bytes()))
    as_text = LandingZoneOrderSystem(landing_dir=str(text)).list_batches(
        date(2020, 1, 1), date(2020, 7, 1)
    )
    assert {batch.name for batch in as_text.batches} == {
        batch.name.removesuffix(".gz") for batch in batches
    }
    assert landed <= estimated_orders(as_text.batches) <= 1.2 * landed


def test_reads_records_with_their_file_and_line(landing):
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    batches = system.list_batches(date(2021, 5, 1), date(2021, 5, 4)).batches
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
    [frame] = system.read_records(day_batches(system, "2021-05-03"))
    rows = list(zip(frame["line_number"], frame["raw_text"], frame["read_problem"], strict=True))
    assert rows[-2:] == [(1, '{"a":7}', None), (2, '{"a":"\\xff"}', "not valid UTF-8")]


def test_unreadable_file_names_the_file_and_the_fix(landing):
    path = landing / "orders" / "2021-05-03" / "batch-002.jsonl.gz"
    path.write_bytes(b"\x1f\x8b this is not gzip")
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    with pytest.raises(OrderFileError, match="re-export") as error:
        list(system.read_records(day_batches(system, "2021-05-03")))
    assert str(path) in str(error.value) and "damaged or truncated" in str(error.value)


def test_missing_catalog_is_a_clear_permanent_failure(tmp_path):
    system = LandingZoneOrderSystem(landing_dir=str(tmp_path))
    with pytest.raises(dg.Failure, match="orderflow-sim generate"):
        system.catalog_location("customer")
    with pytest.raises(ValueError):
        system.catalog_location("../../etc/passwd")


def listing_error(system: LandingZoneOrderSystem, day: str) -> str:
    """The message of the error that listing and reading `day` raise."""
    with pytest.raises(OrderFileError) as error:
        list(system.read_records(day_batches(system, day)))
    return str(error.value)


def test_a_symlink_out_of_the_landing_zone_is_refused(landing, tmp_path):
    outside = tmp_path / "elsewhere"
    (outside / "2021-05-04").mkdir(parents=True)
    (outside / "secret.jsonl").write_bytes(b'{"a":9}\n')
    (outside / "2021-05-04" / "batch-001.jsonl").write_bytes(b'{"a":10}\n')
    system = LandingZoneOrderSystem(landing_dir=str(landing))

    link = landing / "orders" / "2021-05-03" / "batch-002.jsonl"
    link.symlink_to(outside / "secret.jsonl")
    message = listing_error(system, "2021-05-03")
    assert str(link) in message and str(outside / "secret.jsonl") in message
    assert "outside the landing zone" in message and "copy the file into" in message

    day_link = landing / "orders" / "2021-05-04"
    day_link.symlink_to(outside / "2021-05-04", target_is_directory=True)
    message = listing_error(system, "2021-05-04")
    assert str(day_link) in message and "outside the landing zone" in message


def test_a_landing_zone_reached_through_a_symlink_is_read(landing, tmp_path):
    """The tests' layout: `data/landing` links to a shared store; links within the zone are fine."""
    (landing / "orders" / "2021-05-03" / "batch-002.jsonl").symlink_to(
        Path("..") / "2021-05-02" / "batch-001.jsonl"
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "landing").symlink_to(landing, target_is_directory=True)
    system = LandingZoneOrderSystem(landing_dir=str(data / "landing"))
    [frame] = system.read_records(day_batches(system, "2021-05-03"))
    assert list(frame["raw_text"]) == ['{"a":6}', '{"a":5}']


def test_only_canonical_dates_are_day_folders(landing):
    # All of them name 2021-05-04 (a Tuesday, ISO week 18) or no day at all.
    for name in ("20210504", "2021-W18-2", "2021-5-4", "2021-02-30"):
        (landing / "orders" / name).mkdir()
        (landing / "orders" / name / "batch-001.jsonl").write_bytes(b'{"a":11}\n')
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    listing = system.list_batches(date(2021, 2, 1), date(2021, 6, 1))
    assert [b.day.isoformat() for b in listing.batches] == ["2021-05-01"] * 2 + [
        "2021-05-02",
        "2021-05-03",
    ]
    ignored = "\n".join(listing.ignored)
    for name in ("20210504", "2021-W18-2", "2021-5-4", "2021-02-30", "not-a-day"):
        assert f"orders/{name}: " in ignored
    assert "YYYY-MM-DD" in ignored
    # Files that are not batches are reported too; files being written (".…") are not.
    assert "orders/2021-05-02/notes.txt: " in ignored and ".batch-002" not in ignored


def test_an_empty_day_folder_is_reported(landing):
    (landing / "orders" / "2021-05-04").mkdir()
    (landing / "orders" / "2021-05-05").mkdir()
    (landing / "orders" / "2021-05-05" / ".batch-001.jsonl.gz.77.tmp").write_bytes(b"partial")
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    listing = system.list_batches(date(2021, 5, 3), date(2021, 5, 7))
    assert [b.name for b in listing.batches] == ["2021-05-03/batch-001.jsonl"]
    assert listing.empty_days == ["2021-05-04", "2021-05-05"]


def test_a_dangling_symlink_is_a_clear_error(landing, tmp_path):
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    batch = landing / "orders" / "2021-05-03" / "batch-002.jsonl.gz"
    batch.symlink_to(landing / "orders" / "2021-05-03" / "gone.jsonl.gz")
    message = listing_error(system, "2021-05-03")
    assert str(batch) in message and "does not exist" in message and "remove the link" in message

    day = landing / "orders" / "2021-05-04"
    day.symlink_to(tmp_path / "unmounted" / "2021-05-04", target_is_directory=True)
    message = listing_error(system, "2021-05-04")
    assert str(day) in message and "does not exist" in message

    loop = landing / "orders" / "2021-05-05"
    loop.symlink_to(loop)
    message = listing_error(system, "2021-05-05")
    assert str(loop) in message and "loop" in message


def test_a_file_named_like_a_day_is_a_clear_error(landing):
    (landing / "orders" / "2021-05-04").write_bytes(b'{"a":12}\n')
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    message = listing_error(system, "2021-05-04")
    assert str(landing / "orders" / "2021-05-04") in message
    assert "is a file, not a day folder" in message and "2021-05-04/<batch>.jsonl" in message
    # Other days are not held up by it.
    assert len(day_batches(system, "2021-05-03")) == 1


def test_a_directory_named_like_a_batch_says_so(landing):
    directory = landing / "orders" / "2021-05-03" / "batch-002.jsonl.gz"
    directory.mkdir()
    message = listing_error(LandingZoneOrderSystem(landing_dir=str(landing)), "2021-05-03")
    assert str(directory) in message and "is a directory, not a batch file" in message
    assert "damaged" not in message


def test_a_batch_gone_before_it_is_read_says_so(landing):
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    batches = day_batches(system, "2021-05-03")
    batches[0].path.unlink()
    with pytest.raises(OrderFileError) as error:
        list(system.read_records(batches))
    message = str(error.value)
    assert str(batches[0].path) in message and "no longer exists" in message
    assert "damaged" not in message and "run the step again" in message


def test_a_record_over_the_size_limit_is_rejected_without_being_held_whole(landing):
    """A 50 MB line becomes one record with a reason and its first bytes, read in small blocks."""
    huge = b'{"a":"' + b"x" * (50 << 20) + b'"}'
    at_limit = b'{"a":"' + b"y" * (MAX_RECORD_BYTES - 8) + b'"}'
    path = landing / "orders" / "2021-05-03" / "batch-002.jsonl.gz"
    path.write_bytes(
        gzip.compress(b'{"a":7}\n' + huge + b"\r\n" + at_limit + b'\n{"a":8}', compresslevel=1)
    )
    system = LandingZoneOrderSystem(landing_dir=str(landing))
    batches = day_batches(system, "2021-05-03")
    tracemalloc.start()
    try:
        [frame] = system.read_records(batches)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20
    rows = frame[frame["source_file"] == "2021-05-03/batch-002.jsonl.gz"]
    assert list(rows["line_number"]) == [1, 2, 3, 4]
    problems = list(rows["read_problem"])
    assert problems[0] is None and problems[2] is None and problems[3] is None
    assert problems[1] == (
        f"record of {len(huge) + 1} bytes is over the limit of {MAX_RECORD_BYTES} bytes per "
        f"record; raw_text keeps its first {KEPT_BYTES} bytes"
    )
    texts = list(rows["raw_text"])
    assert texts[1] == huge[:KEPT_BYTES].decode() and texts[2] == at_limit.decode()
