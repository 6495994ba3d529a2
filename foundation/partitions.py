"""The one calendar every order-date-dependent asset shares, and how a run's window is cut into chunks."""

import itertools
from datetime import date

import dagster as dg

HISTORY_START = "2020-01-01"

# Daily, UTC, from the first day of the store's history. Today's partition is open
# (end_offset=1): batches landing during the day run as they arrive (landing-zone sensor), and
# the schedule runs the day once more after it closes. Every step is idempotent, so re-running
# a day as it fills up is safe.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=HISTORY_START, timezone="UTC", end_offset=1
)

# The tags of a run over a range of days (a single-run backfill), as Dagster names them; dagster
# has no public constants for them.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


# Chunks sized to the store (`ORDERFLOW_CHUNK_MONTHS=auto`) hold at most about this many orders,
# above a month of SF 1 (~19,000, whose whole-graph backfill peaks at 1.6 GB). Each chunk costs
# every step a fixed ~0.1 s (commits, re-reads): at SF 0.1, month chunks were most of its time.
CHUNK_ORDERS = 30_000
# The months a sized chunk may span, longest first: divisors of a year, so cuts stay on the calendar.
CHUNK_SPANS = (12, 6, 4, 3, 2, 1)


def months_for(orders: int, start: date, end: date, target: int = CHUNK_ORDERS) -> int:
    """Months per chunk for a window [start, end) of about `orders` orders, for `month_chunks`.

    0 (one chunk) when the window holds `target` orders at most; else the longest span of
    CHUNK_SPANS whose chunks hold `target` at most on the window's average, and never less than
    a month.
    """
    if orders <= target:
        return 0
    per_month = orders / max((end - start).days, 1) * 365.25 / 12
    return next((months for months in CHUNK_SPANS if months * per_month <= target), 1)


def month_chunks(start: date, end: date, months: int) -> list[tuple[date, date]]:
    """The days [start, end) as consecutive [first, after) chunks of `months` calendar months.

    Cuts fall on the first day of every `months`-th month of the calendar (1: each month, 3:
    quarters, 12: years), so a day is in the same chunk whatever window it is run in; a day's
    window is one chunk. 0 months: the window is one chunk.
    """
    bounds = [start]
    month = start.year * 12 + start.month - 1  # months since year 0, January = 0
    while months > 0:
        month = (month // months + 1) * months
        cut = date(month // 12, month % 12 + 1, 1)
        if cut >= end:
            break
        bounds.append(cut)
    return list(itertools.pairwise([*bounds, end])) if start < end else []
