"""The inventory, carrier and ledger on a real PostgreSQL server: the same SQL as on SQLite.

Each test gets a new database on the session's throwaway server (tests/postgres.py) and checks the
bulk paths that matter there: decisions on arrays, the first answer kept for a key asked again
under another day (the fast lookup by day misses it; the insert comes up short and the batch is
redone with an exact lookup), and nothing stored twice.
"""

from __future__ import annotations

import pytest

from resources.accounting import JournalEntry, JournalLine, SqlAccounting
from resources.carrier import LocalCarrier, ShipmentLine, ShipmentRequest
from resources.inventory import ReservationRequest, SqlInventory, StockItem, Terms
from simulator.carrier import REFUSED, SHIPPED
from simulator.inventory import BACKORDERED, RELEASED, RESERVED
from tests.postgres import new_database


@pytest.fixture
def database(postgres_server):
    """A SQLAlchemy URL of a new database, and a function returning one query's rows."""
    name = new_database(postgres_server, "systems")

    def rows(sql: str) -> list[tuple]:
        return postgres_server.query(name, sql)

    return postgres_server.url(name), rows


def line(order, number, quantity, day, part=1, supp=1) -> ReservationRequest:
    return ReservationRequest(order, number, day, part, supp, quantity)


def test_inventory_on_postgres(database):
    url, rows = database
    inventory = SqlInventory(url=url)
    assert inventory.seed_stock([StockItem(1, 1, 120), StockItem(1, 2, 24)]) == 2  # 10 and 2
    first = inventory.reserve(
        [
            line(1, 1, 4, "2021-01-05"),
            line(1, 2, 7, "2021-01-05"),  # 6 left: back-ordered
            line(2, 1, 2, "2021-01-06", supp=2),
            line(3, 1, 6, "2021-02-01"),  # February tops (1, 1) back up to 10
        ]
    )
    assert [r.status for r in first] == [RESERVED, BACKORDERED, RESERVED, RESERVED]
    assert inventory.stock_levels() == [(1, 1, 10, 4), (1, 2, 2, 0)]
    assert rows("select suppkey, month, pairs, quantity from supplier_restocks") == [
        (1, 202102, 1, 4)
    ]

    # Asked again, one key under another day: the first decisions, nothing new stored.
    again = inventory.reserve([line(1, 2, 1, "2021-03-09"), line(1, 1, 4, "2021-01-05")])
    assert again == [first[1], first[0]]
    assert rows("select count(*) from reservations") == [(4,)]
    assert inventory.release([(1, 1), (1, 1)]) == 1
    assert inventory.stock_levels()[0] == (1, 1, 10, 8)
    assert rows("select status from reservations where order_key = 1 and line_number = 1") == [
        (RELEASED,)
    ]
    assert inventory.reservations_by_day("2021-01-01", "2021-02-01") == {
        "2021-01-05": {RELEASED: (1, 4), BACKORDERED: (1, 7)},
        "2021-01-06": {RESERVED: (1, 2)},
    }


def test_carrier_on_postgres(database):
    url, rows = database
    carrier = LocalCarrier(url=url)
    requests = [
        ShipmentRequest(
            7, "2021-05-10", "FRANCE", (ShipmentLine(1, 2, "AIR"), ShipmentLine(2, 1, "SHIP"))
        ),
        ShipmentRequest(8, "2021-05-10", "PERU", (ShipmentLine(1, 3, "CANOE"),)),
    ]
    first = carrier.create_shipments(requests)
    assert [a.status for a in first] == [SHIPPED, REFUSED]
    assert all(x.ship_date and x.delivery_date for x in first[0].lines)
    changed = ShipmentRequest(7, "2021-06-30", "PERU", (ShipmentLine(9, 1, "RAIL"),))
    assert carrier.create_shipments([changed, requests[1]]) == [first[0], first[1]]
    assert rows("select count(*) from shipments") == [(2,)]
    assert rows("select count(*) from shipment_lines") == [(3,)]
    assert carrier.shipments_by_day("2021-05-01", "2021-06-01") == {
        "2021-05-10": {SHIPPED: 1, REFUSED: 1}
    }


def test_ledger_on_postgres(database):
    url, rows = database
    ledger = SqlAccounting(url=url)

    def invoice(order: int, day: str, net: int, tax: int) -> JournalEntry:
        lines = (
            JournalLine("receivable", net + tax, 0),
            JournalLine("revenue", 0, net),
            JournalLine("tax_payable", 0, tax),
        )
        return JournalEntry(f"invoice:{order}", day, "invoice", order, lines)

    assert ledger.post([invoice(1, "2021-03-01", 100, 8), invoice(2, "2021-03-02", 50, 4)]) == 2
    assert ledger.post([invoice(1, "2021-03-09", 999, 1), invoice(2, "2021-03-02", 50, 4)]) == 0
    assert rows("select count(*) from journal_lines") == [(6,)]
    assert ledger.day_totals("2021-03-01", "2021-03-02") == {
        ("2021-03-01", "receivable"): (108, 0),
        ("2021-03-01", "revenue"): (0, 100),
        ("2021-03-01", "tax_payable"): (0, 8),
    }


def test_a_re_decision_and_an_amendment_on_postgres(database):
    """The rules' paths: versions kept, a re-decision once per version, a consignment amended."""
    import pandas as pd

    url, rows = database
    inventory = SqlInventory(url=url)
    inventory.seed_stock([StockItem(1, 1, 120)])  # 10 units
    first, second = line(1, 1, 6, "2021-01-05"), line(2, 1, 6, "2021-01-05")

    def decide(requests, **terms):
        frame = pd.DataFrame([r.__dict__ for r in requests])
        return inventory.decide_frame(frame, Terms(**terms)).values.tolist()

    assert decide([first, second], rules_version="0000000000a1") == [
        [RESERVED, "0000000000a1", 0, None],
        [BACKORDERED, "0000000000a1", 0, None],
    ]
    for _ in range(2):
        assert decide([second, first], rules_version="0000000000b2", redecide=True) == [
            [RESERVED, "0000000000b2", 1, BACKORDERED],
            [BACKORDERED, "0000000000b2", 1, RESERVED],
        ]
    assert inventory.stock_levels() == [(1, 1, 10, 4)]
    assert rows("select status, count(*) from reservations group by 1 order by 1") == [
        (BACKORDERED, 1),
        (RESERVED, 1),
    ]

    carrier = LocalCarrier(url=url)
    request = ShipmentRequest(7, "2021-01-05", "PERU", (ShipmentLine(1, 2, "AIR"),))
    (shipped,) = carrier.create_shipments([request])
    amended = ShipmentRequest(7, "2021-01-05", "PERU", (ShipmentLine(2, 1, "RAIL"),), 1)
    for _ in range(2):
        (answer,) = carrier.create_shipments([amended])
        assert (answer.status, answer.tracking_number) == (SHIPPED, shipped.tracking_number)
        assert [x.line_number for x in answer.lines] == [2]
    assert rows("select revision from shipments where order_key = 7") == [(1,)]
