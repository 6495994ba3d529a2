"""Helpers shared by the simulator tests: reading batches and checking records."""

import gzip
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from foundation.layout import orders_dir
from simulator.days import line_total_cents
from simulator.records import parse_record


def read_lines(path: Path) -> list[bytes]:
    """Return the records of a batch file (without their newlines)."""
    data = gzip.decompress(path.read_bytes())
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def tree_files(root: Path) -> list[str]:
    """Return the relative paths of every file under root, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def iter_records(data_dir: Path) -> Iterator[tuple[date, Path, int, bytes]]:
    """Yield (day, file, 1-based line number, raw record) for every landed record."""
    for day_path in sorted(orders_dir(data_dir).iterdir()):
        for file in sorted(day_path.glob("batch-*.jsonl.gz")):
            for number, raw in enumerate(read_lines(file), start=1):
                yield date.fromisoformat(day_path.name), file, number, raw


def cents(value: Any) -> int:
    """Return a two-place Decimal amount as integer cents."""
    return int(value * 100)


def total_cents(order: dict[str, Any]) -> int:
    """Return the order total recomputed from its lines with TPC-H's arithmetic."""
    return sum(
        line_total_cents(
            cents(line["l_extendedprice"]), cents(line["l_discount"]), cents(line["l_tax"])
        )
        for line in order["lines"]
    )


def parse(raw: bytes) -> dict[str, Any]:
    """Parse a record, reading amounts as Decimal."""
    return parse_record(raw)
