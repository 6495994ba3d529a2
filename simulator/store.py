"""store.json: what `generate` produced, and the constants every simulated day derives from.

The file is written atomically at the end of `generate`, so its presence means the history and
catalog are complete. Simulated days read the key counts (customers, parts, suppliers) and the
per-day order-key capacity from it, so they never depend on the wall clock or on other days.
"""

import json
import math
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from foundation.layout import store_path
from simulator.atomic import atomic_write_bytes
from simulator.errors import SimulatorError, StoreNotFoundError

# TPC-H's order dates, moved 28 years later (28 years keeps weekdays and leap days identical).
YEAR_SHIFT = 28
TPCH_START = date(1992, 1, 1)
TPCH_END = date(1998, 8, 2)
HISTORY_START = date(2020, 1, 1)
HISTORY_END = date(2026, 8, 2)
HISTORY_DAYS = (TPCH_END - TPCH_START).days + 1  # 2406
TPCH_ORDERS_PER_SF = 1_500_000


def orders_per_day(scale: float) -> float:
    """Return the mean number of orders per day at scale factor `scale` (TPC-H's rate)."""
    return TPCH_ORDERS_PER_SF * scale / HISTORY_DAYS


def day_key_capacity(scale: float) -> int:
    """Return the fixed number of order keys reserved per simulated day (a power of ten)."""
    # Ten times the mean leaves the Poisson tail no chance of overflowing into the next day.
    return 10 ** max(3, math.ceil(math.log10(orders_per_day(scale) * 10)))


@dataclass(frozen=True)
class StoreInfo:
    """The contents of store.json."""

    scale_factor: float
    history_start: str
    history_end: str
    max_history_orderkey: int
    customer_count: int
    part_count: int
    supplier_count: int
    day_key_capacity: int
    clerk_count: int
    history_orders: int
    history_lines: int
    batches: int
    seed: int
    corrupt_rate: float
    duplicate_rate: float

    @property
    def history_end_date(self) -> date:
        """Return the last order date of the generated history."""
        return date.fromisoformat(self.history_end)

    def to_json_bytes(self) -> bytes:
        """Return the store as pretty-printed JSON bytes."""
        return (json.dumps(asdict(self), indent=2) + "\n").encode()


def save_store(data_dir: Path, info: StoreInfo) -> Path:
    """Write store.json atomically and return its path."""
    path = store_path(data_dir)
    atomic_write_bytes(path, info.to_json_bytes())
    return path


def load_store(data_dir: Path) -> StoreInfo:
    """Read store.json, raising StoreNotFoundError if the data dir holds no store."""
    path = store_path(data_dir)
    if not path.is_file():
        raise StoreNotFoundError(
            f"no store in {data_dir} (missing {path}); run `orderflow-sim generate --scale 0.01 "
            f"--data-dir {data_dir}` first"
        )
    try:
        raw = json.loads(path.read_text())
        return StoreInfo(**{name: raw[name] for name in StoreInfo.__dataclass_fields__})
    except (ValueError, KeyError, TypeError) as exc:
        raise SimulatorError(f"{path} is not a valid store description ({exc!r})") from exc
