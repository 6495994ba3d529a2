"""The store's order system, as seen by the pipeline: batches of orders and the product catalog.

The local backend reads the landing zone that the order system drops files into
(`landing/orders/<day>/<batch>.jsonl[.gz]`, `landing/catalog/<table>.parquet`). Batches are only
ever read: the landing zone belongs to the order system. Every record keeps its file and line, so a
rejected record can be traced to the byte it came from. Only folders named as a real date
`YYYY-MM-DD` are days; other entries are reported and never read. A batch must be a file inside
the landing zone (a symbolic link may point elsewhere within it), and a record (a line) is at most
MAX_RECORD_BYTES: a longer one becomes a rejected record, read in blocks, never held whole.
"""

from __future__ import annotations

import errno
import gzip
import os
import queue
import stat
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from foundation.layout import CATALOG_TABLES, zone_catalog_path, zone_orders_dir

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd

BATCH_SUFFIXES = (".jsonl.gz", ".jsonl")
# One order is one line of JSON. The largest TPC-H order (7 lines, longest comments) is about
# 2.1 KB, and the scale factor changes how many orders there are, not their size (keys gain a few
# digits at SF 10): 1 MiB leaves a margin of some 500x while keeping a runaway line out of memory.
MAX_RECORD_BYTES = 1 << 20
# What staging.order_rejects keeps of a record over the limit: enough to recognise it.
KEPT_BYTES = 1 << 10
# Batches are read in blocks of this size: memory stays bounded whatever a file holds.
_BLOCK_BYTES = 1 << 20
DAY_FOLDER_RULE = "day folders are named YYYY-MM-DD, a real date"


# Bytes per order in a batch file, a little under the simulator's (gzipped: 186 at SF 1, 207 at
# SF 0.1, 307 at SF 0.01, whose small files compress worse; as text: 1,070 to 1,290). Sizing chunks
# from a run's file sizes then errs towards more orders, that is smaller chunks.
GZIPPED_BYTES_PER_ORDER, TEXT_BYTES_PER_ORDER = 180, 1_000


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


def estimated_orders(batches: Iterable[Batch]) -> int:
    """About how many orders the batch files hold, from their sizes, without reading them."""
    return sum(
        batch.size
        // (GZIPPED_BYTES_PER_ORDER if batch.name.endswith(".gz") else TEXT_BYTES_PER_ORDER)
        for batch in batches
    )


@dataclass
class Listing:
    """What the landing zone holds for a window of days: batches to read, entries left alone."""

    batches: list[Batch]
    # "orders/<entry>: why it is not read", for entries that are neither a day nor a batch.
    ignored: list[str] = field(default_factory=list)
    # Day folders of the window holding no batch file.
    empty_days: list[str] = field(default_factory=list)


class OrderFileError(Exception):
    """A landing entry that should hold orders but cannot be read (not a bad record inside it)."""


def parse_day(name: str) -> date | None:
    """The day a folder under orders/ stands for, only if it is named exactly YYYY-MM-DD."""
    try:
        day = date.fromisoformat(name)
    except ValueError:
        return None
    # fromisoformat also takes "20210304" and "2021-W09-4"; the order system writes YYYY-MM-DD.
    return day if day.isoformat() == name else None


def describe(path: Path) -> str:
    """What a landing entry actually is, in words: a file, a dangling or looping link, ..."""
    try:
        if not path.is_symlink():
            return _kind(path.stat().st_mode)
        target = path.readlink()
        try:
            return f"a symbolic link to {target}, which is {_kind(path.stat().st_mode)}"
        except FileNotFoundError:
            return f"a symbolic link to {target}, which does not exist"
        except OSError as error:
            if error.errno == errno.ELOOP:
                return f"a symbolic link to {target} that leads into a loop of links"
            return f"a symbolic link to {target} that cannot be followed ({error.strerror})"
    except FileNotFoundError:
        return "gone (removed or renamed since it was listed)"
    except OSError as error:
        return f"unreadable ({error.strerror})"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a file"
    return "neither a file nor a directory (a pipe, socket or device)"


class OrderSystemResource(dg.ConfigurableResource, ABC):
    """Where orders and the catalog come from; backends differ only in where the files live."""

    @abstractmethod
    def list_batches(self, start: date, end: date) -> Listing:
        """Batches for order days in [start, end), sorted by day and name (arrival order)."""

    @abstractmethod
    def read_records(
        self, batches: list[Batch], chunk_bytes: int = 64 << 20
    ) -> Iterator[pd.DataFrame]:
        """Raw records of the batches, a frame per group of whole days."""

    @abstractmethod
    def catalog_location(self, table: str) -> str:
        """A location DuckDB can read the catalog table's Parquet file from."""


@dataclass
class _LongLine:
    """A line over MAX_RECORD_BYTES: its first bytes and its length, never the whole of it."""

    head: bytes
    size: int


def _lines(stream) -> Iterator[list[bytes | _LongLine]]:
    """A binary stream's lines, without their line breaks, a list per block read."""
    tail: bytes | _LongLine = b""
    while block := stream.read(_BLOCK_BYTES):
        pieces: list = block.split(b"\n")
        if isinstance(tail, _LongLine):
            tail.size += len(pieces[0])
            pieces[0] = tail
        else:
            pieces[0] = tail + pieces[0]
        tail = _capped(pieces.pop())
        yield [_capped(piece) for piece in pieces]
    if isinstance(tail, _LongLine) or tail:
        yield [tail]


def _capped(line: bytes | _LongLine) -> bytes | _LongLine:
    if isinstance(line, bytes) and len(line) > MAX_RECORD_BYTES:
        return _LongLine(line[:KEPT_BYTES], len(line))
    return line


def _decode(line: bytes | _LongLine) -> tuple[str, str | None]:
    """A line's text and what keeps it from being read as a record (None: nothing)."""
    if isinstance(line, _LongLine):
        return line.head.decode("utf-8", "backslashreplace"), (
            f"record of {line.size} bytes is over the limit of {MAX_RECORD_BYTES} bytes per "
            f"record; raw_text keeps its first {KEPT_BYTES} bytes"
        )
    try:
        return line.decode("utf-8").rstrip("\r"), None
    except UnicodeDecodeError:
        return line.decode("utf-8", "backslashreplace").rstrip("\r"), "not valid UTF-8"


def _read_batch(batch: Batch) -> tuple[list[int], list[str], list[str | None], int]:
    """(line number, text, problem) per non-empty line of a batch, and its size uncompressed."""
    numbers, texts, problems = [], [], []
    number = 0
    try:
        with gzip.open(batch.path) if batch.name.endswith(".gz") else open(batch.path, "rb") as f:
            for lines in _lines(f):
                for text, problem in map(_decode, lines):
                    number += 1
                    if problem or text.strip():
                        numbers.append(number)
                        texts.append(text)
                        problems.append(problem)
            return numbers, texts, problems, f.tell()
    except FileNotFoundError as error:
        raise OrderFileError(
            f"Order batch {batch.path} no longer exists: it was removed or renamed after the step "
            "listed its day; run the step again (it lists the day anew)."
        ) from error
    except IsADirectoryError as error:
        raise _not_a_batch(batch.path) from error
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise OrderFileError(
            f"Cannot read order batch {batch.path}: {error}. The file is damaged or truncated; "
            "ask the order system to re-export it under the same name (the next run picks it up), "
            "or move it out of the landing zone to stage the rest of the day."
        ) from error
    except OSError as error:
        raise OrderFileError(
            f"Cannot read order batch {batch.path}: {error.strerror}. Make it readable to the user "
            "running Dagster, or move it out of the landing zone to stage the rest of the day."
        ) from error


def _checked(path: Path, zone: Path, folder: bool) -> os.stat_result:
    """The status of `path`, which must be a folder (or a regular file) inside the landing zone."""
    try:
        status = path.stat()
    except FileNotFoundError as error:
        if path.is_symlink():
            raise OrderFileError(
                f"{path} is {describe(path)}. Restore what it points to, or remove the link."
            ) from error
        raise OrderFileError(
            f"{path} no longer exists: it was removed or renamed while the step listed the "
            "landing zone; run the step again."
        ) from error
    except OSError as error:
        raise OrderFileError(
            f"{path} is {describe(path)}. Remove it, or make it readable to the user running "
            "Dagster."
        ) from error
    if path.is_symlink() and not path.resolve().is_relative_to(zone):
        raise OrderFileError(
            f"{path} is a symbolic link to {path.resolve()}, outside the landing zone {zone}: the "
            f"pipeline reads only what is inside it; copy the {'folder' if folder else 'file'} "
            "into the landing zone in place of the link, or remove the link."
        )
    if folder and not stat.S_ISDIR(status.st_mode):
        raise OrderFileError(
            f"{path} is {describe(path)}, not a day folder: batches go in "
            f"{path}/<batch>.jsonl.gz. Move it out of the landing zone (and have the order system "
            "re-send its orders as batches in that folder)."
        )
    if not folder and not stat.S_ISREG(status.st_mode):
        raise _not_a_batch(path)
    return status


def _not_a_batch(path: Path) -> OrderFileError:
    return OrderFileError(
        f"{path} is {describe(path)}, not a batch file (a .jsonl or .jsonl.gz file). Move it out "
        "of the landing zone, and have the order system re-send what it should have held."
    )


def _entries(folder: Path) -> list[Path]:
    """The visible entries of a folder, by name; names starting with "." are still being written."""
    try:
        return sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    except OSError as error:
        raise OrderFileError(
            f"Cannot list {folder}: {error.strerror}. Make it readable to the user running Dagster."
        ) from error


class LandingZoneOrderSystem(OrderSystemResource):
    """The order system's landing zone on a local or mounted disk."""

    landing_dir: str

    @property
    def _orders_root(self) -> Path:
        return zone_orders_dir(Path(self.landing_dir))

    def list_batches(self, start: date, end: date) -> Listing:
        """Batches for order days in [start, end), sorted by day and name (arrival order).

        Raises OrderFileError for an entry of the window that should hold orders and cannot be
        read: staging its day without them would replace the day's orders with fewer.
        """
        root = self._orders_root
        if not os.path.lexists(root):
            return Listing([])
        zone = Path(self.landing_dir).resolve()
        _checked(root, zone, folder=True)
        listing = Listing([])
        for day_dir in _entries(root):
            day = parse_day(day_dir.name)
            if day is None:
                listing.ignored.append(f"orders/{day_dir.name}: not a day, {DAY_FOLDER_RULE}")
                continue
            if not start <= day < end:
                continue
            _checked(day_dir, zone, folder=True)
            found = len(listing.batches)
            for path in _entries(day_dir):
                name = f"{day_dir.name}/{path.name}"
                if not path.name.endswith(BATCH_SUFFIXES):
                    listing.ignored.append(
                        f"orders/{name}: not a batch, whose name ends in .jsonl or .jsonl.gz"
                    )
                    continue
                status = _checked(path, zone, folder=False)
                listing.batches.append(Batch(day, name, path, status.st_size, status.st_mtime_ns))
            if len(listing.batches) == found:
                listing.empty_days.append(day_dir.name)
        return listing

    def read_records(
        self, batches: list[Batch], chunk_bytes: int = 64 << 20
    ) -> Iterator[pd.DataFrame]:
        """Raw records of the batches, a frame per group of whole days, read one frame ahead.

        Decompressing and splitting the next frame overlaps with the caller's work on this one.
        Columns: record_id (row number in the frame), batch_day, source_file, line_number, raw_text,
        read_problem (why the line cannot be a record: not UTF-8, over the size limit; or None).
        A day never spans two frames, so that duplicates within a day can be found within one frame.
        """
        return _read_ahead(self._frames(batches, chunk_bytes))

    def _frames(self, batches: list[Batch], chunk_bytes: int) -> Iterator[pd.DataFrame]:
        columns: dict[str, list] = {k: [] for k in ("day", "file", "line", "text", "problem")}
        pending = 0
        for index, batch in enumerate(batches):
            numbers, texts, problems, size = _read_batch(batch)
            count = len(numbers)
            columns["day"].extend([batch.day.isoformat()] * count)
            columns["file"].extend([batch.name] * count)
            columns["line"].extend(numbers)
            columns["text"].extend(texts)
            columns["problem"].extend(problems)
            pending += size
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
        path = zone_catalog_path(Path(self.landing_dir), table)
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
    import pandas as pd

    return pd.DataFrame(
        {
            "record_id": pd.RangeIndex(len(columns["line"])).to_numpy(dtype="int64"),
            "batch_day": pd.Series(columns["day"], dtype="object"),
            "source_file": pd.Series(columns["file"], dtype="object"),
            "line_number": pd.Series(columns["line"], dtype="int32"),
            "raw_text": pd.Series(columns["text"], dtype="object"),
            "read_problem": pd.Series(columns["problem"], dtype="object"),
        }
    )
