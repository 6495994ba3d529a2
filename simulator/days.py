"""Simulated days after the history, drawn from TPC-H's value distributions (clause 4.2.3).

A day's orders depend only on (date, scale factor, seed) and store.json: the random stream is
seeded from those, and order keys come from a block reserved per date
(max_history_orderkey + days_since_history * day_key_capacity + i), so keys never collide with
the history or with other days, whichever days were generated and in whatever order. Re-running a
day rewrites identical bytes (files left untouched), so `day` and `catch-up` are idempotent.
"""

import math
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from foundation.layout import batch_files, day_dir
from simulator.defects import KeyLimits
from simulator.errors import SimulatorError
from simulator.landing import DayResult, DefectOptions, validate_options, write_day
from simulator.records import cents_to_decimal, to_json_text
from simulator.seeding import day_rng
from simulator.store import StoreInfo, load_store, orders_per_day
from simulator.text import comment

PRIORITIES = ("1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW")
SHIP_INSTRUCTIONS = ("DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN")
SHIP_MODES = ("REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB")


def retail_price_cents(partkey: int) -> int:
    """Return TPC-H's P_RETAILPRICE of a part, in cents."""
    return 90000 + ((partkey // 10) % 20001) + 100 * (partkey % 1000)


def supplier_of_part(partkey: int, i: int, supplier_count: int) -> int:
    """Return the i-th (0..3) of TPC-H's four suppliers of a part (PS_SUPPKEY)."""
    s = supplier_count
    return (partkey + (i * (s // 4 + (partkey - 1) // s))) % s + 1


def line_total_cents(extended_cents: int, discount_pct: int, tax_pct: int) -> int:
    """Return one line's charge in cents with TPC-H's arithmetic (discount, then tax, floored)."""
    return (extended_cents * (100 - discount_pct) // 100) * (100 + tax_pct) // 100


def first_simulated_day(info: StoreInfo) -> date:
    """Return the first date after the history."""
    return info.history_end_date + timedelta(days=1)


def first_orderkey(info: StoreInfo, day: date) -> int:
    """Return the first order key reserved for `day`."""
    days_after = (day - first_simulated_day(info)).days
    return info.max_history_orderkey + days_after * info.day_key_capacity + 1


def order_count(rng: random.Random, mean: float, capacity: int) -> int:
    """Draw a Poisson-like number of orders (at least 1, at most the day's key capacity)."""
    if mean < 30:
        # Knuth's method: exact Poisson, cheap for small means.
        limit, count, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
    else:
        count = round(rng.gauss(mean, math.sqrt(mean)))
    return min(capacity, max(1, count))


def generate_orders(info: StoreInfo, day: date, seed: int = 0) -> list[dict[str, Any]]:
    """Return the orders of simulated day `day` as dicts in export key order."""
    rng = day_rng("orders", day, info.scale_factor, seed)
    count = order_count(rng, orders_per_day(info.scale_factor), info.day_key_capacity)
    key = first_orderkey(info, day)
    return [_order(rng, info, day, key + i) for i in range(count)]


def _order(rng: random.Random, info: StoreInfo, day: date, orderkey: int) -> dict[str, Any]:
    custkey = rng.randint(1, info.customer_count)
    while custkey % 3 == 0:  # TPC-H: a third of the customers never order
        custkey = rng.randint(1, info.customer_count)
    priority = rng.choice(PRIORITIES)
    clerk = f"Clerk#{rng.randint(1, info.clerk_count):09d}"
    order_comment = comment(rng, 19, 78)
    lines, total = [], 0
    for number in range(1, rng.randint(1, 7) + 1):
        partkey = rng.randint(1, info.part_count)
        suppkey = supplier_of_part(partkey, rng.randrange(4), info.supplier_count)
        quantity = rng.randint(1, 50)
        discount, tax = rng.randint(0, 10), rng.randint(0, 8)
        extended = quantity * retail_price_cents(partkey)
        total += line_total_cents(extended, discount, tax)
        lines.append(
            {
                "l_linenumber": number,
                "l_partkey": partkey,
                "l_suppkey": suppkey,
                "l_quantity": cents_to_decimal(quantity * 100),
                "l_extendedprice": cents_to_decimal(extended),
                "l_discount": cents_to_decimal(discount),
                "l_tax": cents_to_decimal(tax),
                "l_commitdate": (day + timedelta(days=rng.randint(30, 90))).isoformat(),
                "l_shipinstruct": rng.choice(SHIP_INSTRUCTIONS),
                "l_shipmode": rng.choice(SHIP_MODES),
                "l_comment": comment(rng, 10, 43),
            }
        )
    return {
        "o_orderkey": orderkey,
        "o_custkey": custkey,
        "o_orderstatus": "O",
        "o_totalprice": cents_to_decimal(total),
        "o_orderdate": day.isoformat(),
        "o_orderpriority": priority,
        "o_clerk": clerk,
        "o_shippriority": 0,
        "o_comment": order_comment,
        "lines": lines,
    }


def check_simulated_day(info: StoreInfo, day: date) -> None:
    """Raise SimulatorError unless `day` comes after the history."""
    if day <= info.history_end_date:
        raise SimulatorError(
            f"{day} is inside the generated history (which ends {info.history_end}); "
            f"simulated days start on {first_simulated_day(info)}"
        )


def simulate_day(
    data_dir: Path,
    day: date,
    *,
    batches: int = 3,
    corrupt_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    seed: int = 0,
) -> list[Path]:
    """Land simulated day `day` as batch-001..batch-N (idempotent) and return its batch files."""
    return _land_day(
        Path(data_dir), load_store(data_dir), day, batches, corrupt_rate, duplicate_rate, seed
    ).files


def missing_days(data_dir: Path, until: date) -> list[date]:
    """Return the simulated dates up to `until` whose directory holds no batch file."""
    info = load_store(data_dir)
    day, missing = first_simulated_day(info), []
    while day <= until:
        if not batch_files(day_dir(data_dir, day)):
            missing.append(day)
        day += timedelta(days=1)
    return missing


def yesterday_utc() -> date:
    """Return yesterday's date in UTC (the wall clock only decides how far catch-up goes)."""
    return datetime.now(UTC).date() - timedelta(days=1)


def catch_up(
    data_dir: Path,
    *,
    until: date | None = None,
    batches: int = 3,
    corrupt_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[date]:
    """Land every missing simulated day up to `until` (default yesterday, UTC); return them."""
    data_dir = Path(data_dir)
    info = load_store(data_dir)
    days = missing_days(data_dir, until or yesterday_utc())
    for day in days:
        _land_day(data_dir, info, day, batches, corrupt_rate, duplicate_rate, seed)
        if progress and day.day == 1:
            progress(f"caught up to {day}")
    return days


def _land_day(
    data_dir: Path,
    info: StoreInfo,
    day: date,
    batches: int,
    corrupt_rate: float,
    duplicate_rate: float,
    seed: int,
) -> DayResult:
    check_simulated_day(info, day)
    validate_options(batches, corrupt_rate, duplicate_rate)
    records = [to_json_text(order).encode() for order in generate_orders(info, day, seed)]
    return write_day(
        data_dir,
        day,
        records,
        batches=batches,
        scale=info.scale_factor,
        limits=KeyLimits(info.customer_count, info.part_count),
        options=DefectOptions(corrupt_rate, duplicate_rate, seed),
    )
