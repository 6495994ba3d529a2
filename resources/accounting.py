"""The accounting system: a double-entry ledger of journal entries and their lines, in cents.

Local default: a SQLite database in the data dir; production: the same SQL on a PostgreSQL URL.
Every entry has an idempotency key derived from the business fact (e.g. `invoice:<order key>`):
posting it again is a no-op, so re-runs and overlapping runs post each entry exactly once.
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

SYSTEM = "accounting"
ACCOUNTS = ("receivable", "revenue", "tax_payable", "cost_of_goods", "inventory")

SCHEMA = (
    """create table if not exists journal_entries (
        entry_key varchar(64) primary key, entry_day varchar(10) not null,
        kind varchar(32) not null, order_key bigint not null)""",
    """create table if not exists journal_lines (
        entry_key varchar(64) not null, line_number integer not null,
        entry_day varchar(10) not null, account varchar(32) not null,
        debit_cents bigint not null, credit_cents bigint not null,
        primary key (entry_key, line_number))""",
    "create index if not exists journal_lines_by_day on journal_lines (entry_day)",
)


@dataclass(frozen=True)
class JournalLine:
    """One side of an entry: an amount in cents debited or credited to an account."""

    account: str
    debit_cents: int
    credit_cents: int


@dataclass(frozen=True)
class JournalEntry:
    """A balanced journal entry; `key` is its idempotency key."""

    key: str
    day: str
    kind: str
    order_key: int
    lines: tuple[JournalLine, ...]


class AccountingResource(dg.ConfigurableResource, ABC):
    """The ledger; posting is batched and idempotent."""

    @abstractmethod
    def post(self, entries: Sequence[JournalEntry]) -> int:
        """Post entries not posted before; return how many were new."""

    @abstractmethod
    def day_totals(self, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(day, account) → (debit cents, credit cents) over [start, end), for reconciliation."""


class SqlAccounting(AccountingResource):
    """The ledger in a SQL database: a SQLite file by default, PostgreSQL by URL."""

    url: str = ""
    """SQLAlchemy URL; empty: $ORDERFLOW_ACCOUNTING_URL, else systems/accounting.sqlite."""

    def _url(self) -> str:
        return system_url(self.url, "ORDERFLOW_ACCOUNTING_URL", "accounting.sqlite")

    faults: FaultInjection = FaultInjection()

    def _engine(self) -> sa.Engine:
        engine = engine_for(self._url())
        create_schema(engine, SCHEMA, SYSTEM)
        return engine

    def post(self, entries: Sequence[JournalEntry]) -> int:
        """Post entries not posted before; return how many were new."""
        inject(SYSTEM, self.faults, fault_state_file(self._url(), SYSTEM))
        refused = set(self.faults.reject_keys)
        for entry in entries:
            if entry.key in refused:
                raise SystemRefused(f"accounting refused entry {entry.key} (injected rejection)")
            debits = sum(line.debit_cents for line in entry.lines)
            credits = sum(line.credit_cents for line in entry.lines)
            if debits != credits:
                raise SystemRefused(
                    f"accounting refused entry {entry.key}: debits {debits} != credits {credits}"
                )
            unknown = {line.account for line in entry.lines} - set(ACCOUNTS)
            if unknown:
                raise SystemRefused(f"accounting refused entry {entry.key}: accounts {unknown}")
        engine = self._engine()
        with write_transaction(engine, SYSTEM, "journal_entries") as conn:
            conn.exec_driver_sql(
                "create temporary table if not exists entry_keys (entry_key varchar(64))"
            )
            conn.exec_driver_sql("delete from entry_keys")
            if entries:
                execute_many(conn, "insert into entry_keys values (?)", [(e.key,) for e in entries])
            posted = {
                row[0]
                for row in fetch_all(
                    conn,
                    "select j.entry_key from journal_entries j "
                    "join entry_keys k on k.entry_key = j.entry_key",
                )
            }
            conn.exec_driver_sql("drop table entry_keys")
            new = []
            for entry in entries:
                if entry.key not in posted:
                    posted.add(entry.key)
                    new.append(entry)
            execute_many(
                conn,
                "insert into journal_entries (entry_key, entry_day, kind, order_key) "
                "values (?, ?, ?, ?)",
                [(e.key, e.day, e.kind, e.order_key) for e in new],
            )
            execute_many(
                conn,
                "insert into journal_lines (entry_key, line_number, entry_day, account,"
                " debit_cents, credit_cents) values (?, ?, ?, ?, ?, ?)",
                [
                    (e.key, number, e.day, line.account, line.debit_cents, line.credit_cents)
                    for e in new
                    for number, line in enumerate(e.lines, start=1)
                ],
            )
            return len(new)

    def day_totals(self, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(day, account) → (debit cents, credit cents) over [start, end), for reconciliation."""
        inject(SYSTEM, self.faults, fault_state_file(self._url(), SYSTEM))
        with read_connection(self._engine(), SYSTEM) as conn:
            rows = conn.execute(
                sa.text(
                    "select entry_day, account, sum(debit_cents), sum(credit_cents) "
                    "from journal_lines where entry_day >= :a and entry_day < :b "
                    "group by entry_day, account"
                ),
                {"a": start, "b": end},
            ).fetchall()
        return {(day, account): (int(dr), int(cr)) for day, account, dr, cr in rows}
