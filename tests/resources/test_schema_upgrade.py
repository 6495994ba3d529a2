"""Databases created by an earlier layout (version 1 or 2) are upgraded in place, losing nothing.

Each test writes a version-1 or version-2 database the way the earlier code did (on SQLite, and on the
session's throwaway PostgreSQL server), then uses the current resource on it: the first answers
stay the first answers, and nothing is stored twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

import pytest

from foundation.sqldb.connections import sqlite_url
from foundation.sqldb.schema import VERSIONS_TABLE
from resources.accounting import JournalEntry, JournalLine, SqlAccounting
from resources.carrier import LocalCarrier, ShipmentLine, ShipmentRequest
from resources.inventory import ReservationRequest, SqlInventory
from simulator.inventory import BACKORDERED, RELEASED, RESERVED
from tests.postgres import new_database

DAY = "2021-02-03"
INVOICE_9_LINES = [
    ("invoice:9", 1, DAY, "receivable", 110, 0),
    ("invoice:9", 2, DAY, "revenue", 0, 100),
    ("invoice:9", 3, DAY, "tax_payable", 0, 10),
]


@dataclass
class Database:
    url: str
    run: Callable[[str, list[tuple]], None]  # one statement, once per row of parameters
    query: Callable[[str], list[tuple]]
    names: Callable[[], set[str]]  # its tables and indexes

    def create_v1(self, statements: list[str], rows: dict[str, list[tuple]]) -> None:
        for statement in statements:
            self.run(statement, [()])
        for table, values in rows.items():
            self.run(f"insert into {table} values ({', '.join('?' * len(values[0]))})", values)


def _sqlite(tmp_path) -> Database:
    path = tmp_path / "system.sqlite"

    def run(sql: str, rows: list[tuple]) -> None:
        with closing(sqlite3.connect(path)) as con, con:
            con.executemany(sql, rows)

    def query(sql: str) -> list[tuple]:
        with closing(sqlite3.connect(path)) as con:
            return con.execute(sql).fetchall()

    def names() -> set[str]:
        return {name for (name,) in query("select name from sqlite_master")}

    return Database(sqlite_url(path), run, query, names)


def _postgres(server) -> Database:
    name = new_database(server, "upgrade")

    def run(sql: str, rows: list[tuple]) -> None:
        connection = server.connect(name)
        try:
            with connection, connection.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)
        finally:
            connection.close()

    def query(sql: str) -> list[tuple]:
        return server.query(name, sql)

    def names() -> set[str]:
        return {
            n
            for (n,) in query(
                "select relname from pg_class c join pg_namespace s "
                "on s.oid = c.relnamespace where s.nspname = 'public'"
            )
        }

    return Database(server.url(name), run, query, names)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> Database:
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    return _postgres(request.getfixturevalue("postgres_server"))


def test_inventory_v1_keeps_its_decisions_and_restocks(database):
    database.create_v1(
        [
            """create table stock (partkey bigint not null, suppkey bigint not null,
            base_level integer not null, available integer not null,
            restocked_month integer not null, primary key (partkey, suppkey))""",
            """create table reservations (order_key bigint not null, line_number integer not null,
            order_day varchar(10) not null, partkey bigint not null, suppkey bigint not null,
            quantity integer not null, status varchar(12) not null,
            primary key (order_key, line_number))""",
            "create index reservations_by_day on reservations (order_day)",
            """create table restocks (partkey bigint not null, suppkey bigint not null,
            month integer not null, quantity integer not null,
            primary key (partkey, suppkey, month))""",
        ],
        {
            "stock": [(1, 7, 10, 2, 202102), (2, 7, 10, 10, 202102)],
            "reservations": [(5, 1, DAY, 1, 7, 8, RESERVED), (5, 2, DAY, 2, 7, 50, BACKORDERED)],
            "restocks": [(1, 7, 202102, 6), (2, 7, 202102, 3), (2, 7, 202101, 1)],
        },
    )
    inventory = SqlInventory(url=database.url)
    again = inventory.reserve([ReservationRequest(5, 1, DAY, 1, 7, 1)])
    fresh = inventory.reserve([ReservationRequest(6, 1, DAY, 1, 7, 3)])
    assert [r.status for r in again + fresh] == [RESERVED, BACKORDERED]
    assert inventory.stock_levels() == [(1, 7, 10, 2), (2, 7, 10, 10)]
    assert database.query("select * from supplier_restocks order by month") == [
        (7, 202101, 1, 1),
        (7, 202102, 2, 9),
    ]
    assert database.query("select count(*) from reservations") == [(3,)]
    # The day totals are counted from the version-1 lines, then kept with each new decision.
    assert inventory.reservations_by_day(DAY, "2021-02-04") == {
        DAY: {RESERVED: (1, 8), BACKORDERED: (2, 53)}
    }
    assert database.query("select system, version from schema_versions") == [("inventory", 4)]
    assert not database.names() & {
        "restocks",
        "reservations_old",
        "stock_old",
        "reservations_by_day",
    }


def test_carrier_v1_keeps_its_answers_and_lines(database):
    database.create_v1(
        [
            """create table shipments (order_key bigint primary key, order_day varchar(10) not null,
            destination varchar(64) not null, status varchar(12) not null,
            tracking_number varchar(32), reason varchar(200))""",
            "create index shipments_by_day on shipments (order_day)",
            """create table shipment_lines (order_key bigint not null, line_number integer not null,
            ship_mode varchar(16) not null, quantity integer not null, ship_date varchar(10),
            delivery_date varchar(10), primary key (order_key, line_number))""",
        ],
        {
            "shipments": [(9, DAY, "FRANCE", "shipped", "OF000000000009", None)],
            "shipment_lines": [
                (9, 1, "AIR", 4, "2021-02-04", "2021-02-06"),
                (9, 2, "MAIL", 1, "2021-02-04", "2021-02-10"),
            ],
        },
    )
    carrier = LocalCarrier(url=database.url)
    request = ShipmentRequest(9, DAY, "FRANCE", (ShipmentLine(1, 4, "AIR"),))
    [answer] = carrier.create_shipments([request])
    assert (answer.status, answer.tracking_number) == ("shipped", "OF000000000009")
    assert [(x.line_number, x.ship_date, x.delivery_date) for x in answer.lines] == [
        (1, "2021-02-04", "2021-02-06"),
        (2, "2021-02-04", "2021-02-10"),
    ]
    assert database.query("select order_day, count(*) from shipment_lines group by 1") == [(DAY, 2)]
    assert carrier.shipments_by_day(DAY, "2021-02-04") == {DAY: {"shipped": 1}}
    assert database.query("select system, version from schema_versions") == [("carrier", 3)]


def test_accounting_v1_keeps_its_entries(database):
    database.create_v1(
        [
            """create table journal_entries (entry_key varchar(64) primary key,
            entry_day varchar(10) not null, kind varchar(32) not null, order_key bigint not null)""",
            """create table journal_lines (entry_key varchar(64) not null,
            line_number integer not null, entry_day varchar(10) not null,
            account varchar(32) not null, debit_cents bigint not null,
            credit_cents bigint not null)""",
            "create index journal_lines_by_day on journal_lines (entry_day)",
        ],
        {
            "journal_entries": [("invoice:9", DAY, "invoice", 9)],
            "journal_lines": INVOICE_9_LINES,
        },
    )
    accounting = SqlAccounting(url=database.url)
    repeat = JournalEntry(
        "invoice:9",
        DAY,
        "invoice",
        9,
        (JournalLine("receivable", 999, 0), JournalLine("revenue", 0, 999)),
    )
    assert accounting.post([repeat]) == 0
    assert accounting.day_totals(DAY, "2021-02-04") == {
        (DAY, "receivable"): (110, 0),
        (DAY, "revenue"): (0, 100),
        (DAY, "tax_payable"): (0, 10),
    }
    assert database.query("select count(*) from journal_lines") == [(3,)]
    assert database.query("select system, version from schema_versions") == [("accounting", 3)]


# Version 2 (the layout before the day totals), as that code created it.
INVENTORY_V2 = [
    VERSIONS_TABLE,
    """create table stock (partkey bigint not null, suppkey bigint not null,
    base_level integer not null, available integer not null,
    restocked_month integer not null, primary key (partkey, suppkey))""",
    """create table reservation_orders (order_key bigint not null,
    order_day varchar(10) not null, primary key (order_key))""",
    """create table reservations (order_key bigint not null, line_number integer not null,
    order_day varchar(10) not null, partkey bigint not null, suppkey bigint not null,
    quantity integer not null, status varchar(12) not null,
    primary key (order_day, order_key, line_number))""",
    """create table supplier_restocks (suppkey bigint not null, month integer not null,
    pairs integer not null, quantity bigint not null, primary key (suppkey, month))""",
]
ACCOUNTING_V2 = [
    VERSIONS_TABLE,
    """create table journal_entries (entry_key varchar(64) not null,
    entry_day varchar(10) not null, kind varchar(32) not null, order_key bigint not null,
    primary key (entry_key))""",
    """create table journal_lines (entry_key varchar(64) not null, line_number integer not null,
    entry_day varchar(10) not null, account varchar(32) not null,
    debit_cents bigint not null, credit_cents bigint not null,
    primary key (entry_day, entry_key, line_number))""",
]


def test_inventory_v2_counts_its_day_totals_once_then_keeps_them(database):
    database.create_v1(
        INVENTORY_V2,
        {
            "schema_versions": [("inventory", 2)],
            "stock": [(1, 7, 10, 2, 202102), (2, 7, 10, 10, 202102)],
            "reservation_orders": [(5, DAY)],
            "reservations": [
                (5, 1, DAY, 1, 7, 8, RESERVED),
                (5, 2, DAY, 2, 7, 50, BACKORDERED),
                (5, 3, DAY, 1, 7, 2, RELEASED),
            ],
        },
    )
    inventory = SqlInventory(url=database.url)
    window = (DAY, "2021-02-04")
    assert inventory.reservations_by_day(*window) == {
        DAY: {RESERVED: (1, 8), BACKORDERED: (1, 50), RELEASED: (1, 2)}
    }
    assert inventory.release([(5, 1), (5, 2)]) == 1  # a back-ordered line holds nothing
    assert (
        inventory.reserve([ReservationRequest(6, 1, "2021-02-05", 2, 7, 4)])[0].status == RESERVED
    )
    assert inventory.reservations_by_day(*window) == {
        DAY: {BACKORDERED: (1, 50), RELEASED: (2, 10)}
    }
    assert inventory.reservations_by_day("2021-02-05", "2021-02-06") == {
        "2021-02-05": {RESERVED: (1, 4)}
    }
    # Version 4's columns were added in place: the decisions made before keep no rules version.
    assert database.query(
        "select order_key, line_number, rules_version, revision, history from reservations "
        "order by 1, 2"
    ) == [
        (5, 1, None, 0, None),
        (5, 2, None, 0, None),
        (5, 3, None, 0, None),
        (6, 1, None, 0, None),
    ]
    assert database.query("select system, version from schema_versions") == [("inventory", 4)]


def test_accounting_v2_sums_its_trial_balance_once_then_keeps_it(database):
    database.create_v1(
        ACCOUNTING_V2,
        {
            "schema_versions": [("accounting", 2)],
            "journal_entries": [("invoice:9", DAY, "invoice", 9)],
            "journal_lines": INVOICE_9_LINES,
        },
    )
    accounting = SqlAccounting(url=database.url)
    sale = (JournalLine("receivable", 55, 0), JournalLine("revenue", 0, 55))
    assert accounting.post([JournalEntry("invoice:9", DAY, "invoice", 9, sale)]) == 0
    assert accounting.post([JournalEntry("invoice:10", DAY, "invoice", 10, sale)]) == 1
    assert accounting.day_totals(DAY, "2021-02-04") == {
        (DAY, "receivable"): (165, 0),
        (DAY, "revenue"): (0, 155),
        (DAY, "tax_payable"): (0, 10),
    }
    assert database.query("select system, version from schema_versions") == [("accounting", 3)]
