"""The accounting system: the ledger's interface the assets call, and the adapter of the local ledger.

The ledger itself, with its rules and idempotency keys, is simulator/accounting.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from foundation.settings import system_url
from resources.faults import FaultInjection
from simulator.accounting import LINE_COLUMNS, Ledger

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd


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

    def post(self, entries: Sequence[JournalEntry]) -> int:
        """Post entries not posted before; return how many were new."""
        return self.post_frame(entries_to_frame(entries))

    @abstractmethod
    def post_frame(self, lines: pd.DataFrame) -> int:
        """The bulk form of `post`: one row per journal line (LINE_COLUMNS), an entry's together.

        Entries are checked whole (balanced, known accounts) before anything is written.
        """

    @abstractmethod
    def day_totals(self, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(day, account) → (debit cents, credit cents) over [start, end): the trial balance kept."""

    @abstractmethod
    def recount_day_totals(self, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        """`day_totals` summed afresh from the journal lines: an audit, for reconciliation."""


class SqlAccounting(AccountingResource):
    """The ledger in a SQL database: a SQLite file by default, PostgreSQL by URL."""

    url: str = ""
    """SQLAlchemy URL; empty: $ORDERFLOW_ACCOUNTING_URL, else systems/accounting.sqlite."""
    faults: FaultInjection = FaultInjection()

    def _ledger(self) -> Ledger:
        url = system_url(self.url, "ORDERFLOW_ACCOUNTING_URL", "accounting.sqlite")
        return Ledger(url, self.faults)

    def post_frame(self, lines: pd.DataFrame) -> int:
        """Post entries not posted before; return how many were new (see AccountingResource)."""
        return self._ledger().post_frame(lines)

    def day_totals(self, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(day, account) → (debit cents, credit cents) over [start, end): the trial balance kept."""
        return self._ledger().day_totals(start, end)

    def recount_day_totals(self, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        """`day_totals` summed afresh from the journal lines: an audit, for reconciliation."""
        return self._ledger().recount_day_totals(start, end)


def entries_to_frame(entries: Sequence[JournalEntry]) -> pd.DataFrame:
    """Journal entries as journal lines (LINE_COLUMNS), numbered from 1 within each entry."""
    import pandas as pd

    return pd.DataFrame.from_records(
        [
            (e.key, number, e.order_key, e.day, e.kind, x.account, x.debit_cents, x.credit_cents)
            for e in entries
            for number, x in enumerate(e.lines, start=1)
        ],
        columns=list(LINE_COLUMNS),
    )
