"""The in-process carrier: deterministic tracking numbers and dates, first answers kept, refusals."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from datetime import date
from pathlib import Path

import pytest

from foundation.rules import load_rules
from foundation.sqldb.connections import sqlite_url
from resources.carrier import LocalCarrier, ShipmentLine, ShipmentRequest
from resources.faults import FaultInjection, SystemUnavailable
from simulator.carrier import CANCELLED, REFUSED, SHIPPED
from tests.helpers import write_rules

TRANSIT_DAYS = load_rules().carrier.transit_days

MODES = sorted(TRANSIT_DAYS)


def carrier(db: Path, **config) -> LocalCarrier:
    return LocalCarrier(url=sqlite_url(db), **config)


def order(order_key: int, day: str = "2021-05-10", modes=("TRUCK",)) -> ShipmentRequest:
    return ShipmentRequest(
        order_key=order_key,
        order_day=day,
        destination="FRANCE",
        lines=tuple(
            ShipmentLine(line_number=n, quantity=n * 2, ship_mode=mode)
            for n, mode in enumerate(modes, start=1)
        ),
    )


def count_rows(db: Path, table: str) -> int:
    with closing(sqlite3.connect(db)) as con:
        return con.execute(f"select count(*) from {table}").fetchone()[0]


def test_every_ship_mode_gets_a_tracking_number_and_dates_in_range(tmp_path):
    # Many orders, each with one line per mode, over a month end and a year end.
    days = ["2021-05-10", "2021-05-31", "2020-12-31", "2024-02-28"]
    requests = [order(key, days[key % 4], MODES) for key in range(1, 61)]
    answers = carrier(tmp_path / "carrier.sqlite").create_shipments(requests)

    assert [a.order_key for a in answers] == list(range(1, 61))
    handling_days = set()
    for request, answer in zip(requests, answers, strict=True):
        assert answer.status == SHIPPED
        assert answer.reason is None
        assert re.fullmatch(r"OF\d{12}", answer.tracking_number)
        assert [(x.line_number, x.quantity, x.ship_mode) for x in answer.lines] == [
            (x.line_number, x.quantity, x.ship_mode) for x in request.lines
        ]
        ordered = date.fromisoformat(request.order_day)
        # one consignment per order: every line leaves on the same day
        assert len({x.ship_date for x in answer.lines}) == 1
        for shipped in answer.lines:
            ship = date.fromisoformat(shipped.ship_date)
            delivery = date.fromisoformat(shipped.delivery_date)
            assert 1 <= (ship - ordered).days <= 3
            low, high = TRANSIT_DAYS[shipped.ship_mode]
            assert low <= (delivery - ship).days <= high, shipped
            handling_days.add((ship - ordered).days)
    assert handling_days == {1, 2, 3}
    assert len({a.tracking_number for a in answers}) == 60


def test_answers_are_the_same_in_two_separate_databases(tmp_path):
    requests = [order(key, modes=MODES) for key in (7, 1_234_567, 60_000_000)]
    first = carrier(tmp_path / "a" / "carrier.sqlite").create_shipments(requests)
    # another carrier database, asked in another order and in two batches
    second = carrier(tmp_path / "b" / "carrier.sqlite").create_shipments(requests[2:])
    second += carrier(tmp_path / "b" / "carrier.sqlite").create_shipments(requests[:2])
    assert sorted(first, key=lambda s: s.order_key) == sorted(second, key=lambda s: s.order_key)


def test_an_unknown_ship_mode_is_refused_with_the_mode_named(tmp_path):
    db = tmp_path / "carrier.sqlite"
    answers = carrier(db).create_shipments(
        [order(1, modes=("AIR", "BIKE")), order(2, modes=("AIR",)), order(3, modes=())]
    )
    assert [a.status for a in answers] == [REFUSED, SHIPPED, REFUSED]
    assert answers[0].tracking_number is None
    assert "BIKE" in answers[0].reason
    assert "AIR" not in answers[0].reason
    assert all(line.ship_date is None for line in answers[0].lines)
    assert answers[2].reason == "shipment has no lines"
    assert carrier(db).shipments_by_day("2021-05-01", "2021-06-01") == {
        "2021-05-10": {SHIPPED: 1, REFUSED: 2}
    }


def test_a_refusal_is_the_first_answer_and_is_kept(tmp_path):
    db = tmp_path / "carrier.sqlite"
    refusing = carrier(db, faults=FaultInjection(reject_keys=["2"]))
    first = refusing.create_shipments([order(1), order(2), order(3)])
    assert [a.status for a in first] == [SHIPPED, REFUSED, SHIPPED]
    assert first[1].tracking_number is None
    assert "refused" in first[1].reason

    # Without the fault the carrier still answers as it did the first time.
    again = carrier(db).create_shipments([order(2), order(4)])
    assert again[0] == first[1]
    assert again[1].status == SHIPPED
    assert carrier(db).shipments_by_day("2021-05-10", "2021-05-11") == {
        "2021-05-10": {SHIPPED: 3, REFUSED: 1}
    }


def test_repeats_return_identical_answers_and_record_nothing_new(tmp_path):
    db = tmp_path / "carrier.sqlite"
    requests = [
        order(1, modes=MODES),
        order(2, "2021-05-11", ("AIR", "SHIP")),
        order(3, modes=("X",)),
    ]
    first = carrier(db).create_shipments(requests)
    by_day = carrier(db).shipments_by_day("2021-05-01", "2021-06-01")
    assert by_day == {"2021-05-10": {SHIPPED: 1, REFUSED: 1}, "2021-05-11": {SHIPPED: 1}}
    stored = (count_rows(db, "shipments"), count_rows(db, "shipment_lines"))

    assert carrier(db).create_shipments(requests) == first
    # a changed request for a known order (other day, lines, destination) gets the first answer
    changed = ShipmentRequest(2, "2021-06-30", "PERU", (ShipmentLine(9, 1, "RAIL"),))
    assert carrier(db).create_shipments([changed]) == [first[1]]
    # a key twice in one new batch is shipped once
    twice = carrier(db).create_shipments([order(4), order(4)])
    assert twice[0] == twice[1]

    assert carrier(db).shipments_by_day("2021-05-01", "2021-06-01") == {
        **by_day,
        "2021-05-10": {SHIPPED: 2, REFUSED: 1},
    }
    assert (count_rows(db, "shipments"), count_rows(db, "shipment_lines")) == (
        stored[0] + 1,
        stored[1] + 1,
    )
    assert carrier(db).shipments_by_day("2021-06-01", "2021-07-01") == {}


def test_a_known_order_twice_in_one_batch_gets_its_first_answer_twice(tmp_path):
    db = tmp_path / "carrier.sqlite"
    first = carrier(db).create_shipments([order(1, modes=("AIR", "MAIL")), order(2, modes=("X",))])
    again = carrier(db).create_shipments([order(2), order(1), order(2), order(1)])
    assert again == [first[1], first[0], first[1], first[0]]
    assert len(again[1].lines) == 2


def test_an_unreachable_database_is_a_transient_fault(tmp_path):
    db = tmp_path / "carrier.sqlite"
    db.mkdir()  # a directory where the database file should be
    with pytest.raises(SystemUnavailable, match="carrier database unavailable"):
        carrier(db).create_shipments([order(1)])


def test_a_carrier_that_is_down_is_unavailable(tmp_path):
    db = tmp_path / "carrier.sqlite"
    down = carrier(db, faults=FaultInjection(down=True))
    with pytest.raises(SystemUnavailable, match="carrier is down"):
        down.create_shipments([order(1)])
    with pytest.raises(SystemUnavailable):
        down.shipments_by_day("2021-05-01", "2021-06-01")
    assert carrier(db).shipments_by_day("2021-05-01", "2021-06-01") == {}


def test_an_outage_of_two_calls_spans_resource_instances(tmp_path):
    db = tmp_path / "carrier.sqlite"
    faults = FaultInjection(outage_calls=2)
    for _ in range(2):
        with pytest.raises(SystemUnavailable):
            carrier(db, faults=faults).create_shipments([order(1)])
    assert [a.status for a in carrier(db, faults=faults).create_shipments([order(1)])] == [SHIPPED]
    assert count_rows(db, "shipments") == 1


# --- the rules' days, and revisions of an order -------------------------------------------------


def test_the_days_are_the_rules_and_a_mode_left_out_is_refused(tmp_path, monkeypatch):
    rules = write_rules(
        tmp_path / "rules.yaml",
        carrier={"handling_days": [2, 2], "transit_days": {"AIR": [10, 10]}},
    )
    monkeypatch.setenv("ORDERFLOW_RULES", str(rules))
    shipped, refused = carrier(tmp_path / "carrier.sqlite").create_shipments(
        [order(1, "2021-05-10", ("AIR",)), order(2, "2021-05-10", ("AIR", "TRUCK"))]
    )
    assert [(x.ship_date, x.delivery_date) for x in shipped.lines] == [("2021-05-12", "2021-05-22")]
    assert refused.status == REFUSED
    assert refused.reason == "carrier does not offer ship mode TRUCK"


def revised(request: ShipmentRequest, revision: int, *lines: ShipmentLine) -> ShipmentRequest:
    return ShipmentRequest(
        request.order_key, request.order_day, request.destination, lines, revision
    )


def test_a_later_revision_amends_the_consignment_once(tmp_path):
    db = tmp_path / "carrier.sqlite"
    first = order(1, modes=("AIR", "TRUCK"))
    (shipped,) = carrier(db).create_shipments([first])
    truck = shipped.lines[1]
    # Revision 1: line 1 no longer asked for, line 2 kept, line 3 added.
    added = ShipmentLine(3, 5, "RAIL")
    (amended,) = carrier(db).create_shipments([revised(first, 1, first.lines[1], added)])
    assert (amended.status, amended.tracking_number) == (SHIPPED, shipped.tracking_number)
    assert amended.lines[0] == truck  # its plan is kept
    rail = amended.lines[1]
    assert (rail.line_number, rail.quantity, rail.ship_mode) == (3, 5, "RAIL")
    assert rail.ship_date == truck.ship_date and rail.delivery_date  # one pickup per consignment
    rows = count_rows(db, "shipment_lines")
    # Asked again at revision 1 (a rerun), or at 0: the amended answer, nothing written.
    assert carrier(db).create_shipments([revised(first, 1, first.lines[1], added)]) == [amended]
    assert carrier(db).create_shipments([first]) == [amended]
    assert count_rows(db, "shipment_lines") == rows == 2
    # Revision 2 with nothing to ship cancels it; its lines stay on record.
    (cancelled,) = carrier(db).create_shipments([revised(first, 2)])
    assert (cancelled.status, cancelled.lines) == (CANCELLED, amended.lines)
    assert carrier(db).shipments_by_day("2021-05-10", "2021-05-11") == {
        "2021-05-10": {CANCELLED: 1}
    }
    # An order never shipped with nothing to ship: cancelled, nothing to store.
    (nothing,) = carrier(db).create_shipments([revised(order(2), 1)])
    assert (nothing.status, nothing.lines) == (CANCELLED, ())
    assert count_rows(db, "shipments") == 1


def test_a_refusal_is_not_amended(tmp_path):
    db = tmp_path / "carrier.sqlite"
    (refused,) = carrier(db, faults=FaultInjection(reject_keys=["1"])).create_shipments([order(1)])
    assert carrier(db).create_shipments([revised(order(1), 1, ShipmentLine(1, 2, "AIR"))]) == [
        refused
    ]
