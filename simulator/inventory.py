"""The inventory's stockroom: stock per (part, supplier) and the reservations made against it.

Local default: a SQLite database in the data dir; production: the same SQL on a PostgreSQL URL.

Stock rules (rules.yaml's `stock` section, read at every call; README, "Business rules"):
- **Seeding**: a (part, supplier) starts with a base level of `ps_availqty // base_level_divisor`
  units (12 puts a few percent of lines on back-order); a pair once stocked keeps its level.
- **Restock**: at the start of every month (or week, from Monday) the supplier tops the stock back
  up to its base level. The top-up is applied when the period's first reservation for that (part,
  supplier) is decided; `supplier_restocks` records each supplier's delivery per period (pairs
  topped up, units; `month` is yyyymm, or yyyymmdd of a week's Monday).
- **Reservation**: first come, first served in the order requested; a line is reserved when the
  available stock covers its whole quantity, else back-ordered (no partial reservations). Asked
  to decide whole orders, an order's lines are all reserved, or all back-ordered.
- **Release**: a released reservation (a refused shipment) returns its quantity to the stock.
Every reservation is keyed by (order key, line number): asking again returns the first decision,
with the rules version it was made under. Asked to re-decide under another version, the inventory
gives the lines' reserved units back and decides them again in the order asked; an order whose
decisions change gets its next revision (and each line its earlier statuses), once per version.
An order with a released line (its shipment was refused and compensated) is closed: kept as it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from foundation.failures import SystemRefused
from foundation.rules import StockRules, load_rules
from foundation.sqldb.bulk import (
    add_to_totals,
    execute_many,
    fetch_all,
    insert_many,
    load_temp_table,
    update_many,
)
from foundation.sqldb.connections import (
    StoredElsewhere,
    check_inserted,
    read_connection,
    write_known_by_day,
    write_transaction,
)
from foundation.sqldb.schema import Upgrade, engine_with_schema
from simulator.outages import Faults, fault_state_file, inject

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

SYSTEM = "inventory"
# Stock pairs per batch read: SF 10 has 8 M, gigabytes as Python tuples at once.
STOCK_BATCH_ROWS = 200_000
RESERVED, BACKORDERED, RELEASED = "reserved", "backordered", "released"
REQUEST_COLUMNS = ("order_key", "line_number", "order_day", "partkey", "suppkey", "quantity")
# Per line decided: the status, the rules version it was decided under (None: before versions were
# kept), its order's revision (0 until a re-decision changes the order) and its earlier statuses.
DECISION_COLUMNS = ("status", "rules_version", "revision", "history")

# Tables are clustered on their keys; reservations by day (what the bulk lookups read).
# `reservation_orders` pins each order to one day, the day all its lines are kept under, so the
# (order key, line number) idempotency key is unique over all days without an index of 6 M
# random entries: one row per order instead.
SCHEMA = (
    """create table if not exists stock (
        partkey bigint not null, suppkey bigint not null,
        base_level integer not null, available integer not null,
        restocked_month integer not null, primary key (partkey, suppkey)){without_rowid}""",
    """create table if not exists reservation_orders (
        order_key bigint not null, order_day varchar(10) not null,
        primary key (order_key)){without_rowid}""",
    # rules_version: the 12 hex digits of foundation/rules.py as a number (6 bytes, not 12).
    """create table if not exists reservations (
        order_key bigint not null, line_number integer not null, order_day varchar(10) not null,
        partkey bigint not null, suppkey bigint not null, quantity integer not null,
        status varchar(12) not null, rules_version bigint, revision integer not null default 0,
        history varchar(200),
        primary key (order_day, order_key, line_number)){without_rowid}""",
    # A supplier's monthly delivery: how many of its (part, supplier) pairs it topped up, and
    # the units. Each pair's top-up is applied once (stock.restocked_month), so these add up.
    """create table if not exists supplier_restocks (
        suppkey bigint not null, month integer not null, pairs integer not null,
        quantity bigint not null, primary key (suppkey, month)){without_rowid}""",
    # Lines and units per order day and status, kept with every reservation and release in the
    # same transaction: what the allocations' check reads, a few rows per day instead of
    # millions (the reconciliation recounts the reservations themselves).
    """create table if not exists reservation_day_totals (
        order_day varchar(10) not null, status varchar(12) not null, lines bigint not null,
        quantity bigint not null, primary key (order_day, status)){without_rowid}""",
)
SCHEMA_VERSION = 4
UPGRADES = (
    # Version 1 kept row tables with key indexes, and a restock row per (part, supplier, month).
    Upgrade(
        version=2,
        tables=("stock", "reservations", "restocks"),
        indexes=("reservations_by_day",),
        copy=(
            "insert into stock select partkey, suppkey, base_level, available, restocked_month"
            " from stock_old",
            # An order's lines go under its first day (version 1 did not pin orders to a day).
            "insert into reservation_orders select order_key, min(order_day)"
            " from reservations_old group by order_key",
            "insert into reservations (order_key, line_number, order_day, partkey, suppkey,"
            " quantity, status) select r.order_key, r.line_number, o.order_day, r.partkey,"
            " r.suppkey, r.quantity, r.status from reservations_old r"
            " join reservation_orders o on o.order_key = r.order_key",
            "insert into supplier_restocks select suppkey, month, count(*), sum(quantity)"
            " from restocks_old group by suppkey, month",
        ),
    ),
    # Version 2 kept no day totals: they are counted from the reservations once.
    Upgrade(
        version=3,
        tables=(),
        indexes=(),
        copy=(
            "insert into reservation_day_totals select order_day, status, count(*), sum(quantity)"
            " from reservations group by order_day, status",
        ),
    ),
    # Version 3 kept no rules version, revision or history: decisions made before stay as they are.
    Upgrade(
        version=4,
        tables=(),
        indexes=(),
        copy=(),
        columns=(
            ("reservations", "rules_version", "bigint"),
            ("reservations", "revision", "integer not null default 0"),
            ("reservations", "history", "varchar(200)"),
        ),
    ),
)
DAY_TOTALS = ("reservation_day_totals", ("order_day", "status"), ("lines", "quantity"))


@dataclass(frozen=True)
class StockItem:
    """A (part, supplier) the store sells and the supplier's available quantity (ps_availqty)."""

    partkey: int
    suppkey: int
    availqty: int


@dataclass(frozen=True)
class Terms:
    """How a call decides: under which rules version, whole orders or lines, and re-deciding or not.

    `redecide`: lines decided under another rules version are decided again (else every line
    decided before keeps its decision).
    """

    rules_version: str | None = None
    whole_orders: bool = False
    redecide: bool = False


class Stockroom:
    """The inventory's side: keeps stock and decides reservations in SQL (SQLite file by default).

    Its stock rules are `stock`, else rules.yaml's `stock` section as it is at each call.
    """

    def __init__(self, url: str, faults: Faults | None = None, stock: StockRules | None = None):
        self.url = url
        self.faults = faults or Faults()
        self.stock = stock

    def _stock_rules(self) -> StockRules:
        return self.stock or load_rules().stock

    def _engine(self) -> sa.Engine:
        return engine_with_schema(self.url, SCHEMA, SYSTEM, SCHEMA_VERSION, UPGRADES)

    def _inject(self) -> Faults:
        return inject(SYSTEM, self.faults, fault_state_file(self.url, SYSTEM))

    def seed_stock(self, items: Sequence[StockItem]) -> int:
        """Create stock for (part, supplier) pairs not yet known; return how many were new."""
        self._inject()
        engine = self._engine()
        divisor = self._stock_rules().base_level_divisor
        levels = [(i.partkey, i.suppkey, max(1, i.availqty // divisor)) for i in items]
        with write_transaction(engine, SYSTEM, "stock") as conn:
            return insert_many(
                conn,
                "stock",
                ("partkey", "suppkey", "base_level", "available", "restocked_month"),
                ((part, supp, level, level, 0) for part, supp, level in levels),
                "on conflict do nothing",
            )

    def reserve_frame(self, lines: pd.DataFrame) -> np.ndarray:
        """Decide each row in the frame's order (first come, first served); repeats keep their decision."""
        return self.decide_frame(lines)["status"].to_numpy(dtype=object)

    def decide_frame(self, lines: pd.DataFrame, terms: Terms | None = None) -> pd.DataFrame:
        """Decide each row in the frame's order under `terms`: DECISION_COLUMNS per row.

        Repeats keep their decision (all of them, or those made under the terms' rules version
        when it re-decides).
        """
        import pandas as pd

        refused = set(self._inject().reject_keys)
        frame = _request_frame(lines)
        if refused:
            for order, number in zip(
                frame["order_key"].tolist(), frame["line_number"].tolist(), strict=True
            ):
                if f"{order}:{number}" in refused:
                    raise SystemRefused(
                        f"inventory refused reservation {order}:{number} "
                        "(injected permanent rejection)"
                    )
        if not len(frame):
            return pd.DataFrame({column: [] for column in DECISION_COLUMNS}, dtype=object)
        restock = self._stock_rules().restock
        return write_known_by_day(
            self._engine(),
            SYSTEM,
            "stock",
            lambda conn, exact: _reserve(conn, frame, exact, terms or Terms(), restock),
        )

    def release(self, keys: Sequence[tuple[int, int]]) -> int:
        """Release reserved lines (order key, line number) back to stock; return how many changed."""
        self._inject()
        engine = self._engine()
        with write_transaction(engine, SYSTEM, "stock") as conn:
            _load_keys(conn, [(order, line, 0, 0) for order, line in sorted(set(keys))])
            rows = fetch_all(
                conn,
                "select r.order_day, r.order_key, r.line_number, r.partkey, r.suppkey,"
                " r.quantity from request_keys k"
                " join reservation_orders o on o.order_key = k.order_key"
                " join reservations r on r.order_day = o.order_day"
                " and r.order_key = k.order_key and r.line_number = k.line_number"
                " where r.status = ?",
                (RESERVED,),
            )
            if rows:
                execute_many(
                    conn,
                    "update reservations set status = ? "
                    "where order_day = ? and order_key = ? and line_number = ?",
                    [(RELEASED, row[0], row[1], row[2]) for row in rows],
                )
                execute_many(
                    conn,
                    "update stock set available = available + ? where partkey = ? and suppkey = ?",
                    [(row[5], row[3], row[4]) for row in rows],
                )
                # Each day's released lines move from its reserved total to its released one.
                moved: dict[str, list[int]] = {}
                for row in rows:
                    day = moved.setdefault(row[0], [0, 0])
                    day[0] += 1
                    day[1] += row[5]
                add_to_totals(
                    conn,
                    *DAY_TOTALS,
                    [
                        (day, status, sign * lines, sign * quantity)
                        for day, (lines, quantity) in moved.items()
                        for status, sign in ((RESERVED, -1), (RELEASED, 1))
                    ],
                )
            conn.exec_driver_sql("drop table request_keys")
            return len(rows)

    def reservations_by_day(self, start: str, end: str) -> dict[str, dict[str, tuple[int, int]]]:
        """Per order day in [start, end) and status: (lines, quantity), from the totals kept."""
        return self._by_day(
            "select order_day, status, lines, quantity from reservation_day_totals "
            "where order_day >= ? and order_day < ? and lines > 0",
            start,
            end,
        )

    def recount_reservations_by_day(
        self, start: str, end: str
    ) -> dict[str, dict[str, tuple[int, int]]]:
        """`reservations_by_day` counted afresh from the reservations: an audit, for reconciliation."""
        # Reads every reservation of the window: a row changed behind the inventory's back shows.
        return self._by_day(
            "select order_day, status, count(*), sum(quantity) from reservations "
            "where order_day >= ? and order_day < ? group by order_day, status",
            start,
            end,
        )

    def _by_day(self, sql: str, start: str, end: str) -> dict[str, dict[str, tuple[int, int]]]:
        self._inject()
        with read_connection(self._engine(), SYSTEM) as conn:
            rows = fetch_all(conn, sql, (start, end))
        summary: dict[str, dict[str, tuple[int, int]]] = {}
        for day, status, lines, quantity in rows:
            summary.setdefault(day, {})[status] = (lines, int(quantity))
        return summary

    def overcommitted(self, limit: int = 20) -> list[tuple[int, int, int]]:
        """(part, supplier, available) where more is reserved than there is stock: should be none."""
        with read_connection(self._engine(), SYSTEM) as conn:
            return fetch_all(
                conn,
                "select partkey, suppkey, available from stock where available < 0 "
                "order by partkey, suppkey limit ?",
                (limit,),
            )

    def stock_level_batches(
        self, rows: int = STOCK_BATCH_ROWS
    ) -> Iterator[list[tuple[int, int, int, int]]]:
        """(part, supplier, base level, available) of every stocked pair, in key order, in batches."""
        # One query, fetched a batch at a time: the batches are one snapshot (a read transaction),
        # and SF 10's 8 M pairs never sit in memory at once.
        with read_connection(self._engine(), SYSTEM) as conn:
            result = conn.execution_options(stream_results=True).exec_driver_sql(
                "select partkey, suppkey, base_level, available from stock "
                "order by partkey, suppkey"
            )
            while batch := result.fetchmany(rows):
                yield [tuple(row) for row in batch]


def _request_frame(lines: pd.DataFrame) -> pd.DataFrame:
    frame = lines.loc[:, list(REQUEST_COLUMNS)].reset_index(drop=True)
    for column in ("order_key", "line_number", "partkey", "suppkey", "quantity"):
        frame[column] = frame[column].astype("int64")
    frame["order_day"] = frame["order_day"].astype(str)
    return frame


def _reserve(
    conn: sa.Connection, frame: pd.DataFrame, exact: bool, terms: Terms, restock: str
) -> pd.DataFrame:
    """Decisions for every row: known keys keep theirs, new keys (and stale ones) are decided."""
    import numpy as np
    import pandas as pd

    size = len(frame)
    keys = ["order_key", "line_number"]
    first = ~_duplicated(frame["order_key"], frame["line_number"])
    status, version = np.empty(size, dtype=object), np.full(size, None, dtype=object)
    revision, history = np.zeros(size, dtype=np.int64), np.full(size, None, dtype=object)
    is_known, stale = np.zeros(size, dtype=bool), np.zeros(size, dtype=bool)
    known = _known(conn, frame, exact)
    if len(known):
        stored = frame[keys].merge(known, how="left", on=keys)
        is_known = stored["status"].notna().to_numpy()
        kept = stored[is_known]
        # A released line was reserved when decided: the decision is what is returned.
        status[is_known] = kept["status"].where(kept["status"] != RELEASED, RESERVED).to_numpy()
        version[is_known] = _version_texts(kept["rules_version"]).to_numpy(dtype=object)
        revision[is_known] = kept["revision"].to_numpy(dtype=np.int64)
        history[is_known] = kept["history"].astype(object).where(kept["history"].notna(), None)
        if terms.redecide and terms.rules_version:
            closed = stored.loc[stored["status"] == RELEASED, "order_key"].unique()
            open_orders = ~frame["order_key"].isin(closed).to_numpy()
            stale = first & is_known & (version != terms.rules_version) & open_orders
    new = first & ~is_known
    if new.any() or stale.any():
        lines = _register_orders(conn, frame[new].reset_index(drop=True), known, exact)
        number = _version_number(terms.rules_version)
        if stale.any():
            # Lines decided before are decided again with the new ones, in the order asked.
            again = frame[stale].assign(order_day=stored.loc[stale, "order_day"].to_numpy())
            _give_back(conn, again, status[stale])
            positions = np.concatenate([np.flatnonzero(new), np.flatnonzero(stale)])
            todo = pd.concat([lines, again], ignore_index=True).iloc[np.argsort(positions)]
            decided = _decide(conn, todo.reset_index(drop=True), exact, terms, restock)
            status[np.sort(positions)] = decided
            revision[stale], history[stale] = _store_redecisions(
                conn, again, stored[stale], status[stale], number
            )
        else:
            status[new] = _decide(conn, lines, exact, terms, restock)
        _store_reservations(conn, lines, status[new], exact, number)
        version[new | stale] = terms.rules_version
    # Object columns: None stays None (pandas would make a text column's None a NaN).
    decisions = pd.DataFrame(
        {"status": status, "rules_version": version, "revision": revision, "history": history},
        dtype=object,
    )
    if not first.all():
        # The same key again in one batch gets the decision of its first occurrence.
        index = pd.MultiIndex.from_frame(frame[keys])
        firsts = decisions[first].set_axis(index[first])
        decisions.loc[~first] = firsts.reindex(index[~first]).to_numpy()
    return decisions.astype({"revision": "int64"})


def _version_number(version: str | None) -> int | None:
    """A rules version (12 hex digits) as the number the reservations keep."""
    return None if version is None else int(version, 16)


def _version_texts(numbers: pd.Series) -> pd.Series:
    """The rules versions reservations keep, as foundation/rules.py writes them (None: not kept)."""
    texts = {number: f"{int(number):012x}" for number in numbers.dropna().unique()}
    return numbers.map(texts).astype(object).where(numbers.notna(), None)


def _known(conn: sa.Connection, frame: pd.DataFrame, exact: bool) -> pd.DataFrame:
    """Decisions already stored for the frame's keys (exact), or for its order days (fast)."""
    import pandas as pd

    if exact:
        # Each key once: a key twice in the batch would otherwise be found twice.
        keys = frame[["order_key", "line_number"]].drop_duplicates()
        _load_keys(conn, [(o, n, 0, 0) for o, n in keys.itertuples(index=False)])
        rows = fetch_all(
            conn,
            "select r.order_key, r.line_number, r.order_day, r.status, r.rules_version, r.revision,"
            " r.history from request_keys k "
            "join reservation_orders o on o.order_key = k.order_key "
            "join reservations r on r.order_day = o.order_day and r.order_key = k.order_key "
            "and r.line_number = k.line_number",
        )
        conn.exec_driver_sql("drop table request_keys")
    else:
        # Orders are kept under their order day, so the days' rows hold every repeat; an order
        # kept under another day is caught when it is registered, and the batch redone exactly.
        rows = fetch_all(
            conn,
            "select order_key, line_number, order_day, status, rules_version, revision, history"
            " from reservations where order_day >= ? and order_day <= ?",
            (frame["order_day"].min(), frame["order_day"].max()),
        )
    return pd.DataFrame.from_records(
        rows, columns=["order_key", "line_number", "order_day", "status", *DECISION_COLUMNS[1:]]
    )


def _register_orders(
    conn: sa.Connection, lines: pd.DataFrame, known: pd.DataFrame, exact: bool
) -> pd.DataFrame:
    """Pin the orders of lines never asked before to their day; return the lines with that day.

    An order asked before keeps the day it was first asked under (its lines stay together);
    a new order is registered under the day of its first line in the batch.
    """
    import pandas as pd

    orders = lines.drop_duplicates("order_key")[["order_key", "order_day"]]
    if exact:
        load_temp_table(
            conn, "request_orders", "order_key bigint", zip(orders["order_key"].tolist())
        )
        pinned = fetch_all(
            conn,
            "select o.order_key, o.order_day from request_orders r "
            "join reservation_orders o on o.order_key = r.order_key",
        )
        conn.exec_driver_sql("drop table request_orders")
        day_of = dict(pinned)
        fresh = orders[~orders["order_key"].isin(list(day_of))]
        day_of.update(zip(fresh["order_key"].tolist(), fresh["order_day"].tolist(), strict=True))
        lines = lines.assign(order_day=lines["order_key"].map(day_of))
    else:
        pinned = known.drop_duplicates("order_key").set_index("order_key")["order_day"]
        asked = orders.set_index("order_key")["order_day"]
        seen = asked.index.isin(pinned.index)
        days = pd.Series(pd.factorize(lines["order_day"])[0])
        mixed = len(orders) != int((~_duplicated(lines["order_key"], days)).sum())
        if mixed or (asked[seen] != pinned.reindex(asked.index[seen])).any():
            raise StoredElsewhere  # an order's lines under two days: settled exactly
        fresh = orders[~seen]
    # New orders sorted by key: a backfill's registrations are appended, not scattered.
    fresh = fresh.sort_values("order_key")
    inserted = insert_many(
        conn,
        "reservation_orders",
        ("order_key", "order_day"),
        zip(fresh["order_key"].tolist(), fresh["order_day"].tolist(), strict=True),
        "on conflict do nothing",
    )
    check_inserted(SYSTEM, "orders", inserted, len(fresh), exact)
    return lines


def _decide(
    conn: sa.Connection, lines: pd.DataFrame, exact: bool, terms: Terms, restock: str
) -> np.ndarray:
    """Decide lines first come first served, in the frame's order; store the stock they leave.

    Line by line (the default): lines are grouped by (part, supplier) in request order (pairs do
    not share stock), and each pair's lines split into stretches that start where a later period
    tops the stock up. A pair whose every stretch fits its starting level reserves everything; that
    is nearly every pair, and is computed on whole arrays. The rest (a stretch that overflows, or
    stock above its base level after a release) are decided line by line. Whole orders: one order
    after another, in request order.
    """
    import numpy as np
    import pandas as pd

    stock, located = _stock_for(conn, lines, exact)
    base, available, restocked = (
        stock[column].to_numpy(dtype=np.int64)
        for column in ("base_level", "available", "restocked_month")
    )
    # Periods compare by their first day (days since 1970), whichever rule stored them.
    levels = (base, available, _period_start(restocked))
    codes, days = pd.factorize(lines["order_day"])
    period_of_day = _period_of(np.asarray(days, dtype="datetime64[D]").astype(np.int64), restock)
    quantity = lines["quantity"].to_numpy(dtype=np.int64)
    if terms.whole_orders:
        status, updated, restocks = _decide_whole_orders(
            lines["order_key"].to_numpy(), located, period_of_day[codes], quantity, levels
        )
    else:
        order = np.argsort(located, kind="stable")  # by pair, then request order
        pair, period = located[order], period_of_day[codes][order]
        quantity = quantity[order]
        status = np.full(len(lines), RESERVED, dtype=object)
        updated, restocks, hard_rows = _decide_fitting_pairs(pair, period, quantity, levels)
        if len(hard_rows):
            more = _decide_one_by_one(hard_rows, pair, period, quantity, levels, status)
            updated = [np.concatenate(both) for both in zip(updated, more[0], strict=True)]
            restocks = [np.concatenate(both) for both in zip(restocks, more[1], strict=True)]
        in_request_order = np.empty(len(lines), dtype=object)
        in_request_order[order] = status
        status = in_request_order
    updated[2] = _period_id(updated[2], restock)
    restocks[1] = _period_id(restocks[1], restock)
    _store_stock(conn, stock, updated, restocks)
    return status


def _period_of(days: np.ndarray, restock: str) -> np.ndarray:
    """The first day of each day's restock period (days since 1970): its month, or week (Monday)."""
    import numpy as np

    if restock == "week":
        return days - (days + 3) % 7  # 1970-01-01 was a Thursday
    months = days.astype("datetime64[D]").astype("datetime64[M]")
    return months.astype("datetime64[D]").astype(np.int64)


def _period_id(starts: np.ndarray, restock: str) -> np.ndarray:
    """Periods as stock.restocked_month keeps them: yyyymm of a month, yyyymmdd of a week."""
    import numpy as np

    starts = np.asarray(starts, dtype=np.int64)
    months = starts.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    yyyymm = (months // 12 + 1970) * 100 + months % 12 + 1
    if restock != "week":
        return yyyymm
    first_of_month = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    return yyyymm * 100 + starts - first_of_month + 1


def _period_start(ids: np.ndarray) -> np.ndarray:
    """The first day of stored periods (0: never restocked stays 0): yyyymm or yyyymmdd."""
    import numpy as np

    ids = np.asarray(ids, dtype=np.int64)
    yyyymm = np.where(ids >= 1_000_000, ids // 100, ids)
    day = np.where(ids >= 1_000_000, ids % 100, 1)
    months = (yyyymm // 100 - 1970) * 12 + yyyymm % 100 - 1
    starts = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) + day - 1
    return np.where(ids > 0, starts, 0)


def _decide_whole_orders(orders, located, period, quantity, levels):
    """Each order's lines all reserved, or all back-ordered, one order after another.

    Returns the statuses in request order, the pairs' final stock and their top-ups.
    """
    import numpy as np
    import pandas as pd

    base_of, available_of, restocked_of = levels
    status = np.full(len(orders), RESERVED, dtype=object)
    level: dict[int, list[int]] = {}
    restocks = []
    codes = pd.factorize(orders)[0]  # orders as first asked
    for rows in np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes))[:-1]):
        wanted: dict[int, int] = {}
        for row in rows.tolist():
            p = int(located[row])
            stock = level.setdefault(p, [int(available_of[p]), int(restocked_of[p])])
            if period[row] > stock[1]:
                top_up = max(0, int(base_of[p]) - stock[0])
                if top_up:
                    restocks.append((p, int(period[row]), top_up))
                stock[0] += top_up
                stock[1] = int(period[row])
            wanted[p] = wanted.get(p, 0) + int(quantity[row])
        if all(units <= level[p][0] for p, units in wanted.items()):
            for p, units in wanted.items():
                level[p][0] -= units
        else:
            status[rows] = BACKORDERED
    pairs = np.array(list(level), dtype=np.int64)
    updated = [
        pairs,
        np.array([level[p][0] for p in level], dtype=np.int64),
        np.array([level[p][1] for p in level], dtype=np.int64),
    ]
    return status, updated, list(np.array(restocks, dtype=np.int64).reshape(-1, 3).T)


def _stock_for(
    conn: sa.Connection, lines: pd.DataFrame, exact: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """The stock rows of the lines' pairs and each line's row among them; a pair not stocked fails."""
    import pandas as pd

    pairs = lines[["partkey", "suppkey"]]
    asked = pairs[~_duplicated(pairs["partkey"], pairs["suppkey"])]
    select = (
        "select s.partkey, s.suppkey, s.base_level, s.available, s.restocked_month from stock s"
    )
    # A call asking for most pairs (a long window at once) reads every row: that beats loading
    # the keys. A chunk of a month asks for a few percent of them (SF 1: 70 k of 800 k pairs,
    # 0.5 s by key against 3 s for every row), and a backfill makes 80 such calls.
    if len(asked) > 20_000 and len(asked) * 3 > fetch_all(conn, "select count(*) from stock")[0][0]:
        rows = fetch_all(conn, select)
    else:
        _load_keys(
            conn,
            [(0, 0, p, s) for p, s in zip(asked["partkey"], asked["suppkey"], strict=True)],
        )
        rows = fetch_all(
            conn,
            select + " join request_keys k on k.partkey = s.partkey and k.suppkey = s.suppkey",
        )
        conn.exec_driver_sql("drop table request_keys")
    stock = pd.DataFrame.from_records(
        rows, columns=["partkey", "suppkey", "base_level", "available", "restocked_month"]
    )
    located = _positions(stock["partkey"], stock["suppkey"], pairs["partkey"], pairs["suppkey"])
    if (located < 0).any():
        if not exact:
            raise StoredElsewhere  # the line may have been decided before, under another day
        missing = lines[located < 0].iloc[0]
        raise SystemRefused(
            f"inventory has no stock record for part {missing.partkey} supplier "
            f"{missing.suppkey}: materialise fulfillment/inventory_stock first"
        )
    return stock, located


def _decide_fitting_pairs(pair, month, quantity, levels):
    """Pairs whose every stretch fits reserve all lines (whole arrays): stock, top-ups; others' rows.

    `month` is each line's restock period and `levels[2]` each pair's last, as first days.
    """
    import numpy as np

    base_of, available_of, restocked_of = levels
    group_start = np.r_[True, pair[1:] != pair[:-1]]
    group = np.cumsum(group_start) - 1
    group_pair = pair[group_start]
    # Latest month seen per pair so far (from its stored restock month): a later one tops up.
    shift = pair * 1_000_000
    running = np.maximum.accumulate(shift + np.maximum(month, restocked_of[pair])) - shift
    before = np.empty_like(running)
    before[1:] = running[:-1]
    before[group_start] = restocked_of[group_pair]
    top_up = month > before
    stretch_start = group_start | top_up
    first_rows = np.flatnonzero(stretch_start)
    total = np.add.reduceat(quantity, first_rows)
    stretch_pair = pair[first_rows]
    opens_group = group_start[first_rows]
    base = base_of[stretch_pair]
    opening = available_of[stretch_pair]
    level = np.where(
        opens_group, np.where(top_up[first_rows], np.maximum(opening, base), opening), base
    )
    hard = (total > level) | (opens_group & (level > base))
    stretch_group = group[first_rows]
    hard_group = (
        np.bincount(stretch_group, weights=hard.astype(np.float64), minlength=len(group_pair)) > 0
    )
    easy_stretch = ~hard_group[stretch_group]
    # Restocks of easy pairs: what the month's first line finds missing from the base level.
    left_before = np.where(opens_group, opening, np.r_[0, level[:-1] - total[:-1]])
    restock = easy_stretch & top_up[first_rows] & (base > left_before)
    restocked = [stretch_pair[restock], month[first_rows[restock]], (base - left_before)[restock]]
    last_stretch = np.r_[opens_group[1:], True] & easy_stretch
    stretch_end = np.r_[first_rows[1:], len(pair)]
    updated = [
        stretch_pair[last_stretch],
        (level - total)[last_stretch],
        running[stretch_end[last_stretch] - 1],
    ]
    return updated, restocked, np.flatnonzero(hard_group[group])


def _decide_one_by_one(rows, pair, month, quantity, levels, status):
    """The rule line by line for `rows`: back-orders marked in `status`; final stock and top-ups."""
    import numpy as np

    base_of, available_of, restocked_of = levels
    pairs, lefts, months, restocks = [], [], [], []
    current, level = -1, [0, 0, 0]
    for row in rows.tolist():
        p = int(pair[row])
        if p != current:
            if current >= 0:
                pairs.append(current), lefts.append(level[1]), months.append(level[2])
            current = p
            level = [int(base_of[p]), int(available_of[p]), int(restocked_of[p])]
        line_month = int(month[row])
        if line_month > level[2]:
            top_up = max(0, level[0] - level[1])
            if top_up:
                restocks.append((p, line_month, top_up))
            level[1] += top_up
            level[2] = line_month
        if level[1] >= quantity[row]:
            level[1] -= int(quantity[row])
        else:
            status[row] = BACKORDERED
    pairs.append(current), lefts.append(level[1]), months.append(level[2])
    updated = [np.array(values, dtype=np.int64) for values in (pairs, lefts, months)]
    return updated, np.array(restocks, dtype=np.int64).reshape(-1, 3).T


def _store_reservations(conn, new, decisions, exact, version) -> None:
    """Insert the new lines with their decisions and add them to their order days' totals."""
    values = (new[column].tolist() for column in REQUEST_COLUMNS)
    inserted = insert_many(
        conn,
        "reservations",
        (*REQUEST_COLUMNS, "status", "rules_version"),
        zip(*values, decisions.tolist(), [version] * len(new), strict=True),
        "on conflict do nothing",
    )
    check_inserted(SYSTEM, "reservations", inserted, len(new), exact)
    _add_day_totals(conn, new, decisions)


def _add_day_totals(conn, lines, decisions, sign: int = 1) -> None:
    """Add (or take away) the lines to their (order day, decision) totals."""
    import numpy as np
    import pandas as pd

    if not len(lines):
        return
    codes, days = pd.factorize(lines["order_day"])
    # Lines and units per (day, decision), counted on the day codes: 6 M lines per backfill,
    # where grouping by the text of the day would cost seconds (float sums of whole units are
    # exact far beyond a day's).
    group = codes.astype(np.int64) * 2 + (decisions != RESERVED)
    lines_per = np.bincount(group, minlength=2 * len(days))
    units_per = np.bincount(
        group, weights=lines["quantity"].to_numpy(np.float64), minlength=len(lines_per)
    )
    add_to_totals(
        conn,
        *DAY_TOTALS,
        [
            (
                days[g // 2],
                BACKORDERED if g % 2 else RESERVED,
                sign * int(lines_per[g]),
                sign * int(units_per[g]),
            )
            for g in np.flatnonzero(lines_per).tolist()
        ],
    )


def _give_back(conn, lines, statuses) -> None:
    """Before re-deciding lines: their reserved units back to stock, their decisions out of the totals."""
    _add_day_totals(conn, lines, statuses, sign=-1)
    reserved = lines[statuses == RESERVED]
    units = reserved.groupby(["partkey", "suppkey"], sort=True)["quantity"].sum().reset_index()
    execute_many(
        conn,
        "update stock set available = available + ? where partkey = ? and suppkey = ?",
        zip(*(units[c].tolist() for c in ("quantity", "partkey", "suppkey")), strict=True),
    )


def _store_redecisions(conn, lines, stored, decisions, version):
    """Store re-decided lines: an order whose statuses changed gets its next revision.

    Each line of such an order keeps its earlier statuses, oldest first, in `history`. Returns
    every line's revision and history.
    """
    import numpy as np

    before = stored["status"].to_numpy(dtype=object)
    changed_orders = set(stored["order_key"][before != decisions].tolist())
    changed = stored["order_key"].isin(changed_orders).to_numpy()
    revision = stored["revision"].to_numpy(dtype=np.int64) + changed
    history = [
        (f"{earlier},{status}" if isinstance(earlier, str) else status) if moved else earlier
        for earlier, status, moved in zip(stored["history"], before, changed, strict=True)
    ]
    execute_many(
        conn,
        "update reservations set status = ?, rules_version = ?, revision = ?, history = ? "
        "where order_day = ? and order_key = ? and line_number = ?",
        zip(
            decisions.tolist(),
            [version] * len(lines),
            revision.tolist(),
            history,
            lines["order_day"].tolist(),
            lines["order_key"].tolist(),
            lines["line_number"].tolist(),
            strict=True,
        ),
    )
    _add_day_totals(conn, lines, decisions)
    return revision, history


def _store_stock(conn, stock, updated, restocked) -> None:
    """Write the pairs' final stock and add their top-ups to their suppliers' monthly deliveries."""
    import numpy as np
    import pandas as pd

    partkeys = stock["partkey"].to_numpy(dtype=np.int64)
    suppkeys = stock["suppkey"].to_numpy(dtype=np.int64)
    pairs, left, month = updated
    update_many(
        conn,
        "stock",
        ("available", "restocked_month"),
        ("partkey", "suppkey"),
        zip(*(a.tolist() for a in (left, month, partkeys[pairs], suppkeys[pairs])), strict=True),
    )
    topped_up, months, units = restocked
    # A supplier's deliveries: the pairs' top-ups summed per (supplier, month).
    restocks = (
        pd.DataFrame({"suppkey": suppkeys[topped_up], "month": months, "quantity": units})
        .groupby(["suppkey", "month"], sort=True)["quantity"]
        .agg(["size", "sum"])
        .reset_index()
    )
    execute_many(
        conn,
        "insert into supplier_restocks (suppkey, month, pairs, quantity) values (?, ?, ?, ?) "
        "on conflict (suppkey, month) do update set "
        "pairs = supplier_restocks.pairs + excluded.pairs, "
        "quantity = supplier_restocks.quantity + excluded.quantity",
        zip(*(restocks[c].tolist() for c in ("suppkey", "month", "size", "sum")), strict=True),
    )


def _packed(high: pd.Series, low: pd.Series) -> np.ndarray | None:
    """Two non-negative integer keys as one int64, or None when they do not fit in 63 bits.

    Hashing one column is several times faster than hashing two (6 M lines per backfill).
    """
    import numpy as np

    a, b = high.to_numpy(dtype=np.int64), low.to_numpy(dtype=np.int64)
    if not len(a) or min(a.min(), b.min()) < 0 or a.max() >= 1 << 40 or b.max() >= 1 << 23:
        return None
    return (a << 23) | b


def _duplicated(high: pd.Series, low: pd.Series) -> np.ndarray:
    """Whether each (high, low) pair appeared earlier in the columns."""
    import pandas as pd

    packed = _packed(high, low)
    if packed is None:
        return pd.DataFrame({"a": high, "b": low}).duplicated().to_numpy()
    return pd.Series(packed).duplicated().to_numpy()


def _positions(known_a: pd.Series, known_b: pd.Series, a: pd.Series, b: pd.Series) -> np.ndarray:
    """Row of each (a, b) among the unique (known_a, known_b) pairs, -1 where it is not there."""
    import pandas as pd

    packed, wanted = _packed(known_a, known_b), _packed(a, b)
    if packed is not None and wanted is not None:
        return pd.Index(packed).get_indexer(wanted)
    index = pd.MultiIndex.from_arrays([known_a.to_numpy(), known_b.to_numpy()])
    return index.get_indexer(pd.MultiIndex.from_arrays([a.to_numpy(), b.to_numpy()]))


def _load_keys(conn: sa.Connection, keys: Sequence[tuple[int, int, int, int]]) -> None:
    load_temp_table(
        conn,
        "request_keys",
        "order_key bigint, line_number integer, partkey bigint, suppkey bigint",
        keys,
    )
