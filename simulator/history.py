"""`generate`: the store's catalog and TPC-H order history, landed as daily batches.

Flow: tpchgen-cli writes TPC-H parquet into a scratch dir under DATA/simulator/; the six catalog
tables are copied unchanged into landing/catalog; DuckDB joins orders with their lines, moves dates
28 years later and renders each order as one JSON line, date window by date window (bounded
memory), streamed to Python in chunks; Python splits each day into batches and lands them
atomically. store.json is written last, so its presence means the store is complete. The same
scale factor and options always give byte-identical files. Progress goes to `progress` as whole
lines (no carriage returns, so a log stays readable): each window's query, and every 5 % of the
history's orders with the day reached and the time left.
"""

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

from foundation.layout import (
    CATALOG_TABLES,
    catalog_dir,
    catalog_path,
    landing_dir,
    orders_dir,
    simulator_dir,
)
from simulator.atomic import atomic_copy
from simulator.defects import DefectKind, KeyLimits
from simulator.errors import SimulatorError, StoreExistsError
from simulator.landing import DefectOptions, validate_options, write_day
from simulator.store import (
    HISTORY_END,
    HISTORY_START,
    TPCH_END,
    TPCH_START,
    YEAR_SHIFT,
    StoreInfo,
    day_key_capacity,
    orders_per_day,
    save_store,
)

Progress = Callable[[str], None]

DUCKDB_MEMORY_LIMIT = "2GB"
# About this many orders per DuckDB query keeps the per-window aggregation well under the limit.
ORDERS_PER_WINDOW = 250_000
FETCH_ROWS = 10_000
PROGRESS_STEPS = 20  # a line per 5 % of the history's orders

# One JSON line per order, keys in contract order; DECIMAL(15,2)::VARCHAR prints two decimals.
# Assembled by concatenation because to_json() renders decimals through binary floats (17.0).
HISTORY_SQL = """
WITH window_orders AS (
    SELECT *
    FROM read_parquet($orders)
    WHERE o_orderdate BETWEEN $first_day AND $last_day
),
order_lines AS (
    SELECT
        l_orderkey,
        '[' || string_agg(
            '{"l_linenumber":' || l_linenumber
            || ',"l_partkey":' || l_partkey
            || ',"l_suppkey":' || l_suppkey
            || ',"l_quantity":' || l_quantity
            || ',"l_extendedprice":' || l_extendedprice
            || ',"l_discount":' || l_discount
            || ',"l_tax":' || l_tax
            || ',"l_commitdate":"' || CAST(l_commitdate + to_years($year_shift) AS DATE)
            || '","l_shipinstruct":' || to_json(l_shipinstruct)
            || ',"l_shipmode":' || to_json(l_shipmode)
            || ',"l_comment":' || to_json(l_comment)
            || '}',
            ',' ORDER BY l_linenumber
        ) || ']' AS lines_json,
        count(*) AS line_count
    FROM read_parquet($lineitem)
    WHERE l_orderkey IN (SELECT o_orderkey FROM window_orders)
    GROUP BY l_orderkey
)
SELECT
    CAST(o.o_orderdate + to_years($year_shift) AS DATE) AS order_day,
    '{"o_orderkey":' || o.o_orderkey
    || ',"o_custkey":' || o.o_custkey
    || ',"o_orderstatus":' || to_json(o.o_orderstatus)
    || ',"o_totalprice":' || o.o_totalprice
    || ',"o_orderdate":"' || CAST(o.o_orderdate + to_years($year_shift) AS DATE)
    || '","o_orderpriority":' || to_json(o.o_orderpriority)
    || ',"o_clerk":' || to_json(o.o_clerk)
    || ',"o_shippriority":' || o.o_shippriority
    || ',"o_comment":' || to_json(o.o_comment)
    || ',"lines":' || l.lines_json
    || '}' AS record,
    l.line_count
FROM window_orders AS o
JOIN order_lines AS l ON l.l_orderkey = o.o_orderkey
ORDER BY order_day, o.o_orderkey
"""


@dataclass(frozen=True)
class GenerateSummary:
    """Counts of what `generate_store` landed."""

    orders: int
    lines: int
    files: int
    days: int
    corrupted: int
    duplicated: int


def find_tpchgen() -> Path:
    """Return the tpchgen-cli executable (PATH, else beside the running Python)."""
    found = shutil.which("tpchgen-cli")
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / "tpchgen-cli"
    if beside.is_file():
        return beside
    raise SimulatorError(
        "tpchgen-cli not found on PATH or next to the Python interpreter; "
        "install it with `pip install tpchgen-cli` (it is a dependency of this project)"
    )


def run_tpchgen(scale: float, output_dir: Path) -> None:
    """Generate all TPC-H tables at `scale` as parquet files in `output_dir`."""
    command = [
        str(find_tpchgen()),
        "parquet",
        "--scale-factor",
        _format_scale(scale),
        "--output-dir",
        str(output_dir),
        "--quiet",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SimulatorError(
            f"tpchgen-cli failed (exit {completed.returncode}): {completed.stderr.strip()}"
        )


def store_exists(data_dir: Path) -> bool:
    """Return True if the data dir already holds (part of) a store."""
    return catalog_dir(data_dir).exists() or orders_dir(data_dir).exists()


def generate_store(
    data_dir: Path,
    scale: float,
    *,
    batches: int = 2,
    force: bool = False,
    corrupt_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> GenerateSummary:
    """Generate the catalog and the order history at scale factor `scale` into `data_dir`."""
    data_dir = Path(data_dir)
    if not scale > 0:
        raise SimulatorError(f"scale factor must be positive, got {scale}")
    validate_options(batches, corrupt_rate, duplicate_rate)
    report = progress or (lambda _message: None)
    if store_exists(data_dir):
        if not force:
            raise StoreExistsError(
                f"{data_dir} already holds a store ({landing_dir(data_dir)}); "
                "pass --force to delete it and generate a new one"
            )
        shutil.rmtree(landing_dir(data_dir), ignore_errors=True)
        shutil.rmtree(simulator_dir(data_dir), ignore_errors=True)
    simulator_dir(data_dir).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tpchgen-", dir=simulator_dir(data_dir)))
    try:
        started = time.monotonic()
        report(f"running tpchgen-cli at scale factor {_format_scale(scale)}")
        run_tpchgen(scale, scratch)
        for table in CATALOG_TABLES:
            atomic_copy(scratch / f"{table}.parquet", catalog_path(data_dir, table))
        report(f"catalog landed in {catalog_dir(data_dir)} ({time.monotonic() - started:.1f} s)")
        with _connect(scratch) as con:
            info = _describe(con, scratch, scale, batches, seed, corrupt_rate, duplicate_rate)
            summary = _land_history(
                con,
                scratch,
                data_dir,
                info,
                DefectOptions(corrupt_rate, duplicate_rate, seed),
                report,
                started,
            )
        save_store(data_dir, info)
        report(
            f"done: {summary.orders:,} orders, {summary.lines:,} lines in {summary.files:,} files "
            f"over {summary.days:,} days ({time.monotonic() - started:.1f} s)"
        )
        return summary
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _format_scale(scale: float) -> str:
    return f"{scale:g}"


def _connect(scratch: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(
        config={"memory_limit": DUCKDB_MEMORY_LIMIT, "temp_directory": str(scratch / "spill")}
    )


def _describe(
    con: duckdb.DuckDBPyConnection,
    scratch: Path,
    scale: float,
    batches: int,
    seed: int,
    corrupt_rate: float,
    duplicate_rate: float,
) -> StoreInfo:
    def scalar(sql: str, table: str) -> int:
        row = con.execute(sql, [str(scratch / f"{table}.parquet")]).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    count = "SELECT count(*) FROM read_parquet(?)"
    return StoreInfo(
        scale_factor=scale,
        history_start=HISTORY_START.isoformat(),
        history_end=HISTORY_END.isoformat(),
        max_history_orderkey=scalar("SELECT max(o_orderkey) FROM read_parquet(?)", "orders"),
        customer_count=scalar(count, "customer"),
        part_count=scalar(count, "part"),
        supplier_count=scalar(count, "supplier"),
        day_key_capacity=day_key_capacity(scale),
        clerk_count=max(1, int(scale * 1000)),
        history_orders=scalar(count, "orders"),
        history_lines=scalar(count, "lineitem"),
        batches=batches,
        seed=seed,
        corrupt_rate=corrupt_rate,
        duplicate_rate=duplicate_rate,
    )


def _windows(scale: float) -> Iterator[tuple[date, date]]:
    """Yield consecutive TPC-H date ranges of about ORDERS_PER_WINDOW orders each."""
    span = max(1, int(ORDERS_PER_WINDOW / orders_per_day(scale)))
    first = TPCH_START
    while first <= TPCH_END:
        last = min(first + timedelta(days=span - 1), TPCH_END)
        yield first, last
        first = last + timedelta(days=1)


def _shifted(tpch_day: date) -> date:
    return tpch_day.replace(year=tpch_day.year + YEAR_SHIFT)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _history_days(
    con: duckdb.DuckDBPyConnection, scratch: Path, scale: float, report: Progress
) -> Iterator[tuple[date, list[bytes], int]]:
    """Yield (order date, JSON lines in o_orderkey order, line item count) day by day."""
    windows = list(_windows(scale))
    for number, (first, last) in enumerate(windows, 1):
        report(
            f"reading the orders of {_shifted(first)} .. {_shifted(last)} with their lines "
            f"(query {number} of {len(windows)})"
        )
        cursor = con.execute(
            HISTORY_SQL,
            {
                "orders": str(scratch / "orders.parquet"),
                "lineitem": str(scratch / "lineitem.parquet"),
                "first_day": first,
                "last_day": last,
                "year_shift": YEAR_SHIFT,
            },
        )
        day: date | None = None
        records: list[bytes] = []
        lines = 0
        while rows := cursor.fetchmany(FETCH_ROWS):
            for order_day, record, line_count in rows:
                if order_day != day:
                    if day is not None:
                        yield day, records, lines
                    day, records, lines = order_day, [], 0
                records.append(record.encode())
                lines += line_count
        if day is not None:
            yield day, records, lines


def _land_history(
    con: duckdb.DuckDBPyConnection,
    scratch: Path,
    data_dir: Path,
    info: StoreInfo,
    options: DefectOptions,
    report: Progress,
    started: float,
) -> GenerateSummary:
    limits = KeyLimits(info.customer_count, info.part_count)
    orders = lines = files = days = corrupted = duplicated = 0
    total = info.history_orders
    landing = time.monotonic()
    step = 1
    for day, records, line_count in _history_days(con, scratch, info.scale_factor, report):
        result = write_day(
            data_dir,
            day,
            records,
            batches=info.batches,
            scale=info.scale_factor,
            limits=limits,
            options=options,
        )
        orders += len(records)
        lines += line_count
        files += len(result.files)
        days += 1
        for defect in result.defects:
            if defect.kind == DefectKind.DUPLICATE:
                duplicated += 1
            else:
                corrupted += 1
        if orders * PROGRESS_STEPS >= step * total:
            now = time.monotonic()
            left = (now - landing) * (total - orders) / orders
            report(
                f"landed {orders:,} of {total:,} orders ({orders / total:.0%}) through {day}: "
                f"{_duration(now - started)} so far, about {_duration(left)} left"
            )
            step = orders * PROGRESS_STEPS // total + 1
    return GenerateSummary(orders, lines, files, days, corrupted, duplicated)
