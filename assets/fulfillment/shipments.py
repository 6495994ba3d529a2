"""Shipping: each invoiced order's reserved lines sent to the carrier as one consignment.

The carrier answers per order: shipped (tracking number, ship and delivery dates per line) or
refused. A refusal is compensated in `compensations`: the reservation is released, the invoice is
reversed by a credit note (posted by `ledger_postings`), and the customer and an admin are told.
Every call is keyed by the order, so re-runs get the carrier's first answer back. An order
re-decided with a change is asked for again with its revision: the carrier amends its consignment
once (the reserved lines now), or cancels it when nothing of it is reserved any more.
"""

import itertools
import time
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg

from assets.fulfillment.common import (
    calling,
    fulfillment_asset,
    read_frame,
    replace_chunks,
    rows,
    window,
    window_result,
)
from assets.fulfillment.tables import SHIPMENTS
from foundation.registry import (
    ALLOCATIONS_KEY,
    CUSTOMER_KEY,
    INVOICES_KEY,
    LINEITEM_KEY,
    NATION_KEY,
    ORDERS_KEY,
    SHIPMENTS_KEY,
)
from resources.carrier import CarrierResource, ShipmentRequest, answers_to_frame
from resources.warehouse import WarehouseResource

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd

# Orders per call: the local carrier answers whole arrays; an HTTP carrier splits further.
SHIP_BATCH = 2_000_000
# In the order the carrier is asked: by day and order, an order's lines together.
LINES_SQL = """
select i.o_orderkey, strftime(i.o_orderdate, '%Y-%m-%d') as day, n.n_name as destination,
    a.l_linenumber, a.l_quantity, l.l_shipmode, a.revision, a.rules_version
from fulfillment.invoices i
join fulfillment.allocations a on a.l_orderkey = i.o_orderkey
join staging.lineitem l on l.l_orderkey = a.l_orderkey and l.l_linenumber = a.l_linenumber
join staging.customer c on c.c_custkey = i.o_custkey
join staging.nation n on n.n_nationkey = c.c_nationkey
where i.o_orderdate >= ? and i.o_orderdate < ?
  and a.l_orderdate >= ? and a.l_orderdate < ? and a.status = 'reserved'
  and l.l_orderdate >= ? and l.l_orderdate < ?
order by i.o_orderdate, i.o_orderkey, a.l_linenumber
"""
# Orders re-decided with nothing left to ship: the carrier is asked to cancel their consignment.
CANCELLED_SQL = """
select a.l_orderkey as order_key, strftime(a.l_orderdate, '%Y-%m-%d') as order_day,
    n.n_name as destination, max(a.revision) as revision, max(a.rules_version) as rules_version
from fulfillment.allocations a
join staging.orders o on o.o_orderkey = a.l_orderkey
join staging.customer c on c.c_custkey = o.o_custkey
join staging.nation n on n.n_nationkey = c.c_nationkey
where a.l_orderdate >= ? and a.l_orderdate < ? and o.o_orderdate >= ? and o.o_orderdate < ?
  and a.revision > 0
group by a.l_orderkey, a.l_orderdate, n.n_name
having count(*) filter (where a.status = 'reserved') = 0
order by a.l_orderdate, a.l_orderkey
"""
CARRIER_FIX = "Check the carrier's configuration (resource `carrier`), then re-run the step."


@fulfillment_asset(
    SHIPMENTS_KEY,
    deps=[INVOICES_KEY, ALLOCATIONS_KEY, LINEITEM_KEY, ORDERS_KEY, CUSTOMER_KEY, NATION_KEY],
    kinds=["api"],
    blocking_checks={
        "every_invoice_answered": "Every invoiced order has the carrier's answer for each reserved line.",
        "shipped_orders_tracked": "Every shipped line has a tracking number and ship and delivery dates.",
    },
)
def shipments(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, carrier: CarrierResource
):
    """Every reserved line of every invoiced order with the carrier's answer: tracking and dates, or a refusal."""
    import pandas as pd

    def ship(start: date, end: date) -> tuple[pd.DataFrame, dict[str, float]]:
        lines = read_frame(warehouse, LINES_SQL, [start, end] * 3)
        emptied = read_frame(warehouse, CANCELLED_SQL, [start, end] * 2)
        requests = lines.rename(
            columns={
                "o_orderkey": "order_key",
                "day": "order_day",
                "l_linenumber": "line_number",
                "l_quantity": "quantity",
                "l_shipmode": "ship_mode",
            }
        )
        started = time.perf_counter()
        answers = []
        with calling(context, "carrier", CARRIER_FIX):
            # Whole orders per call: a batch ends on an order boundary.
            for batch in _order_batches(requests, SHIP_BATCH):
                answers.append(carrier.create_shipments_frame(batch))
            if len(emptied):
                cancellations = [
                    ShipmentRequest(int(o), day, destination, (), int(revision))
                    for o, day, destination, revision in emptied.iloc[:, :4].itertuples(index=False)
                ]
                answers.append(answers_to_frame(carrier.create_shipments(cancellations)))
        seconds = time.perf_counter() - started
        renamed = {
            "order_key": "o_orderkey",
            "line_number": "l_linenumber",
            "quantity": "l_quantity",
        }
        frame = (
            pd.concat(answers, ignore_index=True).rename(columns=renamed)
            if answers
            else pd.DataFrame(columns=[name for name, _, _ in SHIPMENTS])
        )
        asked = pd.concat([requests, emptied] if len(emptied) else [requests])
        asked = asked.drop_duplicates("order_key").set_index("order_key")
        for column, source in (
            ("o_orderdate", "order_day"),
            ("revision", "revision"),
            ("rules_version", "rules_version"),
        ):
            frame[column] = frame["o_orderkey"].map(asked[source])
        statuses = frame.drop_duplicates("o_orderkey")["status"].value_counts()
        return frame, {
            "orders": int(statuses.sum()),
            "refused": int(statuses.get("refused", 0)),
            "cancelled": int(statuses.get("cancelled", 0)),
            "seconds": seconds,
        }

    done = replace_chunks(context, warehouse, "shipments", ship)
    context.log.info(
        f"Carrier answered {done['orders']} orders ({done['refused']} refused) in "
        f"{done['seconds']:.1f} s"
    )
    params = list(window(context))
    with warehouse.connect() as con:
        yield window_result(
            con,
            "shipments",
            context,
            done["rows"],
            "status, o_orderdate desc, o_orderkey",
            chunks=done["chunks"],
            orders_shipped=done["orders"] - done["refused"] - done["cancelled"],
            orders_refused=done["refused"],
            orders_cancelled=done["cancelled"],
            carrier_call_s=round(done["seconds"], 3),
        )
        unanswered = rows(
            con,
            """
            select a.l_orderkey, a.l_linenumber from fulfillment.allocations a
            join fulfillment.invoices i on i.o_orderkey = a.l_orderkey
            left join fulfillment.shipments s
              on s.o_orderkey = a.l_orderkey and s.l_linenumber = a.l_linenumber
            where a.l_orderdate >= ? and a.l_orderdate < ? and a.status = 'reserved'
              and i.o_orderdate >= ? and i.o_orderdate < ? and s.o_orderkey is null
            order by 1, 2 limit 20
            """,
            params * 2,
        )
        untracked = rows(
            con,
            "select o_orderkey, l_linenumber from fulfillment.shipments "
            "where o_orderdate >= ? and o_orderdate < ? and status = 'shipped' and "
            "(tracking_number is null or ship_date is null or delivery_date is null) "
            "order by 1, 2 limit 20",
            params,
        )
    yield dg.AssetCheckResult(
        check_name="every_invoice_answered",
        passed=not unanswered,
        metadata={"lines_without_answer": [f"{o}:{n}" for o, n in unanswered]},
    )
    yield dg.AssetCheckResult(
        check_name="shipped_orders_tracked",
        passed=not untracked,
        metadata={"lines_without_tracking": [f"{o}:{n}" for o, n in untracked]},
    )


def _order_batches(lines: "pd.DataFrame", orders_per_batch: int):
    """Consecutive slices of the lines frame holding at most `orders_per_batch` whole orders."""
    import numpy as np

    if not len(lines):
        return
    starts = np.flatnonzero(lines["order_key"].ne(lines["order_key"].shift()).to_numpy())
    bounds = [*starts[::orders_per_batch].tolist(), len(lines)]
    for begin, end in itertools.pairwise(bounds):
        yield lines.iloc[begin:end]
