"""The inventory system: stock per (part, supplier) and the reservations made against it.

Local default: a SQLite database in the data dir; production: the same SQL on a PostgreSQL URL.

Stock rules (documented in the README):
- **Seeding**: a (part, supplier) starts with a base level of `ps_availqty // stock_divisor` units
  (`stock_divisor` = 12 by default puts a few percent of lines on back-order).
- **Restock**: at the start of every month the supplier tops the stock back up to its base level.
  The top-up is applied when the month's first reservation for that (part, supplier) is decided,
  recorded once in `restocks`.
- **Reservation**: first come, first served in the order requested; a line is reserved when the
  available stock covers its whole quantity, else back-ordered (no partial reservations).
- **Release**: a released reservation (a refused shipment) returns its quantity to the stock.
Every reservation is keyed by (order key, line number): asking again returns the first decision.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from resources.faults import FaultInjection, SystemRefused, inject
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

SYSTEM = "inventory"
RESERVED, BACKORDERED, RELEASED = "reserved", "backordered", "released"

SCHEMA = (
    """create table if not exists stock (
        partkey bigint not null, suppkey bigint not null,
        base_level integer not null, available integer not null,
        restocked_month integer not null, primary key (partkey, suppkey))""",
    """create table if not exists reservations (
        order_key bigint not null, line_number integer not null, order_day varchar(10) not null,
        partkey bigint not null, suppkey bigint not null, quantity integer not null,
        status varchar(12) not null, primary key (order_key, line_number))""",
    "create index if not exists reservations_by_day on reservations (order_day)",
    """create table if not exists restocks (
        partkey bigint not null, suppkey bigint not null, month integer not null,
        quantity integer not null, primary key (partkey, suppkey, month))""",
)


@dataclass(frozen=True)
class StockItem:
    """A (part, supplier) the store sells and the supplier's available quantity (ps_availqty)."""

    partkey: int
    suppkey: int
    availqty: int


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

    @abstractmethod
    def reserve(self, requests: Sequence[ReservationRequest]) -> list[Reservation]:
        """Decide each line in the order given (first come, first served); repeats keep their decision."""

    @abstractmethod
    def release(self, keys: Sequence[tuple[int, int]]) -> int:
        """Release reserved lines (order key, line number) back to stock; return how many changed."""

    @abstractmethod
    def reservations_by_day(self, start: str, end: str) -> dict[str, dict[str, tuple[int, int]]]:
        """Per order day in [start, end) and status: (lines, quantity), for reconciliation."""

    @abstractmethod
    def overcommitted(self, limit: int = 20) -> list[tuple[int, int, int]]:
        """(part, supplier, available) where more is reserved than there is stock: should be none."""

    @abstractmethod
    def stock_levels(self) -> list[tuple[int, int, int, int]]:
        """(part, supplier, base level, available) for every stocked pair."""


class SqlInventory(InventoryResource):
    """Inventory in a SQL database: a SQLite file by default, PostgreSQL by URL."""

    url: str = ""
    """SQLAlchemy URL (sqlite:///… or postgresql+psycopg2://…); empty: $ORDERFLOW_INVENTORY_URL,
    else systems/inventory.sqlite in the data dir."""

    def _url(self) -> str:
        return system_url(self.url, "ORDERFLOW_INVENTORY_URL", "inventory.sqlite")

    stock_divisor: int = 12
    """Base stock level = ps_availqty // stock_divisor (at least 1)."""
    faults: FaultInjection = FaultInjection()

    def _engine(self) -> sa.Engine:
        engine = engine_for(self._url())
        create_schema(engine, SCHEMA, SYSTEM)
        return engine

    def _inject(self) -> None:
        inject(SYSTEM, self.faults, fault_state_file(self._url(), SYSTEM))

    def seed_stock(self, items: Sequence[StockItem]) -> int:
        """Create stock for (part, supplier) pairs not yet known; return how many were new."""
        self._inject()
        engine = self._engine()
        rows = [
            {
                "p": item.partkey,
                "s": item.suppkey,
                "b": max(1, item.availqty // self.stock_divisor),
            }
            for item in items
        ]
        with write_transaction(engine, SYSTEM, "stock") as conn:
            before = conn.execute(sa.text("select count(*) from stock")).scalar_one()
            if rows:
                conn.execute(
                    sa.text(
                        "insert into stock (partkey, suppkey, base_level, available, restocked_month)"
                        " values (:p, :s, :b, :b, 0) on conflict do nothing"
                    ),
                    rows,
                )
            return conn.execute(sa.text("select count(*) from stock")).scalar_one() - before

    def reserve(self, requests: Sequence[ReservationRequest]) -> list[Reservation]:
        """Decide each line in the order given (first come, first served); repeats keep their decision."""
        self._inject()
        refused = set(self.faults.reject_keys)
        for request in requests:
            if f"{request.order_key}:{request.line_number}" in refused:
                raise SystemRefused(
                    f"inventory refused reservation {request.order_key}:{request.line_number} "
                    "(injected permanent rejection)"
                )
        engine = self._engine()
        with write_transaction(engine, SYSTEM, "stock") as conn:
            _load_keys(conn, [(r.order_key, r.line_number, r.partkey, r.suppkey) for r in requests])
            decided = {
                (row[0], row[1]): row[2]
                for row in fetch_all(
                    conn,
                    "select r.order_key, r.line_number, r.status from reservations r "
                    "join request_keys k on k.order_key = r.order_key "
                    "and k.line_number = r.line_number",
                )
            }
            stock = {
                (row[0], row[1]): [row[2], row[3], row[4]]
                for row in fetch_all(
                    conn,
                    "select s.partkey, s.suppkey, s.base_level, s.available, s.restocked_month "
                    "from stock s join (select distinct partkey, suppkey from request_keys) k "
                    "on k.partkey = s.partkey and k.suppkey = s.suppkey",
                )
            }
            new_rows, restocks, touched = [], [], set()
            results = []
            for request in requests:
                key = (request.order_key, request.line_number)
                status = decided.get(key)
                if status is None:
                    pair = (request.partkey, request.suppkey)
                    level = stock.get(pair)
                    if level is None:
                        raise SystemRefused(
                            f"inventory has no stock record for part {request.partkey} supplier "
                            f"{request.suppkey}: materialise fulfillment/inventory_stock first"
                        )
                    month = int(request.order_day[:4]) * 100 + int(request.order_day[5:7])
                    if month > level[2]:
                        top_up = max(0, level[0] - level[1])
                        if top_up:
                            restocks.append((pair[0], pair[1], month, top_up))
                        level[1] += top_up
                        level[2] = month
                        touched.add(pair)
                    if level[1] >= request.quantity:
                        level[1] -= request.quantity
                        touched.add(pair)
                        status = RESERVED
                    else:
                        status = BACKORDERED
                    decided[key] = status
                    new_rows.append(
                        (
                            request.order_key,
                            request.line_number,
                            request.order_day,
                            request.partkey,
                            request.suppkey,
                            request.quantity,
                            status,
                        )
                    )
                # A released line was reserved when decided: the decision is what is returned.
                decision = RESERVED if status == RELEASED else status
                results.append(Reservation(request.order_key, request.line_number, decision))
            execute_many(
                conn,
                "insert into reservations (order_key, line_number, order_day, partkey,"
                " suppkey, quantity, status) values (?, ?, ?, ?, ?, ?, ?)",
                new_rows,
            )
            execute_many(
                conn,
                "update stock set available = ?, restocked_month = ? "
                "where partkey = ? and suppkey = ?",
                [(stock[p][1], stock[p][2], p[0], p[1]) for p in touched],
            )
            execute_many(
                conn,
                "insert into restocks (partkey, suppkey, month, quantity) "
                "values (?, ?, ?, ?) on conflict do nothing",
                restocks,
            )
            conn.exec_driver_sql("drop table request_keys")
        return results

    def release(self, keys: Sequence[tuple[int, int]]) -> int:
        """Release reserved lines (order key, line number) back to stock; return how many changed."""
        self._inject()
        engine = self._engine()
        with write_transaction(engine, SYSTEM, "stock") as conn:
            _load_keys(conn, [(order, line, 0, 0) for order, line in sorted(set(keys))])
            rows = conn.execute(
                sa.text(
                    "select r.order_key, r.line_number, r.partkey, r.suppkey, r.quantity "
                    "from reservations r join request_keys k on k.order_key = r.order_key "
                    "and k.line_number = r.line_number where r.status = :st"
                ),
                {"st": RESERVED},
            ).fetchall()
            if rows:
                conn.execute(
                    sa.text(
                        "update reservations set status = :st "
                        "where order_key = :o and line_number = :l"
                    ),
                    [{"st": RELEASED, "o": row[0], "l": row[1]} for row in rows],
                )
                conn.execute(
                    sa.text(
                        "update stock set available = available + :q "
                        "where partkey = :p and suppkey = :s"
                    ),
                    [{"q": row[4], "p": row[2], "s": row[3]} for row in rows],
                )
            conn.exec_driver_sql("drop table request_keys")
            return len(rows)

    def reservations_by_day(self, start: str, end: str) -> dict[str, dict[str, tuple[int, int]]]:
        """Per order day in [start, end) and status: (lines, quantity), for reconciliation."""
        self._inject()
        with read_connection(self._engine(), SYSTEM) as conn:
            rows = conn.execute(
                sa.text(
                    "select order_day, status, count(*), sum(quantity) from reservations "
                    "where order_day >= :a and order_day < :b group by order_day, status"
                ),
                {"a": start, "b": end},
            ).fetchall()
        summary: dict[str, dict[str, tuple[int, int]]] = {}
        for day, status, lines, quantity in rows:
            summary.setdefault(day, {})[status] = (lines, int(quantity))
        return summary

    def overcommitted(self, limit: int = 20) -> list[tuple[int, int, int]]:
        """(part, supplier, available) where more is reserved than there is stock: should be none."""
        with read_connection(self._engine(), SYSTEM) as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    sa.text(
                        "select partkey, suppkey, available from stock where available < 0 "
                        "order by partkey, suppkey limit :n"
                    ),
                    {"n": limit},
                )
            ]

    def stock_levels(self) -> list[tuple[int, int, int, int]]:
        """(part, supplier, base level, available) for every stocked pair."""
        with read_connection(self._engine(), SYSTEM) as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    sa.text(
                        "select partkey, suppkey, base_level, available from stock "
                        "order by partkey, suppkey"
                    )
                )
            ]


def _load_keys(conn: sa.Connection, keys: Sequence[tuple[int, int, int, int]]) -> None:
    conn.exec_driver_sql(
        "create temporary table if not exists request_keys (order_key bigint, line_number integer,"
        " partkey bigint, suppkey bigint)"
    )
    conn.exec_driver_sql("delete from request_keys")
    execute_many(conn, "insert into request_keys values (?, ?, ?, ?)", keys)
