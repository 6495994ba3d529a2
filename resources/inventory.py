"""The inventory system: the interface the assets call, and the adapter of the local stockroom.

The stock, restock and reservation rules are the stockroom's (simulator/inventory.py); it reads
its stock rules from rules.yaml, as the pipeline does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from foundation.settings import system_url
from resources.faults import FaultInjection
from simulator.inventory import (
    DECISION_COLUMNS,
    REQUEST_COLUMNS,
    STOCK_BATCH_ROWS,
    StockItem,
    Stockroom,
    Terms,
)

__all__ = ["DECISION_COLUMNS", "StockItem", "Terms"]

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class ReservationRequest:
    """One order line asking for stock; (order_key, line_number) is its idempotency key."""

    order_key: int
    line_number: int
    order_day: str
    partkey: int
    suppkey: int
    quantity: int


@dataclass(frozen=True)
class Reservation:
    """The decision made for one line when first asked: reserved or back-ordered."""

    order_key: int
    line_number: int
    status: str


class InventoryResource(dg.ConfigurableResource, ABC):
    """Stock and reservations; every mutating call is batched and idempotent."""

    @abstractmethod
    def seed_stock(self, items: Sequence[StockItem]) -> int:
        """Create stock for (part, supplier) pairs not yet known; return how many were new."""

    def reserve(self, requests: Sequence[ReservationRequest]) -> list[Reservation]:
        """Decide each line in the order given (first come, first served); repeats keep their decision."""
        import pandas as pd

        frame = pd.DataFrame.from_records(
            [
                (r.order_key, r.line_number, r.order_day, r.partkey, r.suppkey, r.quantity)
                for r in requests
            ],
            columns=list(REQUEST_COLUMNS),
        )
        return [
            Reservation(request.order_key, request.line_number, str(status))
            for request, status in zip(requests, self.reserve_frame(frame), strict=True)
        ]

    def reserve_frame(self, lines: pd.DataFrame) -> np.ndarray:
        """Decide each row in the frame's order (first come, first served); repeats keep their decision.

        Columns: REQUEST_COLUMNS (order_day as 'YYYY-MM-DD'); returns 'reserved' or 'backordered'
        per row. The bulk form of `reserve`, for a backfill's millions of lines.
        """
        return self.decide_frame(lines)["status"].to_numpy(dtype=object)

    @abstractmethod
    def decide_frame(self, lines: pd.DataFrame, terms: Terms | None = None) -> pd.DataFrame:
        """`reserve_frame` under `terms` (rules version, whole orders, re-decide): DECISION_COLUMNS.

        Per row: the status, the rules version it was decided under, its order's revision (0 until
        a re-decision changes the order) and the line's earlier statuses (None if never changed).
        """

    @abstractmethod
    def release(self, keys: Sequence[tuple[int, int]]) -> int:
        """Release reserved lines (order key, line number) back to stock; return how many changed."""

    @abstractmethod
    def reservations_by_day(self, start: str, end: str) -> dict[str, dict[str, tuple[int, int]]]:
        """Per order day in [start, end) and status: (lines, quantity), from the totals kept."""

    @abstractmethod
    def recount_reservations_by_day(
        self, start: str, end: str
    ) -> dict[str, dict[str, tuple[int, int]]]:
        """`reservations_by_day` counted afresh from the reservations: an audit, for reconciliation."""

    @abstractmethod
    def overcommitted(self, limit: int = 20) -> list[tuple[int, int, int]]:
        """(part, supplier, available) where more is reserved than there is stock: should be none."""

    def stock_levels(self) -> list[tuple[int, int, int, int]]:
        """(part, supplier, base level, available) for every stocked pair."""
        return [pair for batch in self.stock_level_batches() for pair in batch]

    @abstractmethod
    def stock_level_batches(
        self, rows: int = STOCK_BATCH_ROWS
    ) -> Iterator[list[tuple[int, int, int, int]]]:
        """`stock_levels` in key order, `rows` pairs at a time, all from one read of the stock."""


class SqlInventory(InventoryResource):
    """Inventory in a SQL database: a SQLite file by default, PostgreSQL by URL."""

    url: str = ""
    """SQLAlchemy URL (sqlite:///… or postgresql+psycopg2://…); empty: $ORDERFLOW_INVENTORY_URL,
    else systems/inventory.sqlite in the data dir."""
    faults: FaultInjection = FaultInjection()

    def _stockroom(self) -> Stockroom:
        url = system_url(self.url, "ORDERFLOW_INVENTORY_URL", "inventory.sqlite")
        return Stockroom(url, self.faults)

    def seed_stock(self, items: Sequence[StockItem]) -> int:
        """Create stock for (part, supplier) pairs not yet known; return how many were new."""
        return self._stockroom().seed_stock(items)

    def decide_frame(self, lines: pd.DataFrame, terms: Terms | None = None) -> pd.DataFrame:
        """`reserve_frame` under `terms` (rules version, whole orders, re-decide): DECISION_COLUMNS."""
        return self._stockroom().decide_frame(lines, terms or Terms())

    def release(self, keys: Sequence[tuple[int, int]]) -> int:
        """Release reserved lines (order key, line number) back to stock; return how many changed."""
        return self._stockroom().release(keys)

    def reservations_by_day(self, start: str, end: str) -> dict[str, dict[str, tuple[int, int]]]:
        """Per order day in [start, end) and status: (lines, quantity), from the totals kept."""
        return self._stockroom().reservations_by_day(start, end)

    def recount_reservations_by_day(
        self, start: str, end: str
    ) -> dict[str, dict[str, tuple[int, int]]]:
        """`reservations_by_day` counted afresh from the reservations: an audit, for reconciliation."""
        return self._stockroom().recount_reservations_by_day(start, end)

    def overcommitted(self, limit: int = 20) -> list[tuple[int, int, int]]:
        """(part, supplier, available) where more is reserved than there is stock: should be none."""
        return self._stockroom().overcommitted(limit)

    def stock_level_batches(
        self, rows: int = STOCK_BATCH_ROWS
    ) -> Iterator[list[tuple[int, int, int, int]]]:
        """`stock_levels` in key order, `rows` pairs at a time, all from one read of the stock."""
        return self._stockroom().stock_level_batches(rows)
