"""Back-order notices: an e-mail per order with lines the stock could not cover.

Back-order policy: a line the stock cannot cover (with its whole order, when rules.yaml says so)
is not reserved, not invoiced and not shipped; the customer is told which lines and what value will
not be charged, and may order them again. The store does not hold open back-orders, so every line is
settled on its order day and the money ties out per day (invoiced + back-ordered = ordered). Each
message is keyed by its order and kind; an order re-decided with a change gets one update per
revision (`backorder:<order>:r<revision>`), which replaces what it was told before.
"""

from datetime import date

import dagster as dg

from assets.fulfillment.common import (
    customer_email,
    fulfillment_asset,
    read_frame,
    send_notices,
)
from foundation.money import money
from foundation.registry import ALLOCATIONS_KEY, BACKORDER_NOTICES_KEY, CUSTOMER_KEY, ORDERS_KEY
from resources.notifier import Message, NotifierResource
from resources.warehouse import WarehouseResource

BACKORDERED_LINES_SQL = """
select a.l_orderkey as o_orderkey, strftime(a.l_orderdate, '%Y-%m-%d') as day, c.c_name,
    list(a.l_linenumber order by a.l_linenumber) filter (where a.status = 'backordered')
        as numbers,
    list(a.l_partkey order by a.l_linenumber) filter (where a.status = 'backordered') as parts,
    list(a.l_quantity order by a.l_linenumber) filter (where a.status = 'backordered')
        as quantities,
    coalesce(sum(a.line_cents) filter (where a.status = 'backordered'), 0) as cents,
    coalesce(max(a.revision), 0) as revision, max(a.rules_version) as rules_version
from fulfillment.allocations a
join staging.orders o on o.o_orderkey = a.l_orderkey
join staging.customer c on c.c_custkey = o.o_custkey
where a.l_orderdate >= ? and a.l_orderdate < ? and (a.status = 'backordered' or a.revision > 0)
  and o.o_orderdate >= ? and o.o_orderdate < ?
group by a.l_orderkey, a.l_orderdate, c.c_name order by a.l_orderdate, a.l_orderkey
"""
BACKORDERED_ORDERS_SQL = (
    "select distinct l_orderkey as o_orderkey from fulfillment.allocations "
    "where l_orderdate >= ? and l_orderdate < ? and (status = 'backordered' or revision > 0)"
)


@fulfillment_asset(
    BACKORDER_NOTICES_KEY,
    deps=[ALLOCATIONS_KEY, ORDERS_KEY, CUSTOMER_KEY],
    kinds=["email"],
    checks={
        "one_notice_per_backordered_order": "Every order with back-ordered lines, or re-decided "
        "with a change, has exactly one notice.",
    },
)
def backorder_notices(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, notifier: NotifierResource
):
    """The back-order e-mails sent to customers: one per order with lines the stock could not cover."""
    import pandas as pd

    def compose(start: date, end: date) -> tuple[pd.DataFrame, dict[str, object]]:
        lines = read_frame(warehouse, BACKORDERED_LINES_SQL, [start, end] * 2)
        # An update with nothing back-ordered lists no lines (SQL's list of none is null).
        for column in ("numbers", "parts", "quantities"):
            lines[column] = [
                [] if value is None or value is pd.NA else value for value in lines[column]
            ]
        messages = [_message(row) for row in lines.itertuples(index=False)]
        return pd.DataFrame(messages, columns=list(Message._fields)), {
            "o_orderkey": lines["o_orderkey"],
            "o_orderdate": lines["day"],
            "lines": [len(n) for n in lines["numbers"]],
            "backordered_cents": lines["cents"],
            "rules_version": lines["rules_version"],
            "revision": lines["revision"],
        }

    yield from send_notices(
        context,
        warehouse,
        notifier,
        "backorder_notices",
        compose,
        "one_notice_per_backordered_order",
        BACKORDERED_ORDERS_SQL,
    )


def _message(row) -> Message:
    """The notice of an order's back-ordered lines; after a re-decision, the update that replaces it."""
    items = "\n".join(
        f"  line {n}: part {p}, quantity {q}"
        for n, p, q in zip(row.numbers, row.parts, row.quantities, strict=True)
    )
    to = customer_email(row.c_name)
    if not row.revision:
        return Message(
            key=f"backorder:{row.o_orderkey}",
            day=row.day,
            kind="backorder",
            to=to,
            subject=f"Some items of your order {row.o_orderkey} are out of stock",
            body=(
                f"Dear {row.c_name},\n\nThese lines of your order {row.o_orderkey} of "
                f"{row.day} are out of stock:\n{items}\n\nThey will not be shipped and you "
                f"will not be charged for them ({money(int(row.cents))}). The rest of the "
                "order ships as usual; you are welcome to order these items again."
                "\n\nOrderflow"
            ),
        )
    if len(row.numbers):
        news = (
            f"these lines are out of stock:\n{items}\n\nThey will not be shipped and you will "
            f"not be charged for them ({money(int(row.cents))}); every other line ships."
        )
    else:
        news = "every line of it ships after all, and is charged as ordered."
    return Message(
        key=f"backorder:{row.o_orderkey}:r{row.revision}",
        day=row.day,
        kind="backorder",
        to=to,
        subject=f"Update on your order {row.o_orderkey}: what we can ship",
        body=(
            f"Dear {row.c_name},\n\nWe have allocated our stock again. For your order "
            f"{row.o_orderkey} of {row.day}, {news}\n\nThis replaces what we wrote before about "
            "this order.\n\nOrderflow"
        ),
    )
