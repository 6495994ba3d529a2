"""The carrier (shipping API): the interface the assets call, and the adapter of the local carrier.

`LocalCarrier` calls the carrier's book (simulator/carrier.py) in-process; `HttpCarrier`
(resources/carrier_http.py) calls it, or a real carrier, over HTTP JSON.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from foundation.batches import chunks
from foundation.settings import system_url
from resources.faults import FaultInjection
from simulator.carrier import (
    ANSWER_COLUMNS,
    LINE_COLUMNS,
    ORDER_COLUMNS,
    PLAN_COLUMNS,
    CarrierBook,
    Shipment,
    ShipmentLine,
    ShipmentRequest,
)

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd


class CarrierResource(dg.ConfigurableResource, ABC):
    """The shipping API; requests are batched and idempotent by order key."""

    @abstractmethod
    def create_shipments(self, requests: Sequence[ShipmentRequest]) -> list[Shipment]:
        """Ship each order (or return the first answer for one asked before), in request order."""

    def create_shipments_frame(self, lines: pd.DataFrame) -> pd.DataFrame:
        """The bulk form of `create_shipments`: one row per line to ship, one row per answered line.

        `lines` has ORDER_COLUMNS and LINE_COLUMNS, an order's lines together; the answer has
        LINE_COLUMNS, PLAN_COLUMNS and ANSWER_COLUMNS, orders in first-seen order; an optional
        `revision` column amends orders the carrier answered at an earlier one. This default
        sends batches of requests; the local carrier answers whole arrays at once.
        """
        answers = []
        for batch in chunks(requests_from_frame(lines), 10_000):
            answers.extend(self.create_shipments(batch))
        return answers_to_frame(answers)

    @abstractmethod
    def shipments_by_day(self, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per order day in [start, end): shipments by status, for reconciliation."""


def requests_from_frame(lines: pd.DataFrame) -> list[ShipmentRequest]:
    """One request per order of a lines frame (ORDER_COLUMNS + LINE_COLUMNS [+ revision])."""
    grouped: dict[int, tuple[str, str, int, list[ShipmentLine]]] = {}
    revisions = lines["revision"].tolist() if "revision" in lines else [0] * len(lines)
    for order, day, destination, number, quantity, mode, revision in zip(
        *(lines[column].tolist() for column in (*ORDER_COLUMNS, *LINE_COLUMNS[1:])),
        revisions,
        strict=True,
    ):
        grouped.setdefault(int(order), (str(day), str(destination), int(revision), []))[3].append(
            ShipmentLine(int(number), int(quantity), str(mode))
        )
    return [
        ShipmentRequest(order, day, destination, tuple(order_lines), revision)
        for order, (day, destination, revision, order_lines) in grouped.items()
    ]


def answers_to_frame(answers: Sequence[Shipment]) -> pd.DataFrame:
    """Answered lines as a frame: LINE_COLUMNS, PLAN_COLUMNS, ANSWER_COLUMNS."""
    import pandas as pd

    return pd.DataFrame.from_records(
        [
            (
                answer.order_key,
                line.line_number,
                line.quantity,
                line.ship_mode,
                line.ship_date,
                line.delivery_date,
                answer.status,
                answer.tracking_number,
                answer.reason,
            )
            for answer in answers
            for line in answer.lines
        ],
        columns=[*LINE_COLUMNS, *PLAN_COLUMNS, *ANSWER_COLUMNS],
    )


class LocalCarrier(CarrierResource):
    """The carrier's book in-process, in a SQL database (SQLite file by default)."""

    url: str = ""
    """SQLAlchemy URL of the carrier's database, e.g. sqlite:////data/systems/carrier.sqlite."""
    faults: FaultInjection = FaultInjection()

    def _book(self) -> CarrierBook:
        return CarrierBook(
            system_url(self.url, "ORDERFLOW_CARRIER_DB", "carrier.sqlite"), self.faults
        )

    def create_shipments(self, requests: Sequence[ShipmentRequest]) -> list[Shipment]:
        """Ship each order (or return the first answer for one asked before), in request order."""
        return self._book().create_shipments(requests)

    def create_shipments_frame(self, lines: pd.DataFrame) -> pd.DataFrame:
        """The bulk form of `create_shipments`, answered on whole arrays."""
        return self._book().create_shipments_frame(lines)

    def shipments_by_day(self, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per order day in [start, end): shipments by status, for reconciliation."""
        return self._book().shipments_by_day(start, end)
