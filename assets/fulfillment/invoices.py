"""Invoices: one per order for its reserved lines, in TPC-H's integer-cent arithmetic.

An order re-decided with a change (its revision) is invoiced anew, as INV-<order>-R<revision>;
`ledger_postings` reverses the invoice it replaces.

Invoicing is the warehouse's own computation (the ledger posting is a separate step), so it is
set-based SQL: the same ⌊⌊ep·(100−d)/100⌋·(100+t)/100⌋ the staging checks use, which makes
invoiced + back-ordered value equal the order totals to the cent, per day.
"""

import dagster as dg

from assets.fulfillment.common import (
    chunk_windows,
    fulfillment_asset,
    replace_window_keeping_processed_at,
    rows,
    window,
    window_result,
)
from foundation.money import line_cents_sql, line_net_cents_sql, supply_cost_cents_sql
from foundation.registry import (
    ALLOCATIONS_KEY,
    INVOICES_KEY,
    LINEITEM_KEY,
    ORDERS_KEY,
    PARTSUPP_KEY,
)
from resources.warehouse import WarehouseResource

INSERT_SQL = f"""
create or replace temp table new_invoices as
select 'INV-' || o.o_orderkey || if(max(revision) > 0, '-R' || max(revision), '')
        as invoice_number, o.o_orderkey, o.o_orderdate, o.o_custkey,
    count(*) as lines, sum(net) as net_cents, sum(gross) - sum(net) as tax_cents,
    sum(gross) as total_cents, sum(cost) as cost_cents, max(revision) as revision
from (
    select l.l_orderkey, a.revision,
        {line_net_cents_sql("l.l_extendedprice", "l.l_discount")} as net,
        {line_cents_sql("l.l_extendedprice", "l.l_discount", "l.l_tax")} as gross,
        {supply_cost_cents_sql("ps.ps_supplycost", "l.l_quantity")} as cost
    from staging.lineitem l
    join fulfillment.allocations a
      on a.l_orderkey = l.l_orderkey and a.l_linenumber = l.l_linenumber
    join staging.partsupp ps on ps.ps_partkey = l.l_partkey and ps.ps_suppkey = l.l_suppkey
    where l.l_orderdate >= ? and l.l_orderdate < ?
      and a.l_orderdate >= ? and a.l_orderdate < ? and a.status = 'reserved'
) lines
join staging.orders o on o.o_orderkey = lines.l_orderkey
group by o.o_orderkey, o.o_orderdate, o.o_custkey
"""  # noqa: S608 - the formulas are SQL from code; values are bound

TIE_OUT_SQL = """
select strftime(o.o_orderdate, '%Y-%m-%d') as day,
    sum((o.o_totalprice * 100)::BIGINT) as ordered,
    coalesce(max(i.invoiced), 0) as invoiced, coalesce(max(b.backordered), 0) as backordered
from staging.orders o
left join (select o_orderdate, sum(total_cents) as invoiced from fulfillment.invoices
           where o_orderdate >= ? and o_orderdate < ? group by 1) i using (o_orderdate)
left join (select l_orderdate as o_orderdate, sum(line_cents) as backordered
           from fulfillment.allocations where l_orderdate >= ? and l_orderdate < ?
             and status = 'backordered' group by 1) b using (o_orderdate)
where o.o_orderdate >= ? and o.o_orderdate < ?
group by o.o_orderdate
having sum((o.o_totalprice * 100)::BIGINT) <> coalesce(max(i.invoiced), 0) + coalesce(max(b.backordered), 0)
order by 1 limit 20
"""


@fulfillment_asset(
    INVOICES_KEY,
    deps=[ALLOCATIONS_KEY, ORDERS_KEY, LINEITEM_KEY, PARTSUPP_KEY],
    blocking_checks={
        "invoices_tie_out": "Per day, invoiced + back-ordered value = the order totals, to the cent.",
    },
)
def invoices(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """One invoice per order for its reserved lines: net, tax, total and cost of goods in cents."""
    # Set-based SQL, a chunk per transaction: the warehouse holds one chunk's changes at a time.
    with warehouse.connect() as con:
        chunked = chunk_windows(context, con)
    for first, after in chunked:
        with warehouse.transaction() as con:
            con.execute(INSERT_SQL, [first, after] * 2)
            replace_window_keeping_processed_at(
                con, "invoices", "o_orderdate", first, after, "new_invoices"
            )
            con.execute("drop table new_invoices")
    start, end = window(context)
    params = [start, end]
    with warehouse.connect() as con:
        count, total = rows(
            con,
            "select count(*), coalesce(sum(total_cents), 0) from fulfillment.invoices "
            "where o_orderdate >= ? and o_orderdate < ?",
            params,
        )[0]
        yield window_result(
            con,
            "invoices",
            context,
            count,
            "o_orderdate desc, o_orderkey",
            chunks=len(chunked),
            invoiced_cents=int(total),
        )
        off = rows(con, TIE_OUT_SQL, params * 3)
        orders = rows(
            con,
            "select count(*) from staging.orders where o_orderdate >= ? and o_orderdate < ?",
            params,
        )[0][0]
    yield dg.AssetCheckResult(
        check_name="invoices_tie_out",
        passed=not off,
        metadata={
            "orders_in_window": orders,
            "days_off": [f"{d}: ordered {o}, invoiced {i}, back-ordered {b}" for d, o, i, b in off],
        },
    )
