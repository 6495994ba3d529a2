"""The SQLite ledger: each entry posted exactly once, only balanced entries, daily totals that balance."""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from contextlib import closing
from pathlib import Path

import pytest

from foundation.sqldb.connections import sqlite_url
from resources.accounting import JournalEntry, JournalLine, SqlAccounting
from resources.faults import FaultInjection, SystemRefused, SystemUnavailable


def db_path(tmp_path: Path) -> Path:
    return tmp_path / "systems" / "accounting.sqlite"


def ledger(tmp_path: Path, **config) -> SqlAccounting:
    return SqlAccounting(url=sqlite_url(db_path(tmp_path)), **config)


def invoice(order_key: int, day: str, net_cents: int, tax_cents: int) -> JournalEntry:
    """A customer invoice: receivable debited, revenue and tax payable credited."""
    return JournalEntry(
        key=f"invoice:{order_key}",
        day=day,
        kind="invoice",
        order_key=order_key,
        lines=(
            JournalLine("receivable", net_cents + tax_cents, 0),
            JournalLine("revenue", 0, net_cents),
            JournalLine("tax_payable", 0, tax_cents),
        ),
    )


def cost(order_key: int, day: str, cents: int) -> JournalEntry:
    """The cost of the goods shipped, out of inventory."""
    return JournalEntry(
        key=f"cogs:{order_key}",
        day=day,
        kind="cogs",
        order_key=order_key,
        lines=(JournalLine("cost_of_goods", cents, 0), JournalLine("inventory", 0, cents)),
    )


def rows(tmp_path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db_path(tmp_path))) as con:
        return con.execute(sql).fetchall()


def counts(tmp_path: Path) -> tuple[int, int]:
    """(entries, lines) in the ledger."""
    if not db_path(tmp_path).exists():
        return (0, 0)
    return (
        rows(tmp_path, "select count(*) from journal_entries")[0][0],
        rows(tmp_path, "select count(*) from journal_lines")[0][0],
    )


def test_posting_the_same_entries_three_times_posts_each_once(tmp_path):
    entries = [invoice(1, "2021-03-01", 10_000, 800), cost(1, "2021-03-01", 6_500)]
    assert ledger(tmp_path).post(entries) == 2
    # a re-run, a retry (a new instance) and a batch that overlaps: nothing posted twice
    assert ledger(tmp_path).post(entries) == 0
    assert ledger(tmp_path).post([*entries, invoice(2, "2021-03-02", 500, 40)]) == 1
    assert counts(tmp_path) == (3, 8)
    assert rows(
        tmp_path, "select entry_key, count(*) from journal_lines group by 1 order by 1"
    ) == [
        ("cogs:1", 2),
        ("invoice:1", 3),
        ("invoice:2", 3),
    ]


def test_the_first_posting_of_a_key_wins(tmp_path):
    system = ledger(tmp_path)
    assert system.post([invoice(1, "2021-03-01", 100, 8), invoice(1, "2021-03-01", 999, 80)]) == 1
    assert system.post([invoice(1, "2021-03-09", 5, 1)]) == 0
    assert system.day_totals("2021-03-01", "2021-04-01") == {
        ("2021-03-01", "receivable"): (108, 0),
        ("2021-03-01", "revenue"): (0, 100),
        ("2021-03-01", "tax_payable"): (0, 8),
    }


def test_an_unbalanced_entry_refuses_the_whole_batch(tmp_path):
    system = ledger(tmp_path)
    unbalanced = JournalEntry(
        "invoice:2",
        "2021-03-01",
        "invoice",
        2,
        (JournalLine("receivable", 1_001, 0), JournalLine("revenue", 0, 1_000)),
    )
    batch = [invoice(1, "2021-03-01", 100, 8), unbalanced, invoice(3, "2021-03-01", 50, 4)]
    with pytest.raises(SystemRefused, match=r"invoice:2: debits 1001 != credits 1000"):
        system.post(batch)
    assert counts(tmp_path) == (0, 0)
    # the balanced entries go through once the bad one is fixed
    assert system.post([batch[0], invoice(2, "2021-03-01", 1_000, 1), batch[2]]) == 3


def test_an_unknown_account_is_refused(tmp_path):
    system = ledger(tmp_path)
    system.post([invoice(1, "2021-03-01", 100, 8)])
    petty = JournalEntry(
        "petty:1",
        "2021-03-02",
        "petty",
        1,
        (JournalLine("cash", 5, 0), JournalLine("revenue", 0, 5)),
    )
    with pytest.raises(SystemRefused, match=r"petty:1.*cash"):
        system.post([invoice(2, "2021-03-02", 100, 8), petty])
    assert counts(tmp_path) == (1, 3)


def test_day_totals_sum_per_day_and_account_and_balance(tmp_path):
    system = ledger(tmp_path)
    system.post(
        [
            invoice(1, "2021-03-01", 10_000, 800),
            invoice(2, "2021-03-01", 2_550, 204),
            cost(1, "2021-03-01", 6_000),
            invoice(3, "2021-03-02", 99, 7),
            invoice(4, "2021-03-03", 1, 0),
        ]
    )
    totals = system.day_totals("2021-03-01", "2021-03-03")  # the end day is excluded
    assert totals == {
        ("2021-03-01", "receivable"): (13_554, 0),
        ("2021-03-01", "revenue"): (0, 12_550),
        ("2021-03-01", "tax_payable"): (0, 1_004),
        ("2021-03-01", "cost_of_goods"): (6_000, 0),
        ("2021-03-01", "inventory"): (0, 6_000),
        ("2021-03-02", "receivable"): (106, 0),
        ("2021-03-02", "revenue"): (0, 99),
        ("2021-03-02", "tax_payable"): (0, 7),
    }
    per_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (day, _account), (debit, credit) in totals.items():
        per_day[day][0] += debit
        per_day[day][1] += credit
    assert all(debit == credit for debit, credit in per_day.values())
    assert system.day_totals("2021-04-01", "2021-05-01") == {}


def test_overlapping_concurrent_postings_post_each_entry_once(tmp_path):
    entries = [invoice(order, "2021-03-01", 1_000 + order, order % 50) for order in range(120)]
    batches = [entries[:80], list(reversed(entries[40:]))]  # 40 shared entries
    ledger(tmp_path).post([])  # create the schema before the race
    posted = [0, 0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(index: int) -> None:
        try:
            for round_ in range(3):
                barrier.wait(timeout=10)
                size = 5 + 9 * round_
                batch = batches[index]
                for begin in range(0, len(batch), size):
                    posted[index] += ledger(tmp_path).post(batch[begin : begin + size])
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sum(posted) == len(entries)
    assert counts(tmp_path) == (120, 360)
    assert rows(tmp_path, "select count(distinct entry_key) from journal_lines") == [(120,)]
    kept = ledger(tmp_path).day_totals("2021-03-01", "2021-03-02")
    assert kept == ledger(tmp_path).recount_day_totals("2021-03-01", "2021-03-02")
    totals = kept.values()
    assert (
        sum(d for d, _ in totals)
        == sum(c for _, c in totals)
        == sum(1_000 + o + o % 50 for o in range(120))
    )


def test_a_ledger_that_is_down_is_unavailable(tmp_path):
    down = ledger(tmp_path, faults=FaultInjection(down=True))
    with pytest.raises(SystemUnavailable, match="accounting is down"):
        down.post([invoice(1, "2021-03-01", 100, 8)])
    with pytest.raises(SystemUnavailable):
        down.day_totals("2021-03-01", "2021-03-02")
    assert counts(tmp_path) == (0, 0)


def test_an_outage_of_two_calls_spans_resource_instances(tmp_path):
    faults = FaultInjection(outage_calls=2)
    entry = invoice(1, "2021-03-01", 100, 8)
    for call in (1, 2):
        with pytest.raises(SystemUnavailable, match=f"call {call} of the first 2"):
            ledger(tmp_path, faults=faults).post([entry])
        assert counts(tmp_path) == (0, 0)
    assert ledger(tmp_path, faults=faults).post([entry]) == 1
    assert ledger(tmp_path, faults=faults).post([entry]) == 0
    assert (db_path(tmp_path).parent / "accounting.faults").read_text() == "4"


def test_a_rejected_key_refuses_the_batch(tmp_path):
    rejecting = ledger(tmp_path, faults=FaultInjection(reject_keys=["invoice:2"]))
    with pytest.raises(SystemRefused, match="invoice:2"):
        rejecting.post([invoice(1, "2021-03-01", 100, 8), invoice(2, "2021-03-01", 100, 8)])
    assert counts(tmp_path) == (0, 0)
    assert rejecting.post([invoice(1, "2021-03-01", 100, 8)]) == 1


def test_an_unreachable_database_is_a_transient_fault(tmp_path):
    db_path(tmp_path).mkdir(parents=True)  # a directory where the database file should be
    with pytest.raises(SystemUnavailable, match="accounting database unavailable"):
        ledger(tmp_path).post([invoice(1, "2021-03-01", 100, 8)])
    with pytest.raises(SystemUnavailable, match="accounting database unavailable"):
        ledger(tmp_path).day_totals("2021-03-01", "2021-03-02")
