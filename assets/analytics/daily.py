"""Daily marts: sales per day, region and nation; fulfillment KPIs per day and ship mode.

Both are daily partitions over the order date with single-run backfills: a day's figures depend
only on that day's orders, so any range is replaced in one statement.
"""

import dagster as dg

from assets.analytics.common import analytics_asset, daily_mart, not_null_sql
from foundation.registry import (
    ALLOCATIONS_KEY,
    COMPENSATIONS_KEY,
    CUSTOMER_KEY,
    DAILY_SALES_KEY,
    FULFILLMENT_KPIS_KEY,
    INVOICES_KEY,
    LINEITEM_KEY,
    NATION_KEY,
    REGION_KEY,
    SHIPMENTS_KEY,
)
from resources.warehouse import WarehouseResource

DAILY_SALES = (
    ("day", "DATE", "Order date."),
    ("region", "VARCHAR", "Customer's region."),
    ("nation", "VARCHAR", "Customer's nation."),
    ("orders", "BIGINT", "Orders invoiced and not refunded."),
    ("lines", "BIGINT", "Their lines."),
    ("revenue_cents", "BIGINT", "Their revenue (net of discount, before tax), in cents."),
    ("average_order_cents", "BIGINT", "Revenue per order, in cents (rounded down)."),
    ("orders_refunded", "BIGINT", "Orders invoiced then refunded (shipment refused)."),
)
DAILY_SALES_KEYS = ("day", "nation")

FULFILLMENT_KPIS = (
    ("day", "DATE", "Order date."),
    ("ship_mode", "VARCHAR", "TPC-H ship mode of the lines."),
    ("lines", "BIGINT", "Lines ordered."),
    ("lines_backordered", "BIGINT", "Lines the stock could not cover."),
    ("backorder_rate", "DOUBLE", "lines_backordered / lines."),
    ("lines_shipped", "BIGINT", "Lines the carrier shipped."),
    ("days_to_ship", "DOUBLE", "Average days from order to the carrier's pickup."),
    ("days_to_deliver", "DOUBLE", "Average days from order to delivery."),
    ("on_time_rate", "DOUBLE", "Shipped lines delivered by their commit date / shipped lines."),
    ("orders_compensated", "BIGINT", "Orders with lines of this mode whose shipment was refused."),
)
FULFILLMENT_KPIS_KEYS = ("day", "ship_mode")
WINDOW = "day >= ? and day < ?"

SALES_SQL = """
select i.o_orderdate, r.r_name, n.n_name,
    count(*) filter (where c.o_orderkey is null),
    coalesce(sum(i.lines) filter (where c.o_orderkey is null), 0)::BIGINT,
    coalesce(sum(i.net_cents) filter (where c.o_orderkey is null), 0)::BIGINT,
    coalesce(sum(i.net_cents) filter (where c.o_orderkey is null)
             // nullif(count(*) filter (where c.o_orderkey is null), 0), 0)::BIGINT,
    count(c.o_orderkey)
from fulfillment.invoices i
left join fulfillment.compensations c
  on c.o_orderkey = i.o_orderkey and c.o_orderdate >= ? and c.o_orderdate < ?
join staging.customer cu on cu.c_custkey = i.o_custkey
join staging.nation n on n.n_nationkey = cu.c_nationkey
join staging.region r on r.r_regionkey = n.n_regionkey
where i.o_orderdate >= ? and i.o_orderdate < ?
group by i.o_orderdate, r.r_name, n.n_name
"""

KPIS_SQL = """
select a.l_orderdate, l.l_shipmode, count(*),
    count(*) filter (where a.status = 'backordered'),
    count(*) filter (where a.status = 'backordered') / count(*),
    count(*) filter (where s.status = 'shipped'),
    avg(s.ship_date - a.l_orderdate) filter (where s.status = 'shipped'),
    avg(s.delivery_date - a.l_orderdate) filter (where s.status = 'shipped'),
    avg(case when s.delivery_date <= l.l_commitdate then 1.0 else 0.0 end)
        filter (where s.status = 'shipped'),
    count(distinct s.o_orderkey) filter (where s.status = 'refused')
from fulfillment.allocations a
join staging.lineitem l on l.l_orderkey = a.l_orderkey and l.l_linenumber = a.l_linenumber
left join fulfillment.shipments s
  on s.o_orderkey = a.l_orderkey and s.l_linenumber = a.l_linenumber
 and s.o_orderdate >= ? and s.o_orderdate < ?
where a.l_orderdate >= ? and a.l_orderdate < ? and l.l_orderdate >= ? and l.l_orderdate < ?
group by a.l_orderdate, l.l_shipmode
"""


@analytics_asset(
    DAILY_SALES_KEY,
    deps=[INVOICES_KEY, COMPENSATIONS_KEY, CUSTOMER_KEY, NATION_KEY, REGION_KEY],
    columns=DAILY_SALES,
    primary_key=DAILY_SALES_KEYS,
    partitioned=True,
    blocking_checks={
        "no_nulls": None,
        "revenue_agrees_with_fulfillment": "Per day, revenue = invoiced net − refunded net in fulfillment.",
    },
)
def daily_sales(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Revenue, orders, lines and average order value per day, region and nation (refunds excluded)."""
    yield from daily_mart(
        context,
        warehouse,
        "daily_sales",
        DAILY_SALES,
        DAILY_SALES_KEYS,
        SALES_SQL,
        "select day, region, sum(orders) as orders, sum(revenue_cents) as revenue_cents"
        " from analytics.daily_sales where day >= ? and day < ? group by all"
        " order by day desc, region limit 10",
        {
            "no_nulls": not_null_sql(
                "daily_sales", DAILY_SALES_KEYS, [c for c, _, _ in DAILY_SALES], WINDOW
            ),
            "revenue_agrees_with_fulfillment": """
            with mart as (select day, sum(revenue_cents) as revenue from analytics.daily_sales
                          where day >= ? and day < ? group by 1),
            source as (
                select o_orderdate as day, sum(net_cents) as revenue from fulfillment.invoices
                where o_orderdate >= ? and o_orderdate < ? group by 1
                union all
                select o_orderdate, -sum(net_cents) from fulfillment.compensations
                where o_orderdate >= ? and o_orderdate < ? group by 1),
            expected as (select day, sum(revenue) as revenue from source group by 1)
            select coalesce(m.day, e.day) from mart m full join expected e using (day)
            where coalesce(m.revenue, 0) <> coalesce(e.revenue, 0) order by 1
            """,
        },
    )


@analytics_asset(
    FULFILLMENT_KPIS_KEY,
    deps=[ALLOCATIONS_KEY, SHIPMENTS_KEY, LINEITEM_KEY],
    columns=FULFILLMENT_KPIS,
    primary_key=FULFILLMENT_KPIS_KEYS,
    partitioned=True,
    blocking_checks={
        "rates_within_0_and_1": None,
        "lines_agree_with_staging": "Per day, the KPI lines add up to the staged lines.",
    },
)
def fulfillment_kpis(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Back-order rate, days to ship and deliver, on-time rate and compensations per day and ship mode."""
    yield from daily_mart(
        context,
        warehouse,
        "fulfillment_kpis",
        FULFILLMENT_KPIS,
        FULFILLMENT_KPIS_KEYS,
        KPIS_SQL,
        "select * from analytics.fulfillment_kpis where day >= ? and day < ? "
        "order by day desc, ship_mode limit 7",
        {
            "rates_within_0_and_1": "select concat_ws('/', day, ship_mode) "
            "from analytics.fulfillment_kpis where day >= ? and day < ? and not (backorder_rate "
            "between 0 and 1 and coalesce(on_time_rate, 0) between 0 and 1) order by 1",
            "lines_agree_with_staging": """
            select coalesce(k.day, l.day) from
                (select day, sum(lines) as n from analytics.fulfillment_kpis
                 where day >= ? and day < ? group by 1) k
            full join (select l_orderdate as day, count(*) as n from staging.lineitem
                       where l_orderdate >= ? and l_orderdate < ? group by 1) l using (day)
            where k.n is distinct from l.n order by 1
            """,
        },
    )
