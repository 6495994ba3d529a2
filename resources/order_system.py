"""The store's order system, as seen by the pipeline: batches of orders and the product catalog.

The local backend reads the landing zone that the order system drops files into
(`landing/orders/<day>/<batch>.jsonl[.gz]`, `landing/catalog/<table>.parquet`). Batches are only
ever read: the landing zone belongs to the order system. Every record keeps its file and line, so a
rejected record can be traced to the byte it came from.
"""

from __future__ import annotations

import gzip
import queue
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

CATALOG_TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp")
BATCH_SUFFIXES = (".jsonl.gz", ".jsonl")


@dataclass(frozen=True)
class Batch:
    """One file of orders: its day, its name relative to the orders root, and its version."""

    day: date
    name: str
    path: Path
    size: int
    mtime_ns: int

    @property
    def version(self) -> str:
        """A token that changes whenever the file is replaced."""
        return f"{self.size}-{self.mtime_ns}"


class OrderFileError(Exception):
    """A batch file that cannot be read at all (as opposed to a bad record inside it)."""


class OrderSystemResource(dg.ConfigurableResource, ABC):
    """Where orders and the catalog come from; backends differ only in where the files live."""

    @abstractmethod
    def list_batches(self, start: date, end: date) -> list[Batch]:
        """Batches for order days in [start, end), sorted by day and name (arrival order)."""

    @abstractmethod
    def read_records(
        self, batches: list[Batch], chunk_bytes: int = 64 << 20
    ) -> Iterator[pd.DataFrame]:
        """Raw records of the batches, a frame per group of whole days."""

    @abstractmethod
    def catalog_location(self, table: str) -> str:
        """A location DuckDB can read the catalog table's Parquet file from."""


def _read_batch_bytes(batch: Batch) -> bytes:
    try:
        raw = batch.path.read_bytes()
        if batch.name.endswith(".gz"):
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise OrderFileError(
            f"Cannot read order batch {batch.path}: {error}. The file is damaged or truncated; "
            "ask the order system to re-export it under the same name (the next run picks it up), "
            "or move it out of the landing zone to stage the rest of the day."
        ) from error


def split_records(batch: Batch, data: bytes) -> tuple[list[int], list[str], list[bool]]:
    """Split a batch into (line number, text, is valid UTF-8) per non-empty line."""
    try:
        lines = data.decode("utf-8").split("\n")
        numbers = [n for n, line in enumerate(lines, 1) if line.strip()]
        return numbers, [lines[n - 1].rstrip("\r") for n in numbers], [True] * len(numbers)
    except UnicodeDecodeError:
        pass
    # Slow path, only for a file holding bad bytes: judge each line on its own.
    numbers, texts, valid = [], [], []
    for n, raw_line in enumerate(data.split(b"\n"), 1):
        if not raw_line.strip():
            continue
        try:
            text, ok = raw_line.decode("utf-8"), True
        except UnicodeDecodeError:
            text, ok = raw_line.decode("utf-8", errors="backslashreplace"), False
        numbers.append(n)
        texts.append(text.rstrip("\r"))
        valid.append(ok)
    return numbers, texts, valid


class LandingZoneOrderSystem(OrderSystemResource):
    """The order system's landing zone on a local or mounted disk."""

    landing_dir: str

    @property
    def _orders_root(self) -> Path:
        return Path(self.landing_dir) / "orders"

    def list_batches(self, start: date, end: date) -> list[Batch]:
        """Batches for order days in [start, end), sorted by day and name (arrival order)."""
        root = self._orders_root
        if not root.is_dir():
            return []
        batches = []
        for day_dir in sorted(root.iterdir()):
            try:
                day = date.fromisoformat(day_dir.name)
            except ValueError:
                continue
            if not start <= day < end:
                continue
            for path in sorted(day_dir.iterdir()):
                # Names starting with "." are files still being written (atomic rename pending).
                if path.name.startswith(".") or not path.name.endswith(BATCH_SUFFIXES):
                    continue
                stat = path.stat()
                batches.append(
                    Batch(day, f"{day_dir.name}/{path.name}", path, stat.st_size, stat.st_mtime_ns)
                )
        return batches

    def read_records(
        self, batches: list[Batch], chunk_bytes: int = 64 << 20
    ) -> Iterator[pd.DataFrame]:
        """Raw records of the batches, a frame per group of whole days, read one frame ahead.

        Decompressing and splitting the next frame overlaps with the caller's work on this one.
        Columns: record_id (row number in the frame), batch_day, source_file, line_number, raw_text,
        utf8_valid. A day never spans two
        frames, so that duplicates within a day can be found within one frame.
        """
        return _read_ahead(self._frames(batches, chunk_bytes))

    def _frames(self, batches: list[Batch], chunk_bytes: int) -> Iterator[pd.DataFrame]:
        columns: dict[str, list] = {k: [] for k in ("day", "file", "line", "text", "utf8")}
        pending = 0
        for index, batch in enumerate(batches):
            data = _read_batch_bytes(batch)
            numbers, texts, valid = split_records(batch, data)
            count = len(numbers)
            columns["day"].extend([batch.day.isoformat()] * count)
            columns["file"].extend([batch.name] * count)
            columns["line"].extend(numbers)
            columns["text"].extend(texts)
            columns["utf8"].extend(valid)
            pending += len(data)
            day_ends = index + 1 == len(batches) or batches[index + 1].day != batch.day
            if day_ends and pending >= chunk_bytes:
                yield _records_frame(columns)
                columns = {k: [] for k in columns}
                pending = 0
        if columns["line"]:
            yield _records_frame(columns)

    def catalog_location(self, table: str) -> str:
        """The catalog table's Parquet file; fails clearly if the order system has not sent it."""
        if table not in CATALOG_TABLES:
            raise ValueError(f"unknown catalog table {table!r}")
        path = Path(self.landing_dir) / "catalog" / f"{table}.parquet"
        if not path.is_file():
            raise dg.Failure(
                description=(
                    f"Catalog file {path} is missing. Generate the store with "
                    "`orderflow-sim generate --scale 0.01` (or point ORDERFLOW_DATA_DIR at one)."
                ),
                allow_retries=False,
            )
        return str(path)


def _read_ahead(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Produce the next frame in a background thread while the consumer works on the current one."""
    ready: queue.Queue = queue.Queue(maxsize=1)
    done = object()
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in frames:
                if not offer(frame):
                    return
            offer(done)
        except BaseException as error:  # handed to the consumer, raised in its thread
            offer(error)

    producer = threading.Thread(target=produce, name="order-batch-reader", daemon=True)
    producer.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


def _records_frame(columns: dict[str, list]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": pd.RangeIndex(len(columns["line"])).to_numpy(dtype="int64"),
            "batch_day": pd.Series(columns["day"], dtype="object"),
            "source_file": pd.Series(columns["file"], dtype="object"),
            "line_number": pd.Series(columns["line"], dtype="int32"),
            "raw_text": pd.Series(columns["text"], dtype="object"),
            "utf8_valid": pd.Series(columns["utf8"], dtype="bool"),
        }
    )
