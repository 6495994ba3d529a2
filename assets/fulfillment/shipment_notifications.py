"""Shipment notices: an e-mail per shipped order with its tracking number and delivery date.

Each message is keyed by its order and kind, so a re-run sends nothing twice; an order re-decided
with a change, whose consignment the carrier amended, gets one update per revision
(`shipped:<order>:r<revision>`).
"""

from datetime import date

import dagster as dg

from assets.fulfillment.common import (
    customer_email_sql,
    fulfillment_asset,
    read_frame,
    send_notices,
)
from foundation.registry import CUSTOMER_KEY, ORDERS_KEY, SHIPMENT_NOTIFICATIONS_KEY, SHIPMENTS_KEY
from resources.notifier import NotifierResource
from resources.warehouse import WarehouseResource

SHIPPED_SUBJECT = "Your order {} has shipped: tracking number {}"
SHIPPED_BODY = (
    "Dear {},\n\nYour order {} of {} leaves our warehouse on {} ({} lines).\n"
    "Tracking number: {}\nLast expected delivery: {}\n\nOrderflow"
)
UPDATED_SUBJECT = "Update on your order {}: it ships with tracking number {}"
UPDATED_BODY = (
    "Dear {},\n\nWe have allocated our stock again: your order {} of {} leaves our warehouse on "
    "{} with {} lines.\nTracking number: {}\nLast expected delivery: {}\n\nThis replaces our "
    "earlier message about its shipment.\n\nOrderflow"
)
# The texts are put together in the warehouse (1.5 M of them in a full backfill); the templates
# are bound parameters and DuckDB's format() fills in the values.
SHIPPED_SQL = f"""
with shipped as (
    select s.o_orderkey, strftime(s.o_orderdate, '%Y-%m-%d') as day,
        any_value(s.tracking_number) as tracking_number, any_value(c.c_name) as c_name,
        strftime(max(s.delivery_date), '%Y-%m-%d') as last_delivery,
        strftime(min(s.ship_date), '%Y-%m-%d') as ship_date, count(*) as lines,
        coalesce(max(s.revision), 0) as revision
    from fulfillment.shipments s
    join staging.orders o on o.o_orderkey = s.o_orderkey
    join staging.customer c on c.c_custkey = o.o_custkey
    where s.o_orderdate >= ? and s.o_orderdate < ? and s.status = 'shipped'
      and o.o_orderdate >= ? and o.o_orderdate < ?
    group by s.o_orderkey, s.o_orderdate
)
select o_orderkey, day, tracking_number, revision,
    'shipped:' || o_orderkey || if(revision > 0, ':r' || revision, '') as message_key,
    {customer_email_sql("c_name")} as recipient,
    format(if(revision > 0, ?, ?), o_orderkey, tracking_number) as subject,
    format(if(revision > 0, ?, ?), c_name, o_orderkey, day, ship_date, lines, tracking_number,
        last_delivery) as body
from shipped order by day, o_orderkey
"""  # noqa: S608 - the SQL is this module's; values are bound
SHIPPED_ORDERS_SQL = (
    "select distinct o_orderkey from fulfillment.shipments "
    "where o_orderdate >= ? and o_orderdate < ? and status = 'shipped'"
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

    def compose(start: date, end: date) -> tuple[pd.DataFrame, dict[str, object]]:
        templates = [UPDATED_SUBJECT, SHIPPED_SUBJECT, UPDATED_BODY, SHIPPED_BODY]
        shipped = read_frame(warehouse, SHIPPED_SQL, [start, end, start, end, *templates])
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
        return messages, {
            "o_orderkey": shipped["o_orderkey"],
            "o_orderdate": shipped["day"],
            "tracking_number": shipped["tracking_number"],
            "revision": shipped["revision"],
        }

    yield from send_notices(
        context,
        warehouse,
        notifier,
        "shipment_notifications",
        compose,
        "one_notification_per_shipped_order",
        SHIPPED_ORDERS_SQL,
    )
