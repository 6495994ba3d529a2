"""The accounting system's ledger: double-entry journal entries and their lines, in cents, in SQL.

Local default: a SQLite database in the data dir; production: the same SQL on a PostgreSQL URL.
Every entry has an idempotency key derived from the business fact (e.g. `invoice:<order key>`):
posting it again is a no-op, so re-runs and overlapping runs post each entry exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from foundation.failures import SystemRefused
from foundation.sqldb.bulk import add_to_totals, fetch_all, insert_many, load_temp_table, summed
from foundation.sqldb.connections import check_inserted, read_connection, write_known_by_day
from foundation.sqldb.schema import Upgrade, engine_with_schema
from simulator.outages import Faults, fault_state_file, inject

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

SYSTEM = "accounting"
ACCOUNTS = ("receivable", "revenue", "tax_payable", "cost_of_goods", "inventory")
LINE_COLUMNS = (
    "entry_key",
    "line_number",
    "order_key",
    "entry_day",
    "kind",
    "account",
    "debit_cents",
    "credit_cents",
)

SCHEMA = (
    """create table if not exists journal_entries (
        entry_key varchar(64) not null, entry_day varchar(10) not null,
        kind varchar(32) not null, order_key bigint not null,
        primary key (entry_key)){without_rowid}""",
    # Clustered by day (what reconciliation and the bulk lookups read). The key needs no index
    # of its own: lines are written only with their entry, in the transaction that inserts the
    # entry's key, so journal_entries' key keeps them unique.
    """create table if not exists journal_lines (
        entry_key varchar(64) not null, line_number integer not null,
        entry_day varchar(10) not null, account varchar(32) not null,
        debit_cents bigint not null, credit_cents bigint not null,
        primary key (entry_day, entry_key, line_number)){without_rowid}""",
    # The trial balance per day: each posting adds its lines here in the same transaction, so
    # the ledger step's check reads 5 rows per day instead of millions of lines (the
    # reconciliation recounts the lines themselves).
    """create table if not exists journal_day_totals (
        entry_day varchar(10) not null, account varchar(32) not null,
        debit_cents bigint not null, credit_cents bigint not null,
        primary key (entry_day, account)){without_rowid}""",
)
SCHEMA_VERSION = 3
UPGRADES = (
    # Version 1 kept both tables in row order, with an index on the lines' day.
    Upgrade(
        version=2,
        tables=("journal_entries", "journal_lines"),
        indexes=("journal_lines_by_day",),
        copy=(
            "insert into journal_entries select entry_key, entry_day, kind, order_key"
            " from journal_entries_old",
            "insert into journal_lines select entry_key, line_number, entry_day, account,"
            " debit_cents, credit_cents from journal_lines_old",
        ),
    ),
    # Version 2 kept no trial balance: it is summed from the lines once.
    Upgrade(
        version=3,
        tables=(),
        indexes=(),
        copy=(
            "insert into journal_day_totals select entry_day, account, sum(debit_cents),"
            " sum(credit_cents) from journal_lines group by entry_day, account",
        ),
    ),
)


class Ledger:
    """The ledger's side: checks and stores journal entries in SQL (SQLite file by default)."""

    def __init__(self, url: str, faults: Faults | None = None):
        self.url = url
        self.faults = faults or Faults()

    def _inject(self) -> Faults:
        return inject(SYSTEM, self.faults, fault_state_file(self.url, SYSTEM))

    def _engine(self) -> sa.Engine:
        return engine_with_schema(self.url, SCHEMA, SYSTEM, SCHEMA_VERSION, UPGRADES)

    def post_frame(self, lines: pd.DataFrame) -> int:
        """Post entries not posted before; return how many were new.

        One row per journal line (LINE_COLUMNS), an entry's together. Entries are checked whole
        (balanced, known accounts) before anything is written.
        """
        faults = self._inject()
        lines = lines.loc[:, list(LINE_COLUMNS)].reset_index(drop=True)
        if not len(lines):
            return 0
        _validate(lines, set(faults.reject_keys))
        return write_known_by_day(
            self._engine(), SYSTEM, "journal_entries", lambda conn, exact: _post(conn, lines, exact)
        )

    def day_totals(self, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(day, account) → (debit cents, credit cents) over [start, end): the trial balance kept."""
        return self._totals(
            "select entry_day, account, debit_cents, credit_cents "
            "from journal_day_totals where entry_day >= ? and entry_day < ?",
            start,
            end,
        )

    def recount_day_totals(self, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        """`day_totals` summed afresh from the journal lines: an audit, for reconciliation."""
        # Reads every line of the window: a line changed behind the ledger's back shows here.
        return self._totals(
            "select entry_day, account, sum(debit_cents), sum(credit_cents) "
            "from journal_lines where entry_day >= ? and entry_day < ? "
            "group by entry_day, account",
            start,
            end,
        )

    def _totals(self, sql: str, start: str, end: str) -> dict[tuple[str, str], tuple[int, int]]:
        self._inject()
        with read_connection(self._engine(), SYSTEM) as conn:
            rows = fetch_all(conn, sql, (start, end))
        return {(day, account): (int(dr), int(cr)) for day, account, dr, cr in rows}


def _validate(lines: pd.DataFrame, refused: set[str]) -> None:
    """Refuse the whole batch if any entry is rejected, unbalanced or names an unknown account."""
    import numpy as np
    import pandas as pd

    keys = lines["entry_key"]
    if refused:
        rejected = keys[keys.isin(list(refused))]
        if len(rejected):
            raise SystemRefused(f"accounting refused entry {rejected.iloc[0]} (injected rejection)")
    codes, uniques = pd.factorize(keys)
    debits = np.bincount(codes, weights=lines["debit_cents"].to_numpy(np.float64))
    credits = np.bincount(codes, weights=lines["credit_cents"].to_numpy(np.float64))
    # Float sums are exact below 2**53 cents; a mismatch is confirmed in integers below.
    suspects = np.flatnonzero(debits != credits)
    for code in suspects.tolist():
        entry = lines[codes == code]
        debit, credit = int(entry["debit_cents"].sum()), int(entry["credit_cents"].sum())
        if debit != credit:
            raise SystemRefused(
                f"accounting refused entry {uniques[code]}: debits {debit} != credits {credit}"
            )
    unknown = ~lines["account"].isin(list(ACCOUNTS))
    if unknown.any():
        first = lines[unknown]
        accounts = set(first.loc[first["entry_key"] == first["entry_key"].iloc[0], "account"])
        raise SystemRefused(
            f"accounting refused entry {first['entry_key'].iloc[0]}: accounts {accounts}"
        )


def _post(conn: sa.Connection, lines: pd.DataFrame, exact: bool) -> int:
    """Store the entries whose keys are new (the first posting of a key wins)."""
    import numpy as np
    import pandas as pd

    entries = lines.drop_duplicates("entry_key")
    keys = entries["entry_key"]
    if exact:
        load_temp_table(conn, "entry_keys", "entry_key varchar(64)", zip(keys.tolist()))
        posted = fetch_all(
            conn,
            "select j.entry_key from journal_entries j join entry_keys k on k.entry_key = j.entry_key",
        )
        conn.exec_driver_sql("drop table entry_keys")
    else:
        # Entries are posted on their day, so the days' keys hold every repeat; a key posted on
        # another day makes the insert come up short, and the batch is redone exactly.
        posted = fetch_all(
            conn,
            "select distinct entry_key from journal_lines where entry_day >= ? and entry_day <= ?",
            (str(lines["entry_day"].min()), str(lines["entry_day"].max())),
        )
    known = {row[0] for row in posted}
    new = entries[~keys.isin(known)] if known else entries
    # In key order, each insert lands beside the previous one in the key's B-tree
    # (bench/RESULTS.md, issue #3).
    new_keys = new["entry_key"].tolist()
    new = new.iloc[sorted(range(len(new_keys)), key=new_keys.__getitem__)]
    inserted = insert_many(
        conn,
        "journal_entries",
        ("entry_key", "entry_day", "kind", "order_key"),
        zip(
            new["entry_key"].tolist(),
            new["entry_day"].astype(str).tolist(),
            new["kind"].tolist(),
            new["order_key"].astype("int64").tolist(),
            strict=True,
        ),
        "on conflict do nothing",
    )
    check_inserted(SYSTEM, "entries", inserted, len(new), exact)
    all_keys = lines["entry_key"]
    numbers = lines["line_number"]
    # An entry's lines are together and numbered upwards: a new key or a restart opens a block.
    starts = all_keys.ne(all_keys.shift()) | numbers.le(numbers.shift())
    blocks = np.cumsum(starts.to_numpy())
    if blocks[-1] != len(entries):
        # A key repeated in the batch: only the lines of its first occurrence count.
        by_key = pd.Series(blocks).groupby(pd.factorize(all_keys)[0])
        lines = lines[blocks == by_key.transform("min").to_numpy()]
    new_lines = (
        lines if len(new) == len(entries) else lines[lines["entry_key"].isin(new["entry_key"])]
    )
    insert_many(
        conn,
        "journal_lines",
        ("entry_key", "line_number", "entry_day", "account", "debit_cents", "credit_cents"),
        zip(
            new_lines["entry_key"].tolist(),
            new_lines["line_number"].astype("int64").tolist(),
            new_lines["entry_day"].astype(str).tolist(),
            new_lines["account"].tolist(),
            new_lines["debit_cents"].astype("int64").tolist(),
            new_lines["credit_cents"].astype("int64").tolist(),
            strict=True,
        ),
    )
    add_to_totals(
        conn,
        "journal_day_totals",
        ("entry_day", "account"),
        ("debit_cents", "credit_cents"),
        summed(new_lines, ("entry_day", "account"), ("debit_cents", "credit_cents")),
    )
    return len(new)
