"""The SQLite inventory: seeding, first-come-first-served reservations, monthly top-up, release, faults.

Every test runs against a real SQLite file in `tmp_path` and checks the database itself (with
`sqlite3`) where the resource's own answers could hide a duplicate or a lost update.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

import simulator.inventory
from foundation.sqldb.bulk import fetch_all
from foundation.sqldb.connections import sqlite_url
from resources.faults import FaultInjection, SystemRefused, SystemUnavailable
from resources.inventory import Reservation, ReservationRequest, SqlInventory, StockItem, Terms
from simulator.inventory import BACKORDERED, RELEASED, RESERVED
from tests.helpers import write_rules

PART, SUPP = 101, 7
# ps_availqty 120 with the default divisor 12: a base level of 10 units.
TEN_UNITS = StockItem(PART, SUPP, 120)


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "systems" / "inventory.sqlite"


def inventory(tmp_path: Path, **config) -> SqlInventory:
    return SqlInventory(url=sqlite_url(db_path(tmp_path)), **config)


def line(order: int, number: int, quantity: int, day: str = "2021-01-15", part=PART, supp=SUPP):
    return ReservationRequest(order, number, day, part, supp, quantity)


def statuses(reservations: list[Reservation]) -> list[tuple[int, int, str]]:
    return [(r.order_key, r.line_number, r.status) for r in reservations]


def rows(tmp_path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db_path(tmp_path))) as con:
        return con.execute(sql).fetchall()


def count(tmp_path: Path, table: str) -> int:
    return rows(tmp_path, f"select count(*) from {table}")[0][0]


def available(system: SqlInventory, part: int = PART, supp: int = SUPP) -> int:
    return next(a for p, s, _, a in system.stock_levels() if (p, s) == (part, supp))


def snapshot(tmp_path: Path, system: SqlInventory) -> tuple:
    """Everything a repeated call must leave untouched."""
    return (
        system.stock_levels(),
        rows(tmp_path, "select * from reservations order by order_key, line_number"),
        rows(tmp_path, "select * from supplier_restocks order by suppkey, month"),
    )


@pytest.fixture
def stocked(tmp_path) -> SqlInventory:
    system = inventory(tmp_path)
    system.seed_stock([TEN_UNITS])
    return system


# --- seeding -----------------------------------------------------------------------------------


def test_seeding_sets_base_levels_and_is_idempotent(tmp_path):
    system = inventory(tmp_path)
    items = [StockItem(1, 10, 1200), StockItem(2, 20, 5), StockItem(3, 30, 25), StockItem(4, 40, 0)]
    assert system.seed_stock(items) == 4
    # base = ps_availqty // 12, at least 1; available starts at the base level
    assert system.stock_levels() == [
        (1, 10, 100, 100),
        (2, 20, 1, 1),
        (3, 30, 2, 2),
        (4, 40, 1, 1),
    ]
    assert system.seed_stock(items) == 0
    # a known pair is never re-seeded, even with another ps_availqty; a new one is added
    assert system.seed_stock([StockItem(1, 10, 9999), StockItem(5, 50, 24)]) == 1
    assert system.stock_levels()[0] == (1, 10, 100, 100)
    assert system.stock_levels()[-1] == (5, 50, 2, 2)
    assert count(tmp_path, "stock") == 5
    assert system.seed_stock([]) == 0


def test_stock_levels_come_in_batches_in_key_order(tmp_path):
    system = inventory(tmp_path)
    system.seed_stock([StockItem(part, SUPP, 120) for part in (5, 3, 1, 4, 2)])
    system.reserve([line(1, 1, 4, part=5)])
    batches = list(system.stock_level_batches(rows=2))
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert [pair for batch in batches for pair in batch] == system.stock_levels()
    assert system.stock_levels() == [
        (part, SUPP, 10, 6 if part == 5 else 10) for part in range(1, 6)
    ]


def test_seeding_uses_the_divisor_of_the_rules(tmp_path, monkeypatch):
    rules = write_rules(tmp_path / "rules.yaml", stock={"base_level_divisor": 5})
    monkeypatch.setenv("ORDERFLOW_RULES", str(rules))
    system = inventory(tmp_path)
    system.seed_stock([StockItem(1, 10, 1200), StockItem(2, 20, 4)])
    assert system.stock_levels() == [(1, 10, 240, 240), (2, 20, 1, 1)]


def test_seeding_does_not_reset_stock_already_reserved(stocked):
    stocked.reserve([line(1, 1, 4)])
    assert stocked.seed_stock([TEN_UNITS]) == 0
    assert stocked.stock_levels() == [(PART, SUPP, 10, 6)]


# --- first come, first served ------------------------------------------------------------------


def test_lines_are_decided_in_request_order_whole_quantity_or_backorder(stocked):
    # Request order, not key order: sorting by key would reserve order 1 first and change every
    # decision after it.
    decisions = stocked.reserve(
        [
            line(9, 1, 4),  # 10 → 6
            line(3, 1, 7),  # 7 > 6: back-ordered, nothing taken (no partial reservation)
            line(5, 2, 6),  # exactly covers the 6 left → 0
            line(1, 1, 1),  # nothing left
        ]
    )
    assert statuses(decisions) == [
        (9, 1, RESERVED),
        (3, 1, BACKORDERED),
        (5, 2, RESERVED),
        (1, 1, BACKORDERED),
    ]
    assert stocked.stock_levels() == [(PART, SUPP, 10, 0)]
    assert stocked.overcommitted() == []


def test_a_line_larger_than_the_base_level_is_backordered_and_takes_nothing(stocked):
    assert statuses(stocked.reserve([line(1, 1, 11), line(1, 2, 10)])) == [
        (1, 1, BACKORDERED),
        (1, 2, RESERVED),
    ]
    assert available(stocked) == 0


def test_pairs_keep_separate_stock(tmp_path):
    system = inventory(tmp_path)
    system.seed_stock([StockItem(1, 1, 60), StockItem(1, 2, 120)])  # bases 5 and 10
    decisions = system.reserve(
        [
            line(1, 1, 5, part=1, supp=1),
            line(1, 2, 5, part=1, supp=2),
            line(2, 1, 1, part=1, supp=1),
        ]
    )
    assert [d.status for d in decisions] == [RESERVED, RESERVED, BACKORDERED]
    assert system.stock_levels() == [(1, 1, 5, 0), (1, 2, 10, 5)]


def test_random_batches_match_a_first_come_first_served_model(tmp_path):
    """Many pairs, many batches in one month: the decisions are exactly those of a simple model."""
    rng = random.Random(20210115)
    system = inventory(tmp_path)
    items = [StockItem(part, supp, rng.randint(0, 400)) for part in range(1, 6) for supp in (1, 2)]
    system.seed_stock(items)
    model = {(i.partkey, i.suppkey): max(1, i.availqty // 12) for i in items}
    base = dict(model)
    order = 0
    for _ in range(8):
        batch = []
        for _ in range(rng.randint(1, 25)):
            order += 1
            part, supp = rng.randint(1, 5), rng.randint(1, 2)
            batch.append(line(order, 1, rng.randint(1, 12), day="2021-03-09", part=part, supp=supp))
        expected = []
        for request in batch:
            pair = (request.partkey, request.suppkey)
            if model[pair] >= request.quantity:
                model[pair] -= request.quantity
                expected.append(RESERVED)
            else:
                expected.append(BACKORDERED)
        assert [d.status for d in system.reserve(batch)] == expected
    assert system.stock_levels() == [(p, s, base[(p, s)], model[(p, s)]) for p, s in sorted(model)]
    assert all(level >= 0 for level in model.values())
    assert system.overcommitted() == []


def test_random_batches_over_months_and_releases_match_the_line_by_line_rule(tmp_path):
    """The array-at-once decisions equal the documented rule applied one line at a time.

    Batches mix months (out of order too), repeat earlier keys, follow releases (some of which
    lift stock above its base level), and hold both pairs that fit and pairs that overflow.
    """
    rng = random.Random(20240229)
    system = inventory(tmp_path)
    items = [StockItem(part, supp, rng.randint(0, 300)) for part in range(1, 8) for supp in (1, 2)]
    system.seed_stock(items)
    levels = {(i.partkey, i.suppkey): [max(1, i.availqty // 12)] * 2 + [0] for i in items}
    decided: dict[tuple[int, int], list] = {}  # key -> [status, pair, quantity]
    restocks = []

    def check(batch):
        expected = []
        for request in batch:
            key = (request.order_key, request.line_number)
            if key not in decided:
                pair = (request.partkey, request.suppkey)
                level = levels[pair]
                month = int(request.order_day[:4]) * 100 + int(request.order_day[5:7])
                if month > level[2]:
                    if level[0] > level[1]:
                        restocks.append((*pair, month, level[0] - level[1]))
                        level[1] = level[0]
                    level[2] = month
                status = RESERVED if level[1] >= request.quantity else BACKORDERED
                if status == RESERVED:
                    level[1] -= request.quantity
                decided[key] = [status, pair, request.quantity]
            expected.append(RESERVED if decided[key][0] == RELEASED else decided[key][0])
        assert [d.status for d in system.reserve(batch)] == expected

    def release(keys):
        released = [k for k in dict.fromkeys(keys) if decided[k][0] == RESERVED]
        assert system.release(keys) == len(released)
        for k in released:
            decided[k][0] = RELEASED
            levels[decided[k][1]][1] += decided[k][2]

    days = [f"2021-{month:02d}-{day:02d}" for month in range(1, 7) for day in (1, 14, 28)]
    order = 0
    for batch_number in range(30):
        batch = []
        for _ in range(rng.randint(1, 60)):
            if decided and rng.random() < 0.1:
                o, n = rng.choice(sorted(decided))
                batch.append(line(o, n, rng.randint(1, 15), day=rng.choice(days)))
                continue
            order += 1
            day = days[min(len(days) - 1, batch_number // 2 + rng.randint(-2, 2))]
            part, supp = rng.randint(1, 7), rng.randint(1, 2)
            batch.append(line(order, 1, rng.randint(1, 15), day, part=part, supp=supp))
        check(batch)
        if batch_number % 3 == 2:
            release(rng.sample(sorted(decided), k=min(5, len(decided))))
    # A July line, then August tops pair (1, 1) up, then releasing the July line lifts it above
    # its base level: the next batches start from there, in August and in September.
    check([line(9001, 1, 5, "2021-07-02", part=1, supp=1)])
    check([line(9002, 1, 1, "2021-08-02", part=1, supp=1)])
    release([(9001, 1)])
    assert levels[(1, 1)][1] > levels[(1, 1)][0]
    check([line(9003, 1, 2, "2021-08-20", part=1, supp=1), line(9004, 1, 50, "2021-09-01", 1, 1)])
    check([line(9005, 1, 1, "2021-09-03", part=1, supp=1), line(9006, 1, 3, "2021-08-31", 1, 1)])

    assert system.stock_levels() == [(p, s, b, a) for (p, s), (b, a, _) in sorted(levels.items())]
    deliveries: dict[tuple[int, int], list[int]] = {}
    for _part, supp, month, quantity in restocks:
        delivery = deliveries.setdefault((supp, month), [0, 0])
        delivery[0] += 1
        delivery[1] += quantity
    assert rows(tmp_path, "select * from supplier_restocks order by suppkey, month") == [
        (supp, month, pairs, quantity)
        for (supp, month), (pairs, quantity) in sorted(deliveries.items())
    ]
    assert any(status == BACKORDERED for status, _, _ in decided.values())
    # The day totals kept beside the reservations agree with counting the reservations.
    counted: dict[str, dict[str, tuple[int, int]]] = {}
    for day, status, lines, quantity in rows(
        tmp_path,
        "select order_day, status, count(*), sum(quantity) from reservations group by 1, 2",
    ):
        counted.setdefault(day, {})[status] = (lines, quantity)
    assert {RESERVED, BACKORDERED, RELEASED} <= {s for day in counted.values() for s in day}
    assert system.reservations_by_day("2021-01-01", "2022-01-01") == counted
    assert system.recount_reservations_by_day("2021-01-01", "2022-01-01") == counted


# --- idempotency -------------------------------------------------------------------------------


def test_repeating_a_batch_returns_the_first_decisions_and_changes_nothing(tmp_path, stocked):
    batch = [line(1, 1, 4), line(1, 2, 7), line(2, 1, 6)]
    first = stocked.reserve(batch)
    assert [d.status for d in first] == [RESERVED, BACKORDERED, RESERVED]
    before = snapshot(tmp_path, stocked)

    assert stocked.reserve(batch) == first
    # Same keys, other quantities: had they been decided afresh, every answer would differ.
    changed = [line(1, 1, 50), line(1, 2, 1), line(2, 1, 50)]
    assert stocked.reserve(changed) == first
    # A new resource instance (a retry, another run) sees the same decisions.
    assert inventory(tmp_path).reserve(list(reversed(batch))) == list(reversed(first))

    assert snapshot(tmp_path, stocked) == before
    assert count(tmp_path, "reservations") == 3
    # The stored quantity is the first request's, not a later one's.
    assert rows(tmp_path, "select quantity from reservations order by order_key, line_number") == [
        (4,),
        (7,),
        (6,),
    ]


def test_a_key_twice_in_one_batch_is_decided_once(tmp_path, stocked):
    decisions = stocked.reserve([line(1, 1, 3), line(1, 1, 3), line(1, 1, 9)])
    assert statuses(decisions) == [(1, 1, RESERVED)] * 3
    assert available(stocked) == 7
    assert count(tmp_path, "reservations") == 1


def test_a_batch_mixing_repeats_and_new_lines_decides_only_the_new_ones(tmp_path, stocked):
    stocked.reserve([line(1, 1, 8)])
    decisions = stocked.reserve([line(2, 1, 2), line(1, 1, 8), line(3, 1, 1)])
    assert [d.status for d in decisions] == [RESERVED, RESERVED, BACKORDERED]
    assert available(stocked) == 0
    assert count(tmp_path, "reservations") == 3


def test_an_order_asked_under_another_day_keeps_its_first_day_and_decisions(tmp_path, stocked):
    """Its known line is found, its new line joins the others under the order's first day."""
    first = stocked.reserve([line(1, 1, 4, "2021-01-05")])
    later = stocked.reserve(
        [line(1, 1, 9, "2021-03-09"), line(1, 2, 3, "2021-03-09"), line(2, 1, 2, "2021-03-09")]
    )
    assert statuses(later) == [(1, 1, RESERVED), (1, 2, RESERVED), (2, 1, RESERVED)]
    assert later[0] == first[0]
    # January: 10 − 4 − 3 (line 1:2 counts in its order's month); March tops up to 10, then − 2.
    assert available(stocked) == 8
    assert rows(tmp_path, "select order_key, line_number, order_day from reservations") == [
        (1, 1, "2021-01-05"),
        (1, 2, "2021-01-05"),
        (2, 1, "2021-03-09"),
    ]
    assert rows(tmp_path, "select * from reservation_orders order by 1") == [
        (1, "2021-01-05"),
        (2, "2021-03-09"),
    ]
    # Asked a third time, nothing changes.
    before = snapshot(tmp_path, stocked)
    assert stocked.reserve([line(1, 2, 1, "2021-04-01")]) == [later[1]]
    assert snapshot(tmp_path, stocked) == before


def test_a_known_key_twice_in_a_batch_under_another_day_gets_its_first_decision(stocked):
    """The exact lookup (an order asked under another day) sees each key once, however often."""
    (first,) = stocked.reserve([line(1, 1, 4, "2021-01-05")])
    again = stocked.reserve([line(1, 1, 4, "2021-01-09"), line(1, 1, 4, "2021-01-09")])
    assert again == [first, first]
    assert available(stocked) == 6


def test_a_chunk_reads_the_stock_of_its_own_pairs_not_all_of_it(tmp_path, monkeypatch):
    # A month at SF 1 asks for some 70 k of the 800 k pairs, once per chunk of a backfill.
    system = inventory(tmp_path)
    system.seed_stock([StockItem(p, s, 120) for p in range(1, 25_001) for s in (1, 2, 3, 4)])
    read = []

    def recording(conn, sql, params=()):
        found = fetch_all(conn, sql, params)
        if " from stock" in sql:
            read.append(len(found))
        return found

    monkeypatch.setattr(simulator.inventory, "fetch_all", recording)
    month = [line(order, 1, 1, part=order, supp=1) for order in range(1, 25_001)]
    assert {r.status for r in system.reserve(month)} == {RESERVED}
    assert read and max(read) == len(month)


def test_an_empty_batch_is_a_no_op(tmp_path, stocked):
    before = snapshot(tmp_path, stocked)
    assert stocked.reserve([]) == []
    assert stocked.release([]) == 0
    assert snapshot(tmp_path, stocked) == before


# --- monthly top-up ----------------------------------------------------------------------------


def test_stock_exhausted_in_january_is_topped_up_in_february_once(tmp_path, stocked):
    january = stocked.reserve([line(1, 1, 10, "2021-01-05"), line(2, 1, 1, "2021-01-31")])
    assert [d.status for d in january] == [RESERVED, BACKORDERED]
    assert available(stocked) == 0
    assert count(tmp_path, "supplier_restocks") == 0

    february = stocked.reserve([line(3, 1, 3, "2021-02-01")])
    assert [d.status for d in february] == [RESERVED]
    # topped up *to* the base level (10), not by it, then 3 taken
    assert stocked.stock_levels() == [(PART, SUPP, 10, 7)]
    assert rows(tmp_path, "select suppkey, month, pairs, quantity from supplier_restocks") == [
        (SUPP, 202102, 1, 10)
    ]

    # Later February lines, a repeat of the batch and a new instance do not top up again.
    assert [d.status for d in stocked.reserve([line(4, 1, 7, "2021-02-28")])] == [RESERVED]
    assert stocked.reserve([line(3, 1, 3, "2021-02-01")]) == february
    assert [d.status for d in inventory(tmp_path).reserve([line(5, 1, 1, "2021-02-14")])] == [
        BACKORDERED
    ]
    assert available(stocked) == 0
    assert count(tmp_path, "supplier_restocks") == 1


def test_top_up_replaces_only_what_was_used_and_crosses_the_year(tmp_path, stocked):
    stocked.reserve([line(1, 1, 4, "2020-12-30")])
    assert available(stocked) == 6
    assert [d.status for d in stocked.reserve([line(2, 1, 10, "2021-01-02")])] == [RESERVED]
    assert rows(tmp_path, "select month, quantity from supplier_restocks") == [(202101, 4)]
    assert stocked.stock_levels() == [(PART, SUPP, 10, 0)]


def test_top_up_happens_within_the_batch_that_crosses_the_month(tmp_path, stocked):
    decisions = stocked.reserve(
        [
            line(1, 1, 10, "2021-01-20"),
            line(2, 1, 1, "2021-01-21"),
            line(3, 1, 10, "2021-02-01"),
            line(4, 1, 1, "2021-02-02"),
        ]
    )
    assert [d.status for d in decisions] == [RESERVED, BACKORDERED, RESERVED, BACKORDERED]
    assert rows(tmp_path, "select month, quantity from supplier_restocks") == [(202102, 10)]
    assert available(stocked) == 0


# --- release -----------------------------------------------------------------------------------


def test_release_returns_the_quantity_once(tmp_path, stocked):
    stocked.reserve([line(1, 1, 4), line(1, 2, 3), line(2, 1, 9)])  # the last is back-ordered
    assert available(stocked) == 3

    # a duplicate key in one call, a back-ordered line and an unknown key change nothing extra
    assert stocked.release([(1, 1), (1, 1), (2, 1), (99, 1)]) == 1
    assert available(stocked) == 7
    assert stocked.release([(1, 1)]) == 0
    assert inventory(tmp_path).release([(1, 1), (1, 1)]) == 0
    assert available(stocked) == 7

    assert rows(tmp_path, "select order_key, line_number, status from reservations") == [
        (1, 1, RELEASED),
        (1, 2, RESERVED),
        (2, 1, BACKORDERED),
    ]
    # asking to reserve a released line again returns its first decision and takes no stock
    assert statuses(stocked.reserve([line(1, 1, 4)])) == [(1, 1, RESERVED)]
    assert available(stocked) == 7
    assert rows(
        tmp_path, "select status from reservations where order_key = 1 and line_number = 1"
    ) == [(RELEASED,)]


def test_release_of_several_lines_of_one_pair_adds_them_all(stocked):
    stocked.reserve([line(1, 1, 2), line(1, 2, 3), line(1, 3, 4)])
    assert available(stocked) == 1
    assert stocked.release([(1, 3), (1, 1), (1, 2), (1, 3)]) == 3
    assert available(stocked) == 10


# --- reconciliation ----------------------------------------------------------------------------


def test_reservations_by_day_sums_lines_and_quantity_per_status(stocked):
    stocked.seed_stock([StockItem(PART, SUPP + 1, 1200)])  # base 100
    stocked.reserve(
        [
            line(1, 1, 4, "2021-01-10"),
            line(1, 2, 5, "2021-01-10", supp=SUPP + 1),
            line(2, 1, 7, "2021-01-10"),  # 6 left: back-ordered
            line(3, 1, 6, "2021-01-11"),
            line(4, 1, 2, "2021-01-12"),  # back-ordered
        ]
    )
    stocked.release([(1, 2)])
    assert stocked.reservations_by_day("2021-01-10", "2021-01-12") == {
        "2021-01-10": {RESERVED: (1, 4), RELEASED: (1, 5), BACKORDERED: (1, 7)},
        "2021-01-11": {RESERVED: (1, 6)},
    }
    assert stocked.reservations_by_day("2021-01-12", "2021-01-13") == {
        "2021-01-12": {BACKORDERED: (1, 2)}
    }
    assert stocked.reservations_by_day("2021-02-01", "2021-03-01") == {}


# --- refusals and faults -----------------------------------------------------------------------


def test_unknown_part_and_supplier_is_refused_and_nothing_is_kept(tmp_path, stocked):
    before = snapshot(tmp_path, stocked)
    with pytest.raises(SystemRefused, match="fulfillment/inventory_stock") as refused:
        stocked.reserve([line(1, 1, 2), line(2, 1, 1, part=PART, supp=999)])
    assert "part 101 supplier 999" in str(refused.value)
    assert snapshot(tmp_path, stocked) == before
    # the refusal is permanent (a retry fails the same way), and it left no half-done work
    with pytest.raises(SystemRefused):
        stocked.reserve([line(2, 1, 1, part=PART, supp=999)])
    assert [d.status for d in stocked.reserve([line(1, 1, 2)])] == [RESERVED]


def test_rejected_key_is_refused_before_anything_is_decided(tmp_path, stocked):
    rejecting = inventory(tmp_path, faults=FaultInjection(reject_keys=["2:1"]))
    with pytest.raises(SystemRefused, match="2:1"):
        rejecting.reserve([line(1, 1, 2), line(2, 1, 1)])
    assert count(tmp_path, "reservations") == 0
    assert available(stocked) == 10
    # only the exact order:line is refused
    assert [d.status for d in rejecting.reserve([line(2, 2, 1), line(1, 2, 1)])] == [
        RESERVED,
        RESERVED,
    ]


def test_a_system_that_is_down_is_unavailable(tmp_path, stocked):
    down = inventory(tmp_path, faults=FaultInjection(down=True))
    with pytest.raises(SystemUnavailable, match="inventory is down"):
        down.reserve([line(1, 1, 1)])
    with pytest.raises(SystemUnavailable):
        down.seed_stock([StockItem(5, 5, 100)])
    with pytest.raises(SystemUnavailable):
        down.release([(1, 1)])
    with pytest.raises(SystemUnavailable):
        down.reservations_by_day("2021-01-01", "2021-02-01")
    assert count(tmp_path, "reservations") == 0
    assert count(tmp_path, "stock") == 1


def test_an_outage_of_two_calls_spans_resource_instances(tmp_path):
    inventory(tmp_path).seed_stock([TEN_UNITS])
    faults = FaultInjection(outage_calls=2)
    # Each attempt is a new instance, as each retry of a Dagster step is.
    for call in (1, 2):
        with pytest.raises(SystemUnavailable, match=f"call {call} of the first 2"):
            inventory(tmp_path, faults=faults).reserve([line(1, 1, 4)])
        assert count(tmp_path, "reservations") == 0
    assert [d.status for d in inventory(tmp_path, faults=faults).reserve([line(1, 1, 4)])] == [
        RESERVED
    ]
    assert inventory(tmp_path, faults=faults).release([(1, 1)]) == 1
    # the counter lives beside the database file
    assert (db_path(tmp_path).parent / "inventory.faults").read_text() == "4"


def test_an_unreachable_database_is_a_transient_fault(tmp_path):
    db_path(tmp_path).mkdir(parents=True)  # a directory where the database file should be
    system = inventory(tmp_path)
    with pytest.raises(SystemUnavailable, match="inventory database unavailable"):
        system.reserve([line(1, 1, 1)])
    with pytest.raises(SystemUnavailable, match="inventory database unavailable"):
        system.stock_levels()


# --- concurrency -------------------------------------------------------------------------------


def test_overlapping_concurrent_batches_decide_each_line_once(tmp_path):
    """Two runs reserving overlapping batches at the same time: one decision per line, no lost stock."""
    pairs = [(1, 1), (1, 2), (2, 1)]
    system = inventory(tmp_path)
    system.seed_stock([StockItem(p, s, 12 * 40) for p, s in pairs])  # base 40 each
    rng = random.Random(7)
    requests = [
        line(order, 1, rng.randint(1, 5), "2021-06-15", *pairs[order % 3]) for order in range(1, 91)
    ]
    # Thread A asks for orders 1..60 in order, thread B for 31..90 backwards: 30 shared lines.
    batches = [requests[:60], list(reversed(requests[30:]))]
    answers: list[dict] = [{}, {}]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        try:
            for round_ in range(4):
                barrier.wait(timeout=10)
                # a fresh instance per call, with batches split differently each round
                size = 7 + round_ * 11
                batch = batches[index]
                for begin in range(0, len(batch), size):
                    for answer in inventory(tmp_path).reserve(batch[begin : begin + size]):
                        key = (answer.order_key, answer.line_number)
                        assert answers[index].setdefault(key, answer.status) == answer.status
        except BaseException as error:  # surfaced in the main thread below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)

    shared = answers[0].keys() & answers[1].keys()
    assert len(shared) == 30
    assert all(answers[0][key] == answers[1][key] for key in shared)
    assert rows(tmp_path, "select count(*), count(distinct order_key) from reservations") == [
        (90, 90)
    ]

    reserved = dict.fromkeys(pairs, 0)
    for request in requests:
        key = (request.order_key, request.line_number)
        status = answers[0].get(key) or answers[1][key]
        if status == RESERVED:
            reserved[(request.partkey, request.suppkey)] += request.quantity
    assert sum(1 for s in {**answers[0], **answers[1]}.values() if s == BACKORDERED) > 0
    for partkey, suppkey, base, left in system.stock_levels():
        assert left >= 0
        assert reserved[(partkey, suppkey)] + left == base == 40
    assert system.overcommitted() == []
    assert count(tmp_path, "supplier_restocks") == 0


def _reserve_in_another_process(url: str, batch: list[ReservationRequest], start, out) -> None:
    start.wait(timeout=30)
    out.put([(a.order_key, a.line_number, a.status) for a in SqlInventory(url=url).reserve(batch)])


def test_two_processes_reserving_the_same_lines_agree(tmp_path):
    """Two runs are two processes, each with its own engine: they still decide each line once."""
    system = inventory(tmp_path)
    system.seed_stock([TEN_UNITS])
    batch = [line(order, 1, 3) for order in range(1, 9)]  # 8 × 3 units asked of 10
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [
        context.Process(
            target=_reserve_in_another_process,
            args=(system.url, ordering, start, out),
        )
        for ordering in (batch, list(reversed(batch)))
    ]
    for worker in workers:
        worker.start()
    start.set()
    answers = [sorted(out.get(timeout=60)) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert answers[0] == answers[1]
    assert sum(1 for *_, status in answers[0] if status == RESERVED) == 3
    assert count(tmp_path, "reservations") == 8
    assert system.stock_levels() == [(PART, SUPP, 10, 1)]


def test_key_helpers_agree_on_packed_and_wide_keys():
    """Keys that fit in one int64 and keys too wide for it give the same answers."""
    import pandas as pd

    from simulator.inventory import _duplicated, _positions

    for scale in (1, 1 << 50):
        high = pd.Series([3, 1, 3, 2, 1]) * scale
        low = pd.Series([7, 7, 7, 9, 8])
        assert _duplicated(high, low).tolist() == [False, False, True, False, False]
        known_high, known_low = pd.Series([1, 3, 2]) * scale, pd.Series([7, 7, 9])
        wanted_high, wanted_low = pd.Series([2, 5, 1]) * scale, pd.Series([9, 7, 7])
        assert _positions(known_high, known_low, wanted_high, wanted_low).tolist() == [2, -1, 0]


# --- the rules: whole orders, weekly restock, versions and re-decisions -------------------------

V1, V2 = "0000000000a1", "0000000000b2"


def decide(system: SqlInventory, requests: list[ReservationRequest], **terms) -> list[tuple]:
    """(order, line, status, rules version, revision, history) per request, under `terms`."""
    import pandas as pd

    frame = pd.DataFrame([r.__dict__ for r in requests])
    decided = system.decide_frame(frame, Terms(**terms))
    return [
        (r.order_key, r.line_number, *row)
        for r, row in zip(requests, decided.itertuples(index=False), strict=True)
    ]


def test_whole_orders_reserve_all_their_lines_or_none(tmp_path):
    system = inventory(tmp_path)
    system.seed_stock([TEN_UNITS, StockItem(PART + 1, SUPP, 120)])
    other = {"part": PART + 1}
    decided = decide(
        system,
        [
            line(1, 1, 4),
            line(1, 2, 11, **other),  # more than the 10 there: order 1 takes nothing
            line(2, 1, 10),  # so order 2 gets all 10
            line(3, 1, 1),
            line(3, 2, 1, **other),  # order 3: part 1 is gone, its part-2 line waits too
        ],
        rules_version=V1,
        whole_orders=True,
    )
    assert [(o, n, s) for o, n, s, *_ in decided] == [
        (1, 1, BACKORDERED),
        (1, 2, BACKORDERED),
        (2, 1, RESERVED),
        (3, 1, BACKORDERED),
        (3, 2, BACKORDERED),
    ]
    assert system.stock_levels() == [(PART, SUPP, 10, 0), (PART + 1, SUPP, 10, 10)]
    assert system.reservations_by_day("2021-01-01", "2021-02-01") == {
        "2021-01-15": {RESERVED: (1, 10), BACKORDERED: (4, 17)}
    }


def test_a_weekly_restock_tops_up_every_monday(tmp_path, monkeypatch):
    rules = write_rules(tmp_path / "rules.yaml", stock={"restock": "week"})
    monkeypatch.setenv("ORDERFLOW_RULES", str(rules))
    system = inventory(tmp_path)
    system.seed_stock([TEN_UNITS])
    # Monday 2021-01-11 opens a week, Sunday the 17th is in it, Monday the 18th opens the next.
    decided = system.reserve(
        [line(1, 1, 6, "2021-01-11"), line(2, 1, 6, "2021-01-17"), line(3, 1, 6, "2021-01-18")]
    )
    assert statuses(decided) == [(1, 1, RESERVED), (2, 1, BACKORDERED), (3, 1, RESERVED)]
    assert rows(tmp_path, "select month, quantity from supplier_restocks order by 1") == [
        (20210118, 6)
    ]
    assert rows(tmp_path, "select restocked_month from stock") == [(20210118,)]
    # Back to monthly: February's first line tops up again (periods compare by their first day).
    monkeypatch.setenv("ORDERFLOW_RULES", str(write_rules(tmp_path / "monthly.yaml")))
    assert statuses(system.reserve([line(4, 1, 2, "2021-01-25"), line(5, 1, 10, "2021-02-01")]))[
        1:
    ] == [(5, 1, RESERVED)]
    assert rows(tmp_path, "select month, quantity from supplier_restocks order by 1") == [
        (202102, 8),
        (20210118, 6),
    ]


def test_each_decision_keeps_its_rules_version_and_a_repeat_keeps_the_decision(stocked):
    assert decide(stocked, [line(1, 1, 6)], rules_version=V1) == [(1, 1, RESERVED, V1, 0, None)]
    # Asked again under other rules, without re-deciding: the first decision and its version.
    assert decide(stocked, [line(1, 1, 6), line(2, 1, 6)], rules_version=V2) == [
        (1, 1, RESERVED, V1, 0, None),
        (2, 1, BACKORDERED, V2, 0, None),
    ]


def test_a_re_decision_gives_the_stock_back_decides_again_and_counts_a_revision(tmp_path, stocked):
    first, second = line(1, 1, 6), line(2, 1, 6)
    decide(stocked, [first, second], rules_version=V1)
    # Under V2 the same lines are asked in another order (order 2 first): they change places.
    expected = [
        (2, 1, RESERVED, V2, 1, BACKORDERED),
        (1, 1, BACKORDERED, V2, 1, RESERVED),
    ]
    assert decide(stocked, [second, first], rules_version=V2, redecide=True) == expected
    assert stocked.stock_levels() == [(PART, SUPP, 10, 4)]
    assert stocked.reservations_by_day("2021-01-01", "2021-02-01") == {
        "2021-01-15": {RESERVED: (1, 6), BACKORDERED: (1, 6)}
    }
    assert stocked.recount_reservations_by_day(
        "2021-01-01", "2021-02-01"
    ) == stocked.reservations_by_day("2021-01-01", "2021-02-01")
    # Once per version: asked again (a retry, a rerun), nothing moves.
    before = snapshot(tmp_path, stocked)
    assert decide(stocked, [second, first], rules_version=V2, redecide=True) == expected
    assert snapshot(tmp_path, stocked) == before
    # Re-decided under V1 again, in V1's order: back as they were, a revision further.
    assert decide(stocked, [first, second], rules_version=V1, redecide=True) == [
        (1, 1, RESERVED, V1, 2, "reserved,backordered"),
        (2, 1, BACKORDERED, V1, 2, "backordered,reserved"),
    ]


def test_a_re_decision_that_changes_nothing_keeps_the_revision(tmp_path, stocked):
    decide(stocked, [line(1, 1, 6), line(2, 1, 1)], rules_version=V1)
    assert decide(stocked, [line(1, 1, 6), line(2, 1, 1)], rules_version=V2, redecide=True) == [
        (1, 1, RESERVED, V2, 0, None),
        (2, 1, RESERVED, V2, 0, None),
    ]
    assert stocked.stock_levels() == [(PART, SUPP, 10, 3)]


def test_an_order_whose_shipment_was_refused_is_not_re_decided(stocked):
    decide(stocked, [line(1, 1, 6), line(2, 1, 6)], rules_version=V1)
    stocked.release([(1, 1)])  # the carrier refused order 1; it was compensated
    assert decide(stocked, [line(2, 1, 6), line(1, 1, 6)], rules_version=V2, redecide=True) == [
        (2, 1, RESERVED, V2, 1, BACKORDERED),
        (1, 1, RESERVED, V1, 0, None),
    ]
    assert stocked.stock_levels() == [(PART, SUPP, 10, 4)]
