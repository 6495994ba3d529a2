"""The carrier (shipping API): takes shipment requests, assigns tracking numbers and dates.

`CarrierBook` is the carrier's own logic and storage (SQL, SQLite by default). The local backend
`LocalCarrier` calls it in-process; `orderflow-sim carrier` serves the same book over HTTP JSON and
`HttpCarrier` (resources/carrier_http.py) is the client. Everything the carrier decides is
deterministic: tracking numbers and dates come from the order key, line and ship mode, never from
the wall clock, so a replayed request gets the same answer. A shipment is keyed by its order key:
requesting it again returns the first answer, including a refusal.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import dagster as dg
import sqlalchemy as sa

from resources.faults import FaultInjection, inject
from resources.sql import (
    create_schema,
    engine_for,
    execute_many,
    fault_state_file,
    fetch_all,
    read_connection,
    system_url,
    write_transaction,
)

SYSTEM = "carrier"
SHIPPED, REFUSED = "shipped", "refused"
# Days in transit (min, max) by TPC-H ship mode; handling before pickup is 1..3 days.
TRANSIT_DAYS = {
    "AIR": (1, 3),
    "REG AIR": (2, 5),
    "TRUCK": (3, 8),
    "MAIL": (4, 12),
    "FOB": (5, 15),
    "RAIL": (7, 25),
    "SHIP": (14, 60),
}

SCHEMA = (
    """create table if not exists shipments (
        order_key bigint primary key, order_day varchar(10) not null,
        destination varchar(64) not null, status varchar(12) not null,
        tracking_number varchar(32), reason varchar(200))""",
    "create index if not exists shipments_by_day on shipments (order_day)",
    """create table if not exists shipment_lines (
        order_key bigint not null, line_number integer not null, ship_mode varchar(16) not null,
        quantity integer not null, ship_date varchar(10), delivery_date varchar(10),
        primary key (order_key, line_number))""",
)


@dataclass(frozen=True)
class ShipmentLine:
    """A line to ship (request) or shipped (answer, with the carrier's dates)."""

    line_number: int
    quantity: int
    ship_mode: str
    ship_date: str | None = None
    delivery_date: str | None = None


@dataclass(frozen=True)
class ShipmentRequest:
    """One order's reserved lines to ship to the customer's nation; the order key is the key."""

    order_key: int
    order_day: str
    destination: str
    lines: tuple[ShipmentLine, ...]


@dataclass(frozen=True)
class Shipment:
    """The carrier's answer: shipped with a tracking number and dates per line, or refused."""

    order_key: int
    status: str
    tracking_number: str | None
    reason: str | None
    lines: tuple[ShipmentLine, ...]


def request_to_json(request: ShipmentRequest) -> dict:
    """The request as the HTTP API's JSON object."""
    return asdict(request)


def request_from_json(data: dict) -> ShipmentRequest:
    """A request from the HTTP API's JSON object."""
    return ShipmentRequest(
        order_key=int(data["order_key"]),
        order_day=str(data["order_day"]),
        destination=str(data["destination"]),
        lines=tuple(ShipmentLine(**line) for line in data["lines"]),
    )


def shipment_to_json(shipment: Shipment) -> dict:
    """The answer as the HTTP API's JSON object."""
    return asdict(shipment)


def shipment_from_json(data: dict) -> Shipment:
    """An answer from the HTTP API's JSON object."""
    return Shipment(
        order_key=int(data["order_key"]),
        status=str(data["status"]),
        tracking_number=data.get("tracking_number"),
        reason=data.get("reason"),
        lines=tuple(ShipmentLine(**line) for line in data["lines"]),
    )


class CarrierResource(dg.ConfigurableResource, ABC):
    """The shipping API; requests are batched and idempotent by order key."""

    @abstractmethod
    def create_shipments(self, requests: Sequence[ShipmentRequest]) -> list[Shipment]:
        """Ship each order (or return the first answer for one asked before), in request order."""

    @abstractmethod
    def shipments_by_day(self, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per order day in [start, end): shipments by status, for reconciliation."""


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def tracking_number(order_key: int) -> str:
    """The carrier's tracking number for an order's consignment (deterministic)."""
    return f"OF{_digest(f'tracking:{order_key}') % 10**12:012d}"


def plan_lines(request: ShipmentRequest) -> tuple[ShipmentLine, ...]:
    """Ship and delivery dates per line: handling 1..3 days, then the ship mode's transit time."""
    ship = date.fromisoformat(request.order_day) + timedelta(
        days=1 + _digest(f"handling:{request.order_key}") % 3
    )
    planned = []
    for line in request.lines:
        low, high = TRANSIT_DAYS[line.ship_mode]
        transit = low + _digest(f"transit:{request.order_key}:{line.line_number}") % (
            high - low + 1
        )
        planned.append(
            ShipmentLine(
                line.line_number,
                line.quantity,
                line.ship_mode,
                ship.isoformat(),
                (ship + timedelta(days=transit)).isoformat(),
            )
        )
    return tuple(planned)


class CarrierBook:
    """The carrier's side: decides and stores shipments in SQL (SQLite file by default)."""

    def __init__(self, url: str, faults: FaultInjection | None = None):
        self.url = url
        self.faults = faults or FaultInjection()

    def _engine(self) -> sa.Engine:
        engine = engine_for(self.url)
        create_schema(engine, SCHEMA, SYSTEM)
        return engine

    def _refusal(self, request: ShipmentRequest) -> str | None:
        if str(request.order_key) in self.faults.reject_keys:
            return "carrier refused the shipment (injected refusal for this order key)"
        if not request.lines:
            return "shipment has no lines"
        modes = sorted({line.ship_mode for line in request.lines} - TRANSIT_DAYS.keys())
        if modes:
            return f"carrier does not offer ship mode {', '.join(modes)}"
        return None

    def create_shipments(self, requests: Sequence[ShipmentRequest]) -> list[Shipment]:
        """Ship each order (or return the first answer for one asked before), in request order."""
        inject(SYSTEM, self.faults, fault_state_file(self.url, SYSTEM))
        engine = self._engine()
        with write_transaction(engine, SYSTEM, "shipments") as conn:
            conn.exec_driver_sql(
                "create temporary table if not exists request_orders (order_key bigint)"
            )
            conn.exec_driver_sql("delete from request_orders")
            if requests:
                # Each key once: a key repeated in the batch would repeat its known lines in the join.
                execute_many(
                    conn,
                    "insert into request_orders values (?)",
                    [(key,) for key in dict.fromkeys(r.order_key for r in requests)],
                )
            known = {
                row[0]: Shipment(row[0], row[1], row[2], row[3], ())
                for row in fetch_all(
                    conn,
                    "select s.order_key, s.status, s.tracking_number, s.reason from shipments s"
                    " join request_orders r on r.order_key = s.order_key",
                )
            }
            known_lines: dict[int, list[ShipmentLine]] = {}
            for row in fetch_all(
                conn,
                "select l.order_key, l.line_number, l.quantity, l.ship_mode, l.ship_date,"
                " l.delivery_date from shipment_lines l"
                " join request_orders r on r.order_key = l.order_key"
                " order by l.order_key, l.line_number",
            ):
                known_lines.setdefault(row[0], []).append(ShipmentLine(*row[1:]))
            conn.exec_driver_sql("drop table request_orders")
            answers, new_shipments, new_lines = [], [], []
            for request in requests:
                shipment = known.get(request.order_key)
                if shipment is not None:
                    lines = tuple(known_lines.get(request.order_key, ()))
                    answers.append(
                        Shipment(
                            shipment.order_key,
                            shipment.status,
                            shipment.tracking_number,
                            shipment.reason,
                            lines,
                        )
                    )
                    continue
                reason = self._refusal(request)
                if reason is None:
                    shipment = Shipment(
                        request.order_key,
                        SHIPPED,
                        tracking_number(request.order_key),
                        None,
                        plan_lines(request),
                    )
                else:
                    shipment = Shipment(request.order_key, REFUSED, None, reason, request.lines)
                known[request.order_key] = shipment
                known_lines[request.order_key] = list(shipment.lines)
                answers.append(shipment)
                new_shipments.append(
                    (
                        request.order_key,
                        request.order_day,
                        request.destination,
                        shipment.status,
                        shipment.tracking_number,
                        shipment.reason,
                    )
                )
                new_lines.extend(
                    (
                        request.order_key,
                        line.line_number,
                        line.ship_mode,
                        line.quantity,
                        line.ship_date,
                        line.delivery_date,
                    )
                    for line in shipment.lines
                )
            execute_many(
                conn,
                "insert into shipments (order_key, order_day, destination, status,"
                " tracking_number, reason) values (?, ?, ?, ?, ?, ?)",
                new_shipments,
            )
            execute_many(
                conn,
                "insert into shipment_lines (order_key, line_number, ship_mode, quantity,"
                " ship_date, delivery_date) values (?, ?, ?, ?, ?, ?)",
                new_lines,
            )
        return answers

    def shipments_by_day(self, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per order day in [start, end): shipments by status, for reconciliation."""
        inject(SYSTEM, self.faults, fault_state_file(self.url, SYSTEM))
        with read_connection(self._engine(), SYSTEM) as conn:
            rows = conn.execute(
                sa.text(
                    "select order_day, status, count(*) from shipments "
                    "where order_day >= :a and order_day < :b group by order_day, status"
                ),
                {"a": start, "b": end},
            ).fetchall()
        summary: dict[str, dict[str, int]] = {}
        for day, status, count in rows:
            summary.setdefault(day, {})[status] = count
        return summary


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

    def shipments_by_day(self, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per order day in [start, end): shipments by status, for reconciliation."""
        return self._book().shipments_by_day(start, end)
