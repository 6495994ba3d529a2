"""`orderflow-sim live`: keep landing new order batches for today (UTC), as the order system would.

Each batch is the day's next free batch-NNN.jsonl.gz, written atomically. Its orders are drawn like
a simulated day's (TPC-H's distributions, catalog customers and parts, totals that tie out), from a
random stream of (day, batch number, seed), and their keys continue the day's reserved key block
after the highest key already landed that day, so they never collide with the day's earlier batches,
other days or the history. One writer per day: two live processes would pick the same numbers.
"""

import contextlib
import gzip
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from foundation.layout import batch_name, day_dir
from simulator.atomic import atomic_write_bytes
from simulator.days import _order as draw_order
from simulator.days import check_simulated_day, first_orderkey, order_count
from simulator.errors import SimulatorError
from simulator.landing import encode_batch
from simulator.records import to_json_text
from simulator.seeding import day_rng
from simulator.store import StoreInfo, load_store, orders_per_day

# A live batch is as large, on average, as one of the three batches `orderflow-sim day` writes.
DAY_BATCHES = 3
# batch-NNN keeps three digits so that name order stays arrival order.
MAX_BATCH_NUMBER = 999
BATCH_NUMBER = re.compile(r"batch-(\d+)\.jsonl(?:\.gz)?")
# Matches malformed and non-UTF-8 records too, whose keys were allocated all the same.
ORDER_KEY = re.compile(rb'"o_orderkey"\s*:\s*(\d+)')


@dataclass(frozen=True)
class LiveBatch:
    """One batch file landed by `live`."""

    day: date
    path: Path
    orders: int
    first_key: int
    last_key: int

    def describe(self) -> str:
        """One line for the terminal."""
        return (
            f"{self.day}: {self.path.name} with {self.orders} orders "
            f"(keys {self.first_key}..{self.last_key}) in {self.path.parent}"
        )


class LandedKeys:
    """The highest order key in each landed batch file, read once per file version."""

    def __init__(self) -> None:
        self._max_keys: dict[tuple[Path, int, int], int] = {}

    def highest(self, files: list[Path], start: int, end: int) -> int | None:
        """The highest key in [start, end) among `files`, or None if there is none."""
        highest = None
        for path in files:
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed since the listing
                continue
            version = (path, stat.st_size, stat.st_mtime_ns)
            if version not in self._max_keys:
                self._max_keys[version] = _max_key_in(path, start, end)
            key = self._max_keys[version]
            if key >= start and (highest is None or key > highest):
                highest = key
        return highest


def _max_key_in(path: Path, start: int, end: int) -> int:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    keys = [int(k) for k in ORDER_KEY.findall(data) if start <= int(k) < end]
    return max(keys, default=start - 1)


def _day_batches(directory: Path) -> dict[int, Path]:
    """The batch files of a day directory by number (temporary '.' names excluded)."""
    if not directory.is_dir():
        return {}
    batches = {}
    for path in directory.iterdir():
        match = BATCH_NUMBER.fullmatch(path.name)
        if match and path.is_file():
            batches[int(match.group(1))] = path
    return batches


def land_live_batch(
    data_dir: Path, info: StoreInfo, day: date, *, seed: int = 0, keys: LandedKeys | None = None
) -> LiveBatch:
    """Write the day's next batch of new orders atomically and return what was written."""
    check_simulated_day(info, day)
    directory = day_dir(data_dir, day)
    existing = _day_batches(directory)
    number = max(existing, default=0) + 1
    if number > MAX_BATCH_NUMBER:
        raise SimulatorError(
            f"{directory} already holds batch-{MAX_BATCH_NUMBER:03d}, the last batch name of a "
            "day; land further live batches on a later day"
        )
    start = first_orderkey(info, day)
    end = start + info.day_key_capacity
    highest = (keys or LandedKeys()).highest(sorted(existing.values()), start, end)
    next_key = start if highest is None else highest + 1
    if next_key >= end:
        raise SimulatorError(
            f"the {info.day_key_capacity} order keys reserved for {day} are used up; "
            "land further live batches on a later day"
        )
    rng = day_rng(f"live-{number}", day, info.scale_factor, seed)
    count = order_count(rng, orders_per_day(info.scale_factor) / DAY_BATCHES, end - next_key)
    orders = [draw_order(rng, info, day, next_key + i) for i in range(count)]
    path = directory / batch_name(number)
    atomic_write_bytes(path, encode_batch([to_json_text(order).encode() for order in orders]))
    return LiveBatch(day, path, count, next_key, next_key + count - 1)


def today_utc() -> date:
    """Return today's date in UTC."""
    return datetime.now(UTC).date()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Yield an event set by Ctrl-C or SIGTERM, so the loop ends between two batches."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_live(
    data_dir: Path,
    *,
    interval: float = 30.0,
    batches_per_tick: int = 1,
    until_count: int | None = None,
    day: date | None = None,
    seed: int = 0,
    report: Callable[[LiveBatch], None] | None = None,
    stop: threading.Event | None = None,
    info: StoreInfo | None = None,
) -> int:
    """Land `batches_per_tick` batches every `interval` seconds until stopped; return how many.

    The day is `day`, else today (UTC) at each batch, so a run that spans midnight moves on to
    the new day. Stops after `until_count` batches, when `stop` is set, or with SimulatorError
    when the day's keys or batch names are used up. `info` defaults to the data dir's store.json.
    """
    if batches_per_tick < 1:
        raise SimulatorError(f"batches per tick must be at least 1, got {batches_per_tick}")
    data_dir = Path(data_dir)
    info = info or load_store(data_dir)
    stop = stop or threading.Event()
    keys = LandedKeys()
    written = 0
    while not stop.is_set():
        for _ in range(batches_per_tick):
            if until_count is not None and written >= until_count:
                return written
            batch = land_live_batch(data_dir, info, day or today_utc(), seed=seed, keys=keys)
            written += 1
            if report:
                report(batch)
            if stop.is_set():
                break
        if until_count is not None and written >= until_count:
            break
        stop.wait(interval)
    return written
