"""Customer e-mail: a back-order notice per order with back-ordered lines, a shipment notice per shipped order.

Back-order policy: a line the stock cannot cover is not reserved, not invoiced and not shipped; the
customer is told which lines and what value will not be charged, and may order them again. The
store does not hold open back-orders, so every line is settled on its order day and the money ties
out per day (invoiced + back-ordered = ordered). Each message is keyed by its order and kind.
"""

import time
from typing import TYPE_CHECKING

import dagster as dg

from assets.fulfillment.common import (
    calling,
    customer_email,
    customer_email_sql,
    fulfillment_asset,
    read_frame,
    replace_window_keeping_processed_at,
    rows,
    window,
)
from assets.fulfillment.tables import BACKORDER_NOTICES, SHIPMENT_NOTIFICATIONS
from assets.metadata import markdown_preview
from foundation.money import money
from foundation.registry import (
    ALLOCATIONS_KEY,
    BACKORDER_NOTICES_KEY,
    CUSTOMER_KEY,
    ORDERS_KEY,
    SHIPMENT_NOTIFICATIONS_KEY,
    SHIPMENTS_KEY,
)
from resources.notifier import Message, NotifierResource, deliveries_frame
from resources.warehouse import WarehouseResource

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd

# Messages per call: enough day folders per call for the Maildir writer threads.
SEND_BATCH = 20_000
FIX = "Check the notifier's configuration (resource `notifier`), then re-run the step."


def _send(
    context: dg.AssetExecutionContext, notifier: NotifierResource, messages: "pd.DataFrame"
) -> tuple["pd.DataFrame", float]:
    """Send a frame of messages (Message's fields) in batches; their deliveries and the seconds."""
    import pandas as pd

    started = time.perf_counter()
    parts = []
    with calling(context, "notifier", FIX):
        for begin in range(0, len(messages), SEND_BATCH):
            parts.append(notifier.send_frame(messages.iloc[begin : begin + SEND_BATCH]))
    deliveries = pd.concat(parts, ignore_index=True) if parts else deliveries_frame([])
    return deliveries, time.perf_counter() - started


def _one_per_order_check(con, table: str, expected_sql: str, params: list) -> list[int]:
    """Orders whose message count in fulfillment.<table> is not exactly one."""
    return [
        row[0]
        for row in rows(
            con,
            f"""
            select coalesce(e.o_orderkey, m.o_orderkey) from ({expected_sql}) e
            full join (select o_orderkey, count(*) as n from fulfillment.{table}
                       where o_orderdate >= ? and o_orderdate < ? group by 1) m
              on m.o_orderkey = e.o_orderkey
            where e.o_orderkey is null or m.n is distinct from 1
            order by 1 limit 20
            """,  # noqa: S608 - table names and SQL come from this module
            params * 2,
        )
    ]


SHIPPED_SUBJECT = "Your order {} has shipped: tracking number {}"
SHIPPED_BODY = (
    "Dear {},\n\nYour order {} of {} leaves our warehouse on {} ({} lines).\n"
    "Tracking number: {}\nLast expected delivery: {}\n\nOrderflow"
)
BACKORDERED_ORDERS_SQL = (
    "select distinct l_orderkey as o_orderkey from fulfillment.allocations "
    "where l_orderdate >= ? and l_orderdate < ? and status = 'backordered'"
)
SHIPPED_ORDERS_SQL = (
    "select distinct o_orderkey from fulfillment.shipments "
    "where o_orderdate >= ? and o_orderdate < ? and status = 'shipped'"
)


@fulfillment_asset(
    BACKORDER_NOTICES_KEY,
    deps=[ALLOCATIONS_KEY, ORDERS_KEY, CUSTOMER_KEY],
    kinds=["email"],
    checks={
        "one_notice_per_backordered_order": "Every order with back-ordered lines has exactly one notice.",
    },
)
def backorder_notices(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, notifier: NotifierResource
):
    """The back-order e-mails sent to customers: one per order with lines the stock could not cover."""
    import pandas as pd

    start, end = window(context)
    params = [start, end]
    lines = read_frame(
        warehouse,
        """
        select a.l_orderkey as o_orderkey, strftime(a.l_orderdate, '%Y-%m-%d') as day, c.c_name,
            list(a.l_linenumber order by a.l_linenumber) as numbers,
            list(a.l_partkey order by a.l_linenumber) as parts,
            list(a.l_quantity order by a.l_linenumber) as quantities,
            sum(a.line_cents) as cents
        from fulfillment.allocations a
        join staging.orders o on o.o_orderkey = a.l_orderkey
        join staging.customer c on c.c_custkey = o.o_custkey
        where a.l_orderdate >= ? and a.l_orderdate < ? and a.status = 'backordered'
          and o.o_orderdate >= ? and o.o_orderdate < ?
        group by a.l_orderkey, a.l_orderdate, c.c_name order by a.l_orderdate, a.l_orderkey
        """,
        params * 2,
    )
    messages = []
    for row in lines.itertuples(index=False):
        items = "\n".join(
            f"  line {n}: part {p}, quantity {q}"
            for n, p, q in zip(row.numbers, row.parts, row.quantities, strict=True)
        )
        messages.append(
            Message(
                key=f"backorder:{row.o_orderkey}",
                day=row.day,
                kind="backorder",
                to=customer_email(row.c_name),
                subject=f"Some items of your order {row.o_orderkey} are out of stock",
                body=(
                    f"Dear {row.c_name},\n\nThese lines of your order {row.o_orderkey} of {row.day} "
                    f"are out of stock:\n{items}\n\nThey will not be shipped and you will not be "
                    f"charged for them ({money(int(row.cents))}). The rest of the order ships as "
                    "usual; you are welcome to order these items again.\n\nOrderflow"
                ),
            )
        )
    outgoing = pd.DataFrame(messages, columns=list(Message._fields))
    deliveries, seconds = _send(context, notifier, outgoing)
    frame = pd.DataFrame(
        {
            "o_orderkey": lines["o_orderkey"],
            "o_orderdate": lines["day"],
            "recipient": outgoing["to"],
            "lines": [len(n) for n in lines["numbers"]],
            "backordered_cents": lines["cents"],
            "message_key": deliveries["key"],
            "message_id": deliveries["message_id"],
            "status": deliveries["status"],
            "detail": deliveries["detail"],
        }
    )
    with warehouse.transaction() as con:
        replace_window_keeping_processed_at(
            con, "backorder_notices", BACKORDER_NOTICES, "o_orderdate", start, end, frame
        )
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "rejected": int((frame["status"] == "rejected").sum()) if len(frame) else 0,
                "notifier_call_s": round(seconds, 3),
                "preview": markdown_preview(
                    con,
                    "select * from fulfillment.backorder_notices where o_orderdate >= ? "
                    "and o_orderdate < ? order by o_orderdate desc, o_orderkey limit 5",
                    params,
                ),
            }
        )
        wrong = _one_per_order_check(con, "backorder_notices", BACKORDERED_ORDERS_SQL, params)
    yield dg.AssetCheckResult(
        check_name="one_notice_per_backordered_order",
        passed=not wrong,
        metadata={"order_keys": wrong},
    )


@fulfillment_asset(
    SHIPMENT_NOTIFICATIONS_KEY,
    deps=[SHIPMENTS_KEY, ORDERS_KEY, CUSTOMER_KEY],
    kinds=["email"],
    blocking_checks={
        "one_notification_per_shipped_order": "Every shipped order has exactly one shipment e-mail with its tracking number.",
    },
)
def shipment_notifications(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, notifier: NotifierResource
):
    """The shipment e-mails sent to customers: one per shipped order, with its tracking number."""
    import pandas as pd

    start, end = window(context)
    params = [start, end]
    # The texts are put together in the warehouse (1.5 M of them in a full backfill); the
    # templates are bound parameters and DuckDB's format() fills in the values.
    shipped = read_frame(
        warehouse,
        f"""
        with shipped as (
            select s.o_orderkey, strftime(s.o_orderdate, '%Y-%m-%d') as day,
                any_value(s.tracking_number) as tracking_number, any_value(c.c_name) as c_name,
                strftime(max(s.delivery_date), '%Y-%m-%d') as last_delivery,
                strftime(min(s.ship_date), '%Y-%m-%d') as ship_date, count(*) as lines
            from fulfillment.shipments s
            join staging.orders o on o.o_orderkey = s.o_orderkey
            join staging.customer c on c.c_custkey = o.o_custkey
            where s.o_orderdate >= ? and s.o_orderdate < ? and s.status = 'shipped'
              and o.o_orderdate >= ? and o.o_orderdate < ?
            group by s.o_orderkey, s.o_orderdate
        )
        select o_orderkey, day, tracking_number, 'shipped:' || o_orderkey as message_key,
            {customer_email_sql("c_name")} as recipient,
            format(?, o_orderkey, tracking_number) as subject,
            format(?, c_name, o_orderkey, day, ship_date, lines, tracking_number, last_delivery)
                as body
        from shipped order by day, o_orderkey
        """,  # noqa: S608 - the SQL is this module's; values are bound
        [*params, *params, SHIPPED_SUBJECT, SHIPPED_BODY],
    )
    messages = pd.DataFrame(
        {
            "key": shipped["message_key"],
            "day": shipped["day"],
            "kind": "shipment",
            "to": shipped["recipient"],
            "subject": shipped["subject"],
            "body": shipped["body"],
        }
    )
    deliveries, seconds = _send(context, notifier, messages)
    frame = pd.DataFrame(
        {
            "o_orderkey": shipped["o_orderkey"],
            "o_orderdate": shipped["day"],
            "tracking_number": shipped["tracking_number"],
            "recipient": shipped["recipient"],
            "message_key": deliveries["key"],
            "message_id": deliveries["message_id"],
            "status": deliveries["status"],
            "detail": deliveries["detail"],
        }
    )
    context.log.info(f"Notified {len(frame)} shipped orders in {seconds:.1f} s")
    with warehouse.transaction() as con:
        replace_window_keeping_processed_at(
            con,
            "shipment_notifications",
            SHIPMENT_NOTIFICATIONS,
            "o_orderdate",
            start,
            end,
            frame,
        )
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "rejected": int((frame["status"] == "rejected").sum()) if len(frame) else 0,
                "notifier_call_s": round(seconds, 3),
                "preview": markdown_preview(
                    con,
                    "select * from fulfillment.shipment_notifications where o_orderdate >= ? "
                    "and o_orderdate < ? order by o_orderdate desc, o_orderkey limit 5",
                    params,
                ),
            }
        )
        wrong = _one_per_order_check(con, "shipment_notifications", SHIPPED_ORDERS_SQL, params)
    yield dg.AssetCheckResult(
        check_name="one_notification_per_shipped_order",
        passed=not wrong,
        metadata={"order_keys": wrong},
    )
