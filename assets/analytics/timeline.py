"""The per-order step timeline: when each order was reserved, invoiced, shipped, notified and posted.

Every fulfillment table records when its step first handled a row (`processed_at`, kept across
re-runs), so the timeline shows the real first time of each step per order, not per run. An
order's clock starts when its order day closes (midnight UTC after the order date): that is when
the day's last batch may have landed and the daily run can start.
"""

import dagster as dg

from assets.analytics.common import (
    analytics_assets,
    check_result,
    metadata_for,
    offending,
    replace_window_from_query,
    unique_keys_sql,
)
from assets.fulfillment.common import chunk_windows, window
from assets.metadata import result_with_preview
from foundation.registry import (
    ALLOCATIONS_KEY,
    BACKORDER_NOTICES_KEY,
    COMPENSATIONS_KEY,
    INVOICES_KEY,
    LEDGER_POSTINGS_KEY,
    ORDER_TIMELINE_KEY,
    ORDERS_KEY,
    SHIPMENT_NOTIFICATIONS_KEY,
    SHIPMENTS_KEY,
    STEP_LATENCY_KEY,
)
from resources.warehouse import WarehouseResource

STEPS = ("reserve", "invoice", "ship", "notify", "post")

ORDER_TIMELINE = (
    ("o_orderkey", "BIGINT", "Order."),
    ("o_orderdate", "DATE", "Order date (the partition)."),
    ("outcome", "VARCHAR", "shipped, refused, backordered (nothing to ship) or in progress."),
    ("day_closed_at", "TIMESTAMP", "When the order's day closed: the clock's start."),
    ("reserved_at", "TIMESTAMP", "First reservation decision for its lines."),
    ("invoiced_at", "TIMESTAMP", "Invoice recorded."),
    ("shipped_at", "TIMESTAMP", "Carrier's answer recorded."),
    ("notified_at", "TIMESTAMP", "Shipment, refund or (nothing shipped) back-order e-mail sent."),
    ("posted_at", "TIMESTAMP", "Ledger entries posted."),
    ("reserve_s", "DOUBLE", "Seconds from day close to reservation."),
    ("invoice_s", "DOUBLE", "Seconds from reservation to invoice."),
    ("ship_s", "DOUBLE", "Seconds from invoice to the carrier's answer."),
    (
        "notify_s",
        "DOUBLE",
        "Seconds from the carrier's answer (or reservation) to the closing e-mail.",
    ),
    ("post_s", "DOUBLE", "Seconds from invoice to ledger posting."),
)
STEP_LATENCY = (
    ("day", "DATE", "Order date."),
    ("step", "VARCHAR", "reserve, invoice, ship, notify or post."),
    ("orders", "BIGINT", "Orders that completed the step."),
    ("p50_s", "DOUBLE", "Median seconds the step took."),
    ("p95_s", "DOUBLE", "95th percentile of seconds the step took."),
)

TIMELINE_SQL = """
with lines as (
    select l_orderkey as o_orderkey, min(processed_at) as reserved_at,
        bool_and(status = 'backordered') as all_backordered
    from fulfillment.allocations where l_orderdate >= ? and l_orderdate < ? group by 1),
shipped as (
    -- A consignment cancelled by a re-decision (nothing of the order left to ship) never shipped.
    select o_orderkey, min(processed_at) as shipped_at, bool_or(status = 'refused') as refused
    from fulfillment.shipments where o_orderdate >= ? and o_orderdate < ?
      and status <> 'cancelled' group by 1),
notified as (
    select coalesce(s.o_orderkey, b.o_orderkey, c.o_orderkey) as o_orderkey,
        s.processed_at as shipment_mail_at, b.processed_at as backorder_mail_at,
        c.processed_at as refund_mail_at
    from (select o_orderkey, processed_at from fulfillment.shipment_notifications
          where o_orderdate >= ? and o_orderdate < ?) s
    full join (select o_orderkey, processed_at from fulfillment.backorder_notices
               where o_orderdate >= ? and o_orderdate < ?) b using (o_orderkey)
    full join (select o_orderkey, processed_at from fulfillment.compensations
               where o_orderdate >= ? and o_orderdate < ?) c
      on c.o_orderkey = coalesce(s.o_orderkey, b.o_orderkey)),
posted as (
    select o_orderkey, min(processed_at) as posted_at from fulfillment.ledger_postings
    where o_orderdate >= ? and o_orderdate < ? group by 1),
t as (
    select o.o_orderkey, o.o_orderdate, (o.o_orderdate + 1)::TIMESTAMP as day_closed_at,
        l.reserved_at, i.processed_at as invoiced_at, s.shipped_at, p.posted_at,
        -- The e-mail that closes the order: shipped, refunded, or (nothing to ship) back-ordered.
        case when s.refused then n.refund_mail_at when s.shipped_at is not null
             then n.shipment_mail_at else n.backorder_mail_at end as notified_at,
        case when s.refused then 'refused' when s.shipped_at is not null then 'shipped'
             when l.all_backordered then 'backordered' else 'in progress' end as outcome
    from staging.orders o
    left join lines l using (o_orderkey)
    left join fulfillment.invoices i
      on i.o_orderkey = o.o_orderkey and i.o_orderdate >= ? and i.o_orderdate < ?
    left join shipped s using (o_orderkey)
    left join notified n using (o_orderkey)
    left join posted p using (o_orderkey)
    where o.o_orderdate >= ? and o.o_orderdate < ?)
select o_orderkey, o_orderdate, outcome, day_closed_at, reserved_at, invoiced_at, shipped_at,
    notified_at, posted_at,
    epoch(reserved_at) - epoch(day_closed_at),
    epoch(invoiced_at) - epoch(reserved_at),
    epoch(shipped_at) - epoch(invoiced_at),
    epoch(notified_at) - epoch(coalesce(shipped_at, reserved_at)),
    epoch(posted_at) - epoch(invoiced_at)
from t
"""

LATENCY_SQL = " union all ".join(
    f"select o_orderdate, '{step}', count({step}_s), quantile_cont({step}_s, 0.5), "  # noqa: S608
    f"quantile_cont({step}_s, 0.95) from analytics.order_timeline "
    f"where o_orderdate >= ? and o_orderdate < ? group by 1"
    for step in STEPS
)

# Each step's percentiles over the run's whole window (a day's run: that day's row of
# step_latency), as materialisation metadata: the UI plots them and the metrics sensors push them.
WINDOW_LATENCY_SQL = " union all ".join(
    f"select '{step}', quantile_cont({step}_s, 0.5), quantile_cont({step}_s, 0.95) "  # noqa: S608
    f"from analytics.order_timeline where o_orderdate >= ? and o_orderdate < ?"
    for step in STEPS
)


def _latency_metadata(con, params: list) -> dict[str, float]:
    """`<step>_p50_s` and `<step>_p95_s` of the window, for the steps some order completed."""
    found = con.execute(WINDOW_LATENCY_SQL, params * len(STEPS)).fetchall()
    return {
        f"{step}_{name}_s": seconds
        for step, p50, p95 in found
        for name, seconds in (("p50", p50), ("p95", p95))
        if seconds is not None
    }


@analytics_assets(
    "order_timeline",
    specs=[
        dg.AssetSpec(
            ORDER_TIMELINE_KEY,
            description="Per order: when each order-to-cash step first happened and how long it took.",
            deps=[
                ORDERS_KEY,
                ALLOCATIONS_KEY,
                INVOICES_KEY,
                SHIPMENTS_KEY,
                BACKORDER_NOTICES_KEY,
                SHIPMENT_NOTIFICATIONS_KEY,
                COMPENSATIONS_KEY,
                LEDGER_POSTINGS_KEY,
            ],
            metadata=metadata_for(ORDER_TIMELINE, ("o_orderkey",)),
        ),
        dg.AssetSpec(
            STEP_LATENCY_KEY,
            description="Median and 95th-percentile duration of each step per order day.",
            deps=[ORDER_TIMELINE_KEY],
            metadata=metadata_for(STEP_LATENCY, ("day", "step")),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec("keys_unique", asset=ORDER_TIMELINE_KEY, blocking=True),
        dg.AssetCheckSpec(
            "every_staged_order_present",
            asset=ORDER_TIMELINE_KEY,
            blocking=True,
            description="The timeline has exactly the staged orders of the window.",
        ),
        dg.AssetCheckSpec(
            "steps_in_order",
            asset=ORDER_TIMELINE_KEY,
            description="No step is recorded before the step it follows.",
        ),
        dg.AssetCheckSpec("percentiles_ordered", asset=STEP_LATENCY_KEY, blocking=True),
    ],
)
def order_timeline(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Build the per-order timeline of the window and its per-day step percentiles."""
    start, end = window(context)
    params = [start, end]
    orders = steps = 0
    with warehouse.connect() as con:
        chunks = chunk_windows(context, con)
    # A chunk of months at a time, each in its own transaction: SF 10's whole history (15 M
    # orders) in one query ran out of DuckDB's memory limit. Chunks are whole days, so each
    # order and each day's percentiles are computed as in one pass.
    for first, after in chunks:
        chunk = [first, after]
        with warehouse.transaction() as con:
            orders += replace_window_from_query(
                con,
                "order_timeline",
                ORDER_TIMELINE,
                "o_orderdate",
                first,
                after,
                TIMELINE_SQL,
                chunk * 8,
            )
            steps += replace_window_from_query(
                con,
                "step_latency",
                STEP_LATENCY,
                "day",
                first,
                after,
                LATENCY_SQL,
                chunk * len(STEPS),
            )
    with warehouse.transaction() as con:
        yield result_with_preview(
            con,
            orders,
            "select o_orderkey, o_orderdate, outcome, reserve_s, invoice_s, ship_s, "
            "notify_s, post_s from analytics.order_timeline where o_orderdate >= ? "
            "and o_orderdate < ? order by o_orderdate desc, o_orderkey limit 5",
            params,
            asset_key=ORDER_TIMELINE_KEY,
        )
        yield result_with_preview(
            con,
            steps,
            "select * from analytics.step_latency where day >= ? and day < ? "
            "order by day desc, step limit 5",
            params,
            asset_key=STEP_LATENCY_KEY,
            # Exact percentiles hold the window's every duration in memory: a day's or a chunk's
            # run (what the metrics report) has them, a backfill's range the per-day table.
            **(_latency_metadata(con, params) if len(chunks) == 1 else {}),
        )
        duplicates = offending(
            con,
            unique_keys_sql(
                "order_timeline", ("o_orderkey",), "o_orderdate >= ? and o_orderdate < ?"
            ),
            params,
        )
        missing = offending(
            con,
            """
            select coalesce(t.o_orderkey, o.o_orderkey) from
                (select o_orderkey from analytics.order_timeline
                 where o_orderdate >= ? and o_orderdate < ?) t
            full join (select o_orderkey from staging.orders
                       where o_orderdate >= ? and o_orderdate < ?) o using (o_orderkey)
            where t.o_orderkey is null or o.o_orderkey is null order by 1
            """,
            params * 2,
        )
        disordered = offending(
            con,
            "select o_orderkey from analytics.order_timeline where o_orderdate >= ? "
            "and o_orderdate < ? and (invoice_s < 0 or ship_s < 0 or notify_s < 0 or post_s < 0)"
            " order by 1",
            params,
        )
        unordered = offending(
            con,
            "select concat_ws('/', day, step) from analytics.step_latency "
            "where day >= ? and day < ? and p50_s > p95_s order by 1",
            params,
        )
    yield check_result("keys_unique", duplicates, ORDER_TIMELINE_KEY)
    yield check_result("every_staged_order_present", missing, ORDER_TIMELINE_KEY)
    yield check_result("steps_in_order", disordered, ORDER_TIMELINE_KEY)
    yield check_result("percentiles_ordered", unordered, STEP_LATENCY_KEY)
