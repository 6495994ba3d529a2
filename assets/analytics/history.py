"""Whole-history marts: inventory health, customer value, profit by supplier nation and year.

These are unpartitioned on purpose: each row aggregates every day there is (a customer's lifetime,
a year's profit, the stock as it stands now), so a day's partition could not be recomputed without
the whole history. Each is one DuckDB statement over the warehouse, seconds even at SF 1.
"""

import dagster as dg

from assets.analytics.common import (
    analytics_asset,
    check_result,
    not_null_sql,
    offending,
    replace_table,
    unique_keys_sql,
)
from assets.fulfillment.common import copy_stock_levels
from assets.metadata import markdown_preview, result_with_preview
from foundation.money import line_net_cents_sql, supply_cost_cents_sql
from foundation.registry import (
    ALLOCATIONS_KEY,
    COMPENSATIONS_KEY,
    CUSTOMER_KEY,
    CUSTOMER_VALUE_KEY,
    INVENTORY_HEALTH_KEY,
    INVENTORY_STOCK_KEY,
    INVOICES_KEY,
    LINEITEM_KEY,
    NATION_KEY,
    ORDERS_KEY,
    PARTSUPP_KEY,
    PROFIT_BY_NATION_YEAR_KEY,
    SUPPLIER_KEY,
)
from resources.inventory import InventoryResource
from resources.warehouse import WarehouseResource

DEMAND_DAYS = 30
REORDER_COVER_DAYS = 14
TOP_VALUE_SHARE = 0.5
LARGE_VOLUME_QUANTITY = 300  # TPC-H Q18: an order of more than 300 units

INVENTORY_HEALTH = (
    ("partkey", "BIGINT", "Part."),
    ("suppkey", "BIGINT", "Supplier."),
    ("base_level", "INTEGER", "Level the monthly restock tops up to."),
    ("available", "INTEGER", "Units available now (inventory system)."),
    ("reserved_recent", "BIGINT", f"Units reserved over the last {DEMAND_DAYS} order days."),
    ("daily_demand", "DOUBLE", f"Average units reserved per day over the last {DEMAND_DAYS} days."),
    ("days_of_cover", "DOUBLE", "available / daily_demand (null when there was no demand)."),
    ("stock_value_cents", "BIGINT", "available × ps_supplycost, in cents."),
    ("value_rank", "BIGINT", "Rank by stock value, 1 = most valuable."),
    (
        "top_value",
        "BOOLEAN",
        f"Among the pairs that make up the top {TOP_VALUE_SHARE:.0%} of stock value (cf. TPC-H Q11).",
    ),
    ("reorder", "BOOLEAN", f"Out of stock or under {REORDER_COVER_DAYS} days of cover."),
    (
        "reorder_quantity",
        "INTEGER",
        "Units to order to get back to base level (0 when no reorder).",
    ),
)
CUSTOMER_VALUE = (
    ("c_custkey", "BIGINT", "Customer."),
    ("c_name", "VARCHAR", "Name."),
    ("nation", "VARCHAR", "Nation."),
    ("c_mktsegment", "VARCHAR", "Market segment."),
    ("orders", "BIGINT", "Orders placed."),
    ("orders_invoiced", "BIGINT", "Orders invoiced and not refunded."),
    ("lifetime_revenue_cents", "BIGINT", "Revenue of those orders (net of discount), in cents."),
    ("first_order", "DATE", "First order date."),
    ("last_order", "DATE", "Last order date."),
    (
        "large_volume_orders",
        "BIGINT",
        f"Orders of more than {LARGE_VOLUME_QUANTITY} units (TPC-H Q18).",
    ),
    ("large_volume_customer", "BOOLEAN", "Has at least one large-volume order."),
)
PROFIT = (
    ("nation", "VARCHAR", "Supplier's nation."),
    ("o_year", "INTEGER", "Year of the order date."),
    ("lines", "BIGINT", "Lines sold (reserved and not refunded)."),
    ("revenue_cents", "BIGINT", "Σ ⌊extendedprice·(1−discount)⌋ in cents."),
    ("supply_cost_cents", "BIGINT", "Σ ps_supplycost·quantity in cents."),
    ("profit_cents", "BIGINT", "revenue − supply cost (TPC-H Q9's amount), in cents."),
)

SOLD_LINES_SQL = """
select l.*, ps.ps_supplycost
from staging.lineitem l
join fulfillment.allocations a
  on a.l_orderkey = l.l_orderkey and a.l_linenumber = l.l_linenumber and a.status = 'reserved'
join staging.partsupp ps on ps.ps_partkey = l.l_partkey and ps.ps_suppkey = l.l_suppkey
where l.l_orderkey not in (select o_orderkey from fulfillment.compensations)
"""

_NET = line_net_cents_sql("l.l_extendedprice", "l.l_discount")
_COST = supply_cost_cents_sql("l.ps_supplycost", "l.l_quantity")
PROFIT_SQL = f"""
select n.n_name as nation, year(l.l_orderdate) as o_year, count(*) as lines,
    sum({_NET}) as revenue_cents, sum({_COST}) as supply_cost_cents,
    sum({_NET}) - sum({_COST}) as profit_cents
from ({SOLD_LINES_SQL}) l
join staging.supplier s on s.s_suppkey = l.l_suppkey
join staging.nation n on n.n_nationkey = s.s_nationkey
group by all
"""  # noqa: S608 - SQL from this module

CUSTOMER_SQL = f"""
with invoiced as (
    select i.o_custkey, count(*) as orders_invoiced, sum(i.net_cents) as revenue
    from fulfillment.invoices i
    where i.o_orderkey not in (select o_orderkey from fulfillment.compensations)
    group by 1),
volume as (
    select o.o_custkey, count(*) as large
    from staging.orders o
    join (select l_orderkey from staging.lineitem group by 1
          having sum(l_quantity) > {LARGE_VOLUME_QUANTITY}) big on big.l_orderkey = o.o_orderkey
    group by 1),
placed as (
    select o_custkey, count(*) as orders, min(o_orderdate) as first_order,
        max(o_orderdate) as last_order
    from staging.orders group by 1)
select c.c_custkey, c.c_name, n.n_name as nation, c.c_mktsegment,
    coalesce(p.orders, 0) as orders, coalesce(i.orders_invoiced, 0) as orders_invoiced,
    coalesce(i.revenue, 0) as lifetime_revenue_cents, p.first_order, p.last_order,
    coalesce(v.large, 0) as large_volume_orders, coalesce(v.large, 0) > 0 as large_volume_customer
from staging.customer c
join staging.nation n on n.n_nationkey = c.c_nationkey
left join placed p on p.o_custkey = c.c_custkey
left join invoiced i on i.o_custkey = c.c_custkey
left join volume v on v.o_custkey = c.c_custkey
"""  # noqa: S608 - SQL from this module

# Two statements: the valued pairs into a temporary table, then the ranking over it. As one query
# with `valued` a CTE read three times, SF 10's 8 M pairs ran out of DuckDB's memory.
VALUED_SQL = f"""
create or replace temp table health_valued as
with demand as (
    select l_partkey as partkey, l_suppkey as suppkey, sum(l_quantity)::BIGINT as reserved_recent
    from fulfillment.allocations
    where status = 'reserved'
      and l_orderdate > (select max(l_orderdate) from fulfillment.allocations) - {DEMAND_DAYS}
    group by 1, 2)
select s.partkey, s.suppkey, s.base_level, s.available,
    coalesce(d.reserved_recent, 0) as reserved_recent,
    coalesce(d.reserved_recent, 0) / {DEMAND_DAYS} as daily_demand,
    {supply_cost_cents_sql("ps.ps_supplycost", "greatest(s.available, 0)")} as stock_value_cents
from stock_now s
join staging.partsupp ps on ps.ps_partkey = s.partkey and ps.ps_suppkey = s.suppkey
left join demand d on d.partkey = s.partkey and d.suppkey = s.suppkey
"""  # noqa: S608 - SQL from this module

HEALTH_SQL = f"""
with ranked as (
    -- The window sorts every pair: only the keys and the value go through it.
    select partkey, suppkey, row_number() over by_value as value_rank,
        sum(stock_value_cents) over by_value - stock_value_cents as value_before
    from health_valued
    window by_value as (order by stock_value_cents desc, partkey, suppkey)),
total as (select sum(stock_value_cents) as value_total from health_valued)
select partkey, suppkey, base_level, available, reserved_recent, daily_demand,
    case when daily_demand > 0 then available / daily_demand end as days_of_cover,
    stock_value_cents, value_rank,
    value_before < {TOP_VALUE_SHARE} * value_total as top_value,
    available <= 0 or (daily_demand > 0 and available / daily_demand < {REORDER_COVER_DAYS})
        as reorder,
    case when available <= 0 or (daily_demand > 0 and available / daily_demand < {REORDER_COVER_DAYS})
         then greatest(base_level - available, 0) else 0 end as reorder_quantity
from health_valued join ranked using (partkey, suppkey) cross join total
"""  # noqa: S608 - SQL from this module


@analytics_asset(
    INVENTORY_HEALTH_KEY,
    deps=[INVENTORY_STOCK_KEY, ALLOCATIONS_KEY, PARTSUPP_KEY],
    columns=INVENTORY_HEALTH,
    primary_key=("partkey", "suppkey"),
    kinds=["sqlite"],
    blocking_checks={
        "no_nulls": None,
        "stock_agrees_with_inventory_system": "Every stocked pair of the inventory system is in the mart, with its level.",
    },
)
def inventory_health(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inventory: InventoryResource
):
    """Stock, recent reservations and days of cover per (part, supplier), the most valuable stock and what to reorder."""
    with warehouse.transaction() as con:
        copy_stock_levels(con, inventory, "stock_now", temporary=True)
        con.execute(VALUED_SQL)
        count = replace_table(con, "inventory_health", INVENTORY_HEALTH, HEALTH_SQL)
        reorders = con.execute(
            "select count(*), coalesce(sum(reorder_quantity), 0) from analytics.inventory_health "
            "where reorder"
        ).fetchall()[0]
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": count,
                "pairs_to_reorder": reorders[0],
                "units_to_reorder": int(reorders[1]),
                "reorder_list": markdown_preview(
                    con,
                    "select partkey, suppkey, available, daily_demand, days_of_cover, "
                    "reorder_quantity from analytics.inventory_health where reorder "
                    "order by days_of_cover nulls first, reorder_quantity desc limit 20",
                ),
                "top_value_stock": markdown_preview(
                    con,
                    "select value_rank, partkey, suppkey, available, stock_value_cents "
                    "from analytics.inventory_health where top_value order by value_rank limit 10",
                ),
            }
        )
        duplicates = offending(con, unique_keys_sql("inventory_health", ("partkey", "suppkey")))
        nulls = offending(
            con,
            not_null_sql(
                "inventory_health",
                ("partkey", "suppkey"),
                [c for c, _, _ in INVENTORY_HEALTH if c != "days_of_cover"],
            ),
        )
        missing = offending(
            con,
            "select concat_ws('/', s.partkey, s.suppkey) from stock_now s "
            "left join analytics.inventory_health h using (partkey, suppkey) "
            "where h.available is distinct from s.available order by 1",
        )
        con.execute("drop table health_valued")
        con.execute("drop table stock_now")
    yield check_result("keys_unique", duplicates)
    yield check_result("no_nulls", nulls)
    yield check_result("stock_agrees_with_inventory_system", missing)


@analytics_asset(
    CUSTOMER_VALUE_KEY,
    deps=[ORDERS_KEY, LINEITEM_KEY, CUSTOMER_KEY, NATION_KEY, INVOICES_KEY, COMPENSATIONS_KEY],
    columns=CUSTOMER_VALUE,
    primary_key=("c_custkey",),
    blocking_checks={
        "revenue_agrees_with_fulfillment": "Lifetime revenue of all customers = invoiced net − refunded net.",
    },
)
def customer_value(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Every customer's lifetime orders and revenue, and whether they place large-volume orders (TPC-H Q18)."""
    with warehouse.transaction() as con:
        count = replace_table(con, "customer_value", CUSTOMER_VALUE, CUSTOMER_SQL)
        yield result_with_preview(
            con,
            count,
            "select c_custkey, c_name, nation, orders, lifetime_revenue_cents, "
            "large_volume_orders from analytics.customer_value "
            "order by lifetime_revenue_cents desc, c_custkey limit 10",
            preview="top_customers",
        )
        duplicates = offending(con, unique_keys_sql("customer_value", ("c_custkey",)))
        mart, expected = con.execute(
            "select (select coalesce(sum(lifetime_revenue_cents), 0) from analytics.customer_value),"
            " (select coalesce(sum(net_cents), 0) from fulfillment.invoices)"
            " - (select coalesce(sum(net_cents), 0) from fulfillment.compensations)"
        ).fetchall()[0]
    yield check_result("keys_unique", duplicates)
    yield check_result(
        "revenue_agrees_with_fulfillment",
        [] if mart == expected else ["all customers"],
        mart_cents=int(mart),
        fulfillment_cents=int(expected),
    )


@analytics_asset(
    PROFIT_BY_NATION_YEAR_KEY,
    deps=[
        LINEITEM_KEY,
        PARTSUPP_KEY,
        SUPPLIER_KEY,
        NATION_KEY,
        ALLOCATIONS_KEY,
        INVOICES_KEY,
        COMPENSATIONS_KEY,
    ],
    columns=PROFIT,
    primary_key=("nation", "o_year"),
    blocking_checks={
        "revenue_agrees_with_invoices": "Revenue over all nations and years = invoiced net − refunded net.",
    },
)
def profit_by_nation_year(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Profit on the lines sold per supplier nation and order year, by TPC-H Q9's definition, in cents."""
    with warehouse.transaction() as con:
        count = replace_table(con, "profit_by_nation_year", PROFIT, PROFIT_SQL)
        yield result_with_preview(
            con,
            count,
            "select * from analytics.profit_by_nation_year order by nation, o_year desc limit 10",
        )
        duplicates = offending(con, unique_keys_sql("profit_by_nation_year", ("nation", "o_year")))
        mart, expected = con.execute(
            "select (select coalesce(sum(revenue_cents), 0) from analytics.profit_by_nation_year),"
            " (select coalesce(sum(net_cents), 0) from fulfillment.invoices)"
            " - (select coalesce(sum(net_cents), 0) from fulfillment.compensations)"
        ).fetchall()[0]
    yield check_result("keys_unique", duplicates)
    yield check_result(
        "revenue_agrees_with_invoices",
        [] if mart == expected else ["all nations and years"],
        mart_cents=int(mart),
        invoiced_cents=int(expected),
    )
