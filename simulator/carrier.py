"""The carrier's book: takes shipment requests, assigns tracking numbers and dates, in SQL.

`CarrierBook` is the carrier's own logic and storage (SQLite by default). `LocalCarrier`
(resources/carrier.py) calls it in-process; `orderflow-sim carrier` serves it over HTTP JSON
(simulator/carrier_server.py). Everything the carrier decides is deterministic: tracking
numbers and dates come from the order key, line and ship mode, never from the wall clock, so a
replayed request gets the same answer. A shipment is keyed by its order key: requesting it again
returns the first answer, including a refusal. Its days (handling, and transit per ship mode) are
rules.yaml's `carrier` section as it is when a consignment is planned; a mode without days there is
refused.

A request may carry the order's revision (the store re-decided the order): asked with a revision
later than the one it answered, the carrier amends the consignment once, keeping its tracking
number and the lines it had planned, dropping the lines no longer asked for and planning the new
ones; a revision with no lines cancels it (its lines are kept, for the record). A refusal stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from foundation.failures import SystemRefused
from foundation.rules import CarrierRules, load_rules
from foundation.sqldb.bulk import execute_many, fetch_all, insert_many, load_temp_table
from foundation.sqldb.connections import check_inserted, read_connection, write_known_by_day
from foundation.sqldb.schema import Upgrade, engine_with_schema
from simulator.outages import Faults, fault_state_file, inject

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

SYSTEM = "carrier"
SHIPPED, REFUSED, CANCELLED = "shipped", "refused", "cancelled"
# A request frame may add "revision" (the order's; 0 when absent).
ORDER_COLUMNS = ("order_key", "order_day", "destination")
LINE_COLUMNS = ("order_key", "line_number", "quantity", "ship_mode")
ANSWER_COLUMNS = ("status", "tracking_number", "reason")
PLAN_COLUMNS = ("ship_date", "delivery_date")

# Both tables are clustered by day (what the bulk lookups read); order keys stay unique.
# shipment_lines needs no key of its own: lines are written only with their shipment, in the
# transaction that inserts the shipment's order key.
SCHEMA = (
    """create table if not exists shipments (
        order_key bigint not null, order_day varchar(10) not null,
        destination varchar(64) not null, status varchar(12) not null,
        tracking_number varchar(32), reason varchar(200), revision integer not null default 0,
        primary key (order_day, order_key)){without_rowid}""",
    "create unique index if not exists shipments_by_order on shipments (order_key)",
    """create table if not exists shipment_lines (
        order_key bigint not null, line_number integer not null, order_day varchar(10) not null,
        ship_mode varchar(16) not null, quantity integer not null,
        ship_date varchar(10), delivery_date varchar(10),
        primary key (order_day, order_key, line_number)){without_rowid}""",
)
SCHEMA_VERSION = 3
UPGRADES = (
    # Version 1 kept shipments by order key and lines by (order, line), with no day on a line.
    Upgrade(
        version=2,
        tables=("shipments", "shipment_lines"),
        indexes=("shipments_by_day",),
        copy=(
            "insert into shipments (order_key, order_day, destination, status, tracking_number,"
            " reason) select order_key, order_day, destination, status, tracking_number, reason"
            " from shipments_old",
            "insert into shipment_lines select l.order_key, l.line_number, s.order_day,"
            " l.ship_mode, l.quantity, l.ship_date, l.delivery_date"
            " from shipment_lines_old l join shipments_old s on s.order_key = l.order_key",
        ),
    ),
    # Version 2 kept no revision: every consignment it holds is an order's first.
    Upgrade(
        version=3,
        tables=(),
        indexes=(),
        copy=(),
        columns=(("shipments", "revision", "integer not null default 0"),),
    ),
)


@dataclass(frozen=True)
class ShipmentLine:
    """A line to ship (request) or shipped (answer, with the carrier's dates)."""

    line_number: int
    quantity: int
    ship_mode: str
    ship_date: str | None = None
    delivery_date: str | None = None


@dataclass(frozen=True)
class ShipmentRequest:
    """One order's reserved lines to ship to the customer's nation; the order key is the key."""

    order_key: int
    order_day: str
    destination: str
    lines: tuple[ShipmentLine, ...]
    revision: int = 0


@dataclass(frozen=True)
class Shipment:
    """The carrier's answer: shipped with a tracking number and dates per line, or refused."""

    order_key: int
    status: str
    tracking_number: str | None
    reason: str | None
    lines: tuple[ShipmentLine, ...]


def request_to_json(request: ShipmentRequest) -> dict:
    """The request as the HTTP API's JSON object."""
    return asdict(request)


def shipment_to_json(shipment: Shipment) -> dict:
    """The answer as the HTTP API's JSON object."""
    return asdict(shipment)


def shipment_from_json(data: dict) -> Shipment:
    """An answer from the HTTP API's JSON object."""
    return Shipment(
        order_key=int(data["order_key"]),
        status=str(data["status"]),
        tracking_number=data.get("tracking_number"),
        reason=data.get("reason"),
        lines=tuple(ShipmentLine(**line) for line in data["lines"]),
    )


def _mix(values: np.ndarray, salt: int) -> np.ndarray:
    """A deterministic 64-bit hash per value (splitmix64), computed on whole arrays."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


TRACKING_SALT, HANDLING_SALT, TRANSIT_SALT = 1, 2, 3


def tracking_numbers(order_keys: np.ndarray) -> np.ndarray:
    """The carrier's tracking number per order's consignment (deterministic)."""
    import numpy as np

    digits = (_mix(order_keys, TRACKING_SALT) % np.uint64(10**12)).astype(np.int64)
    return np.array([f"OF{number:012d}" for number in digits.tolist()], dtype=object)


def plan(
    order_keys, order_days, line_numbers, ship_modes, rules: CarrierRules
) -> tuple[np.ndarray, np.ndarray]:
    """Ship and delivery dates per line: the rules' handling per order, then the mode's transit.

    All arguments are per line; the ship modes must be ones the carrier offers.
    """
    import numpy as np
    import pandas as pd

    keys = np.asarray(order_keys, dtype=np.int64)
    # Millions of lines share a few thousand days and seven modes: parse and format those once.
    day_codes, days = pd.factorize(np.asarray(order_days, dtype=object))
    ordered = np.asarray(days, dtype="datetime64[D]").astype(np.int64)[day_codes]
    fewest, most = rules.handling_days
    handling = _mix(keys, HANDLING_SALT) % np.uint64(most - fewest + 1)
    ship = ordered + fewest + handling.astype(np.int64)
    mode_codes, modes = pd.factorize(np.asarray(ship_modes, dtype=object))
    transit_days = rules.transit_days
    low = np.array([transit_days[mode][0] for mode in modes], dtype=np.int64)[mode_codes]
    high = np.array([transit_days[mode][1] for mode in modes], dtype=np.int64)[mode_codes]
    line_key = keys * 8 + np.asarray(line_numbers, dtype=np.int64)  # TPC-H lines are 1..7
    transit = low + (_mix(line_key, TRANSIT_SALT) % (high - low + 1).astype(np.uint64)).astype(
        np.int64
    )
    delivery = ship + transit
    if not len(keys):
        return np.array([], dtype=object), np.array([], dtype=object)
    first = int(ship.min())
    names = np.datetime_as_string(
        np.arange(first, int(delivery.max()) + 1).astype("datetime64[D]"), unit="D"
    ).astype(object)
    return names[ship - first], names[delivery - first]


class CarrierBook:
    """The carrier's side: decides and stores shipments in SQL (SQLite file by default).

    Its outage state (`orderflow-sim outage carrier`) is read from `systems_dir` at every call
    (default: the pipeline's data dir), so the in-process and the HTTP carrier share it.
    """

    def __init__(
        self,
        url: str,
        faults: Faults | None = None,
        systems_dir: Path | None = None,
        days: CarrierRules | None = None,
    ):
        self.url = url
        self.faults = faults or Faults()
        self.systems_dir = systems_dir
        self.days = days

    def _days(self) -> CarrierRules:
        """Its days: the ones given, else rules.yaml's `carrier` section as it is now."""
        return self.days or load_rules().carrier

    def _inject(self) -> Faults:
        return inject(SYSTEM, self.faults, fault_state_file(self.url, SYSTEM), self.systems_dir)

    def _engine(self) -> sa.Engine:
        return engine_with_schema(self.url, SCHEMA, SYSTEM, SCHEMA_VERSION, UPGRADES)

    def create_shipments(self, requests: Sequence[ShipmentRequest]) -> list[Shipment]:
        """Ship each order (or return the first answer for one asked before), in request order."""
        import pandas as pd

        first: dict[int, ShipmentRequest] = {}
        for request in requests:
            first.setdefault(request.order_key, request)
        orders = pd.DataFrame.from_records(
            [(r.order_key, r.order_day, r.destination, r.revision) for r in first.values()],
            columns=[*ORDER_COLUMNS, "revision"],
        )
        lines = pd.DataFrame.from_records(
            [
                (r.order_key, x.line_number, x.quantity, x.ship_mode)
                for r in first.values()
                for x in r.lines
            ],
            columns=list(LINE_COLUMNS),
        )
        answers, answer_lines = self.ship(orders, lines)
        shipped: dict[int, list[ShipmentLine]] = {}
        for order, *line in zip(
            *(answer_lines[c].tolist() for c in (*LINE_COLUMNS, *PLAN_COLUMNS)), strict=True
        ):
            number, quantity, mode, ship_date, delivery_date = line
            shipped.setdefault(order, []).append(
                ShipmentLine(number, quantity, mode, _text(ship_date), _text(delivery_date))
            )
        by_order = {
            order: Shipment(
                order, status, _text(tracking), _text(reason), tuple(shipped.get(order, ()))
            )
            for order, status, tracking, reason in zip(
                *(answers[c].tolist() for c in ("order_key", *ANSWER_COLUMNS)), strict=True
            )
        }
        return [by_order[request.order_key] for request in requests]

    def create_shipments_frame(self, lines: pd.DataFrame) -> pd.DataFrame:
        """The bulk form of `create_shipments`: ORDER_COLUMNS + LINE_COLUMNS in, one row per line out.

        The answer has LINE_COLUMNS, PLAN_COLUMNS and ANSWER_COLUMNS, orders in first-seen order.
        """
        columns = [*ORDER_COLUMNS, *(["revision"] if "revision" in lines else [])]
        orders = lines.drop_duplicates("order_key")[columns]
        answers, answer_lines = self.ship(orders, lines[list(LINE_COLUMNS)])
        return answer_lines.merge(answers, how="left", on="order_key")

    def ship(self, orders: pd.DataFrame, lines: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Answer every order (ORDER_COLUMNS and a revision, each once) with its lines (LINE_COLUMNS).

        Returns the answers (order_key + ANSWER_COLUMNS) in the orders' order and the answered
        lines (LINE_COLUMNS + PLAN_COLUMNS) grouped by order in the same order. An order asked
        before gets its stored answer and lines back, amended first when asked with a later
        revision; nothing else about it is written again.
        """
        refused = set(self._inject().reject_keys)
        days = self._days()
        # Days as text once per order here, not once per line below.
        orders = orders.reset_index(drop=True)
        if "revision" not in orders:
            orders = orders.assign(revision=0)
        orders = orders.astype({"order_key": "int64", "order_day": str, "revision": "int64"})
        lines = lines.reset_index(drop=True).astype(
            {"order_key": "int64", "line_number": "int64", "quantity": "int64"}
        )
        return write_known_by_day(
            self._engine(),
            SYSTEM,
            "shipments",
            lambda conn, exact: self._ship(conn, orders, lines, exact, refused, days),
        )

    def _ship(self, conn, orders, lines, exact: bool, refused: set, days: CarrierRules):
        import numpy as np
        import pandas as pd

        known, known_lines = _known(conn, orders, exact)
        known, known_lines = _amend(conn, orders, lines, known, known_lines, days)
        # A later revision of an order never shipped, with nothing to ship: nothing to cancel.
        lineless = ~orders["order_key"].isin(lines["order_key"]) & (orders["revision"] > 0)
        unknown = ~orders["order_key"].isin(known["order_key"])
        nothing = pd.DataFrame(
            {"order_key": orders.loc[unknown & lineless, "order_key"], "status": CANCELLED}
        )
        new_orders = orders[unknown & ~lineless].reset_index(drop=True)
        new_lines = lines[lines["order_key"].isin(new_orders["order_key"])].reset_index(drop=True)
        reasons = _refusals(new_orders, new_lines, refused, days)
        status = np.where(reasons.isna(), SHIPPED, REFUSED).astype(object)
        tracking = np.where(
            status == SHIPPED, tracking_numbers(new_orders["order_key"].to_numpy()), None
        )
        answered = pd.DataFrame(
            {
                "order_key": new_orders["order_key"],
                "status": status,
                "tracking_number": tracking,
                "reason": reasons.to_numpy(dtype=object),
            }
        )
        per_line = new_lines.merge(
            new_orders[["order_key", "order_day"]].assign(status=status), how="left", on="order_key"
        )
        ship_dates = np.full(len(per_line), None, dtype=object)
        delivery_dates = np.full(len(per_line), None, dtype=object)
        shipped = (per_line["status"] == SHIPPED).to_numpy()
        if shipped.any():
            ship_dates[shipped], delivery_dates[shipped] = plan(
                per_line["order_key"].to_numpy()[shipped],
                per_line["order_day"].to_numpy(dtype=object)[shipped],
                per_line["line_number"].to_numpy()[shipped],
                per_line["ship_mode"].to_numpy(dtype=object)[shipped],
                days,
            )
        new_lines = new_lines.assign(ship_date=ship_dates, delivery_date=delivery_dates)
        inserted = insert_many(
            conn,
            "shipments",
            (
                "order_key",
                "order_day",
                "destination",
                "status",
                "tracking_number",
                "reason",
                "revision",
            ),
            zip(
                new_orders["order_key"].tolist(),
                new_orders["order_day"].tolist(),
                new_orders["destination"].astype(str).tolist(),
                status.tolist(),
                tracking.tolist(),
                reasons.tolist(),  # None where it ships (the frame's column may hold NaN)
                new_orders["revision"].tolist(),
                strict=True,
            ),
            "on conflict do nothing",
        )
        check_inserted(SYSTEM, "shipments", inserted, len(new_orders), exact)
        insert_many(
            conn,
            "shipment_lines",
            (
                "order_key",
                "line_number",
                "order_day",
                "ship_mode",
                "quantity",
                "ship_date",
                "delivery_date",
            ),
            zip(
                new_lines["order_key"].tolist(),
                new_lines["line_number"].tolist(),
                per_line["order_day"].tolist(),
                new_lines["ship_mode"].tolist(),
                new_lines["quantity"].tolist(),
                ship_dates.tolist(),
                delivery_dates.tolist(),
                strict=True,
            ),
        )
        order_index = pd.Index(orders["order_key"])
        found = [known[["order_key", *ANSWER_COLUMNS]], answered]
        if len(nothing):
            found.append(nothing.reindex(columns=["order_key", *ANSWER_COLUMNS]))
        answers = _in_order(pd.concat(found, ignore_index=True), order_index)
        all_lines = pd.concat([known_lines, new_lines[known_lines.columns]], ignore_index=True)
        return answers, _in_order(all_lines, order_index)

    def shipments_by_day(self, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per order day in [start, end): shipments by status, for reconciliation."""
        self._inject()
        with read_connection(self._engine(), SYSTEM) as conn:
            rows = fetch_all(
                conn,
                "select order_day, status, count(*) from shipments "
                "where order_day >= ? and order_day < ? group by order_day, status",
                (start, end),
            )
        summary: dict[str, dict[str, int]] = {}
        for day, status, count in rows:
            summary.setdefault(day, {})[status] = count
        return summary


def _refusals(
    orders: pd.DataFrame, lines: pd.DataFrame, refused: set[str], days: CarrierRules
) -> pd.Series:
    """Why the carrier refuses each new order (None: it ships); `refused`: order keys it refuses."""
    import pandas as pd

    reasons = pd.Series(None, index=orders.index, dtype=object)
    unknown = ~lines["ship_mode"].isin(list(days.transit_days))
    if unknown.any():
        modes = (
            lines[unknown]
            .groupby("order_key")["ship_mode"]
            .agg(lambda found: ", ".join(sorted(set(found))))
        )
        offered = orders["order_key"].map(modes)
        reasons[offered.notna()] = "carrier does not offer ship mode " + offered[offered.notna()]
    reasons[~orders["order_key"].isin(lines["order_key"])] = "shipment has no lines"
    if refused:
        rejected = orders["order_key"].astype(str).isin(list(refused))
        reasons[rejected] = "carrier refused the shipment (injected refusal for this order key)"
    # Missing reasons as None, never NaN: a driver may store NaN as text ('NaN' on PostgreSQL).
    return reasons.astype(object).where(reasons.notna(), None)


def _in_order(frame: pd.DataFrame, orders: pd.Index) -> pd.DataFrame:
    """Rows grouped by order, orders as in `orders`, rows of an order in their current order."""
    import numpy as np

    position = orders.get_indexer(frame["order_key"])
    if len(position) and (position[1:] < position[:-1]).any():
        frame = frame.iloc[np.argsort(position, kind="stable")]
    # A backfill's answers are new and already in request order: no sort, no copy.
    return frame.reset_index(drop=True)


def _amend(conn, orders, lines, known, known_lines, days: CarrierRules):
    """Amend the known consignments asked for with a later revision; their answers and lines now.

    A refused consignment stays refused. Lines asked for again keep their plan, lines no longer
    asked for are dropped and new ones planned; with no lines at all the consignment is cancelled
    and keeps its lines.
    """
    import numpy as np
    import pandas as pd

    asked = known.merge(orders[["order_key", "revision"]], on="order_key")
    later = asked[(asked["revision"] > asked["stored_revision"]) & (asked["status"] != REFUSED)]
    if not len(later):
        return known, known_lines
    keys = ["order_key", "line_number"]
    wanted = lines[lines["order_key"].isin(later["order_key"])]
    had = known_lines[known_lines["order_key"].isin(later["order_key"])]
    cancelled = later["order_key"][~later["order_key"].isin(wanted["order_key"])]
    had_keys, wanted_keys = (
        pd.MultiIndex.from_frame(had[keys]),
        pd.MultiIndex.from_frame(wanted[keys]),
    )
    dropped = had[~had_keys.isin(wanted_keys) & ~had["order_key"].isin(cancelled).to_numpy()]
    added = wanted[~wanted_keys.isin(had_keys)].reset_index(drop=True)
    day_of = later.set_index("order_key")["stored_day"]
    offered = added["ship_mode"].isin(list(days.transit_days))
    if not offered.all():
        missing = added[~offered].iloc[0]
        raise SystemRefused(
            f"carrier does not offer ship mode {missing.ship_mode!r}, asked to add line "
            f"{missing.line_number} to order {missing.order_key}: give the mode its days in "
            "rules.yaml (carrier.transit_days), then re-run"
        )
    added_days = added["order_key"].map(day_of).to_numpy(dtype=object)
    ship_dates, delivery_dates = plan(
        added["order_key"].to_numpy(),
        added_days,
        added["line_number"].to_numpy(),
        added["ship_mode"].to_numpy(dtype=object),
        days,
    )
    added = added.assign(ship_date=ship_dates, delivery_date=delivery_dates)
    insert_many(
        conn,
        "shipment_lines",
        (*LINE_COLUMNS[:2], "order_day", "ship_mode", "quantity", *PLAN_COLUMNS),
        zip(
            added["order_key"].tolist(),
            added["line_number"].tolist(),
            added_days.tolist(),
            added["ship_mode"].tolist(),
            added["quantity"].tolist(),
            ship_dates.tolist(),
            delivery_dates.tolist(),
            strict=True,
        ),
    )
    execute_many(
        conn,
        "delete from shipment_lines where order_day = ? and order_key = ? and line_number = ?",
        zip(
            dropped["order_key"].map(day_of).tolist(),
            dropped["order_key"].tolist(),
            dropped["line_number"].tolist(),
            strict=True,
        ),
    )
    status = np.where(later["order_key"].isin(cancelled), CANCELLED, SHIPPED).astype(object)
    execute_many(
        conn,
        "update shipments set status = ?, revision = ? where order_day = ? and order_key = ?",
        zip(
            status.tolist(),
            later["revision"].tolist(),
            later["stored_day"].tolist(),
            later["order_key"].tolist(),
            strict=True,
        ),
    )
    now = dict(zip(later["order_key"].tolist(), status.tolist(), strict=True))
    known = known.assign(status=known["order_key"].map(now).fillna(known["status"]))
    kept = known_lines.drop(dropped.index)
    together = pd.concat([kept, added[kept.columns]], ignore_index=True)
    return known, together.sort_values(keys, kind="stable", ignore_index=True)


def _text(value) -> str | None:
    import numpy as np

    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _known(conn, orders: pd.DataFrame, exact: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Answers and lines stored before for the orders (exact), or for their order days (fast)."""
    import pandas as pd

    line_sql = (
        "select l.order_key, l.line_number, l.quantity, l.ship_mode, l.ship_date,"
        " l.delivery_date from shipment_lines l "
    )
    answer_sql = (
        "select s.order_key, s.status, s.tracking_number, s.reason, s.order_day, s.revision"
        " from shipments s "
    )
    if not len(orders):
        found, found_lines = [], []
    elif exact:
        load_temp_table(
            conn, "request_orders", "order_key bigint", zip(orders["order_key"].tolist())
        )
        found = fetch_all(conn, answer_sql + "join request_orders r on r.order_key = s.order_key")
        found_lines = fetch_all(
            conn,
            line_sql + "join shipments s on s.order_day = l.order_day and s.order_key = l.order_key"
            " join request_orders r on r.order_key = s.order_key"
            " order by l.order_key, l.line_number",
        )
        conn.exec_driver_sql("drop table request_orders")
    else:
        # Orders are stored under their order day, so the days' rows hold every repeat; an order
        # stored under another day makes the insert come up short, and it is redone exactly.
        days = (str(orders["order_day"].min()), str(orders["order_day"].max()))
        found = fetch_all(conn, answer_sql + "where s.order_day >= ? and s.order_day <= ?", days)
        found_lines = fetch_all(
            conn,
            line_sql
            + "where l.order_day >= ? and l.order_day <= ? order by l.order_key, l.line_number",
            days,
        )
    known = pd.DataFrame.from_records(
        found, columns=["order_key", *ANSWER_COLUMNS, "stored_day", "stored_revision"]
    )
    known_lines = pd.DataFrame.from_records(found_lines, columns=[*LINE_COLUMNS, *PLAN_COLUMNS])
    asked = orders["order_key"]
    return (
        known[known["order_key"].isin(asked)].astype({"order_key": "int64"}),
        known_lines[known_lines["order_key"].isin(asked)].astype(
            {"order_key": "int64", "line_number": "int64", "quantity": "int64"}
        ),
    )
