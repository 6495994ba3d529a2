"""Inventory: stock seeded from the catalog, and every staged line reserved or back-ordered.

Allocation follows the business rules (rules.yaml): first come, first served by order date, order
key and line number, or each day's orders by priority first; a line the stock cannot cover is
back-ordered alone, or with its whole order. A run sends its window's lines to the inventory system
in that order, a chunk (a month) per call. The inventory system keeps the first decision for each
(order key, line number) with the rules version it was made under, so a re-run, a retry or a
backfill over days already allocated gets the same answers and reserves nothing twice, whatever
the rules say now. A run tagged `orderflow/redecide=true` decides its days again under the rules
in force: the inventory gives back what changed, and an order whose decisions change gets its next
revision, which the steps after this one answer with corrections, once.
"""

import time
from datetime import date

import dagster as dg

from assets.fulfillment.common import (
    GROUP,
    calling,
    copy_stock_levels,
    fulfillment_asset,
    read_frame,
    replace_chunks,
    rows,
    window,
    window_result,
)
from assets.metadata import result_with_preview
from foundation.batches import chunks
from foundation.jobs import REDECIDE_TAG
from foundation.money import line_cents_sql
from foundation.registry import (
    ALLOCATIONS_KEY,
    INVENTORY_STOCK_KEY,
    LINEITEM_KEY,
    ORDERS_KEY,
    PARTSUPP_KEY,
)
from resources.inventory import DECISION_COLUMNS, InventoryResource, StockItem, Terms
from resources.rules import RulesResource
from resources.warehouse import WarehouseResource

# Lines per call: a call decides whole arrays and rewrites the stock of every pair it touches,
# so a chunk of the window is one call (a month is 76 k lines at SF 1); each is one transaction.
RESERVE_BATCH = 10_000_000
# In the order the inventory decides them, by the rules' allocation order (module docstring);
# TPC-H's priorities sort as they rank, 1-URGENT first.
ALLOCATION_ORDER = {
    "fcfs": "l.l_orderdate, l.l_orderkey, l.l_linenumber",
    "priority": "l.l_orderdate, o.o_orderpriority, l.l_orderkey, l.l_linenumber",
}
LINES_SQL = f"""
select l.l_orderkey, l.l_linenumber, l.l_orderdate, strftime(l.l_orderdate, '%Y-%m-%d') as day,
    l.l_partkey, l.l_suppkey,
    l.l_quantity::INTEGER as l_quantity,
    {line_cents_sql("l.l_extendedprice", "l.l_discount", "l.l_tax")} as line_cents
from staging.lineitem l
left join staging.orders o
  on o.o_orderkey = l.l_orderkey and o.o_orderdate >= ? and o.o_orderdate < ?
where l.l_orderdate >= ? and l.l_orderdate < ?
order by {{order}}
"""  # noqa: S608 - the formula and the orders are SQL from code; values are bound
SEED_BATCH = 100_000
FIX = "Check the inventory system's configuration (resource `inventory`), then re-run the step."


@fulfillment_asset(
    INVENTORY_STOCK_KEY,
    deps=[PARTSUPP_KEY],
    kinds=["sqlite"],
    partitioned=False,
    checks={
        "stock_never_overcommitted": "No (part, supplier) has more reserved than its stock.",
    },
)
def inventory_stock(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, inventory: InventoryResource
):
    """Stock per (part, supplier) in the inventory system, seeded from partsupp, as last seen."""
    # Unpartitioned: the catalog is one table and seeding only adds pairs the inventory lacks
    # (existing stock is never reset), so it is safe to re-run at any time.
    supply = read_frame(
        warehouse,
        "select ps_partkey, ps_suppkey, ps_availqty from staging.partsupp order by 1, 2",
        [],
    )
    added = 0
    with calling(context, "inventory", FIX):
        # A batch's items at a time: SF 10's 8 M pairs as objects would take gigabytes.
        for start in range(0, len(supply), SEED_BATCH):
            batch = supply.iloc[start : start + SEED_BATCH].itertuples(index=False)
            added += inventory.seed_stock([StockItem(int(p), int(s), int(q)) for p, s, q in batch])
        overcommitted = inventory.overcommitted()
        with warehouse.transaction() as con:
            pairs, units = copy_stock_levels(con, inventory, f"{GROUP}.inventory_stock")
            context.log.info(f"Inventory knows {pairs} (part, supplier) pairs; {added} new")
            yield result_with_preview(
                con,
                pairs,
                f"select * from {GROUP}.inventory_stock order by available limit 5",  # noqa: S608
                pairs_added=added,
                units_available=units,
            )
    yield dg.AssetCheckResult(
        check_name="stock_never_overcommitted",
        passed=not overcommitted,
        metadata={"overcommitted_pairs": [f"{p}/{s}: {a}" for p, s, a in overcommitted]},
    )


@fulfillment_asset(
    ALLOCATIONS_KEY,
    deps=[LINEITEM_KEY, ORDERS_KEY, INVENTORY_STOCK_KEY],
    kinds=["sqlite"],
    blocking_checks={
        "every_line_allocated": "Every staged line of the window is reserved or back-ordered, once.",
        "matches_inventory_system": "Reserved and back-ordered lines per day agree with the inventory system.",
    },
)
def allocations(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    inventory: InventoryResource,
    rules: RulesResource,
):
    """Every staged order line with the inventory's decision (reserved or back-ordered) and its rules."""
    import pandas as pd

    allocation = rules.rules().allocation
    redecide = context.run.tags.get(REDECIDE_TAG, "").lower() == "true"
    terms = Terms(rules.version, whole_orders=allocation.backorder == "order", redecide=redecide)
    lines_sql = LINES_SQL.format(order=ALLOCATION_ORDER[allocation.order])
    context.log.info(
        f"Rules {rules.version} ({rules.file}): allocation by {allocation.order}, back-order "
        f"per {allocation.backorder}" + ("; re-deciding the window" if redecide else "")
    )

    def allocate(start: date, end: date) -> tuple[pd.DataFrame, dict[str, float]]:
        lines = read_frame(warehouse, lines_sql, [start, end] * 2)
        requests = pd.DataFrame(
            {
                "order_key": lines["l_orderkey"],
                "line_number": lines["l_linenumber"],
                "order_day": lines["day"],
                "partkey": lines["l_partkey"],
                "suppkey": lines["l_suppkey"],
                "quantity": lines["l_quantity"],
            }
        )
        lines = lines.drop(columns="day")
        started = time.perf_counter()
        with calling(context, "inventory", FIX):
            decisions = [inventory.decide_frame(b, terms) for b in chunks(requests, RESERVE_BATCH)]
        seconds = time.perf_counter() - started
        decided = (
            pd.concat(decisions, ignore_index=True)
            if decisions
            else pd.DataFrame(columns=list(DECISION_COLUMNS))
        )
        for column in DECISION_COLUMNS:
            lines[column] = decided[column].to_numpy()
        counts = lines["status"].value_counts()
        return lines, {
            "reserved": int(counts.get("reserved", 0)),
            "backordered": int(counts.get("backordered", 0)),
            "seconds": seconds,
        }

    done = replace_chunks(context, warehouse, "allocations", allocate, day_column="l_orderdate")
    context.log.info(f"Inventory decided {done['rows']} lines in {done['seconds']:.1f} s")
    start, end = window(context)
    params = [start, end]
    with calling(context, "inventory", FIX):
        summary = inventory.reservations_by_day(start.isoformat(), end.isoformat())
    with warehouse.connect() as con:
        yield window_result(
            con,
            "allocations",
            context,
            done["rows"],
            "status, l_orderdate desc, l_orderkey",
            chunks=done["chunks"],
            day_column="l_orderdate",
            lines_reserved=done["reserved"],
            lines_backordered=done["backordered"],
            backorder_rate=round(done["backordered"] / done["rows"], 4) if done["rows"] else 0.0,
            inventory_call_s=round(done["seconds"], 3),
            rules_version=rules.version,
            rules_file=rules.file,
            redecided=redecide,
            **_rules_in_window(con, params),
        )
        unallocated = rows(
            con,
            """
            select l.l_orderkey, l.l_linenumber from staging.lineitem l
            left join (select l_orderkey, l_linenumber, count(*) as n from fulfillment.allocations
                       where l_orderdate >= ? and l_orderdate < ? group by all) a
              using (l_orderkey, l_linenumber)
            where l.l_orderdate >= ? and l.l_orderdate < ? and a.n is distinct from 1
            order by 1, 2 limit 20
            """,
            params + params,
        )
        warehouse_days = rows(
            con,
            "select strftime(l_orderdate, '%Y-%m-%d'), status, count(*) from fulfillment.allocations"
            " where l_orderdate >= ? and l_orderdate < ? group by all",
            params,
        )
    yield dg.AssetCheckResult(
        check_name="every_line_allocated",
        passed=not unallocated,
        metadata={"unallocated_lines": [f"{o}:{n}" for o, n in unallocated]},
    )
    mismatches = _compare_with_inventory(warehouse_days, summary)
    yield dg.AssetCheckResult(
        check_name="matches_inventory_system",
        passed=not mismatches,
        metadata={"mismatched_days": mismatches[:20]},
    )


def _rules_in_window(con, params) -> dict[str, object]:
    """Lines per rules version they were decided under, and orders a re-decision changed."""
    window_sql = "from fulfillment.allocations where l_orderdate >= ? and l_orderdate < ?"
    versions = rows(
        con, f"select coalesce(rules_version, 'none'), count(*) {window_sql} group by 1", params
    )
    revised = rows(con, f"select count(distinct l_orderkey) {window_sql} and revision > 0", params)
    return {"lines_by_rules_version": dict(sorted(versions)), "orders_revised": revised[0][0]}


def _compare_with_inventory(warehouse_days, summary) -> list[str]:
    """Days whose reserved/back-ordered line counts differ between warehouse and inventory."""
    ours: dict[tuple[str, str], int] = {(day, status): n for day, status, n in warehouse_days}
    theirs: dict[tuple[str, str], int] = {}
    for day, statuses in summary.items():
        for status, (lines, _quantity) in statuses.items():
            # A released line was reserved when allocated (the shipment was then refused).
            decision = "reserved" if status == "released" else status
            theirs[(day, decision)] = theirs.get((day, decision), 0) + lines
    return [
        f"{day} {status}: warehouse {ours.get((day, status), 0)}, "
        f"inventory {theirs.get((day, status), 0)}"
        for day, status in sorted(set(ours) | set(theirs))
        if ours.get((day, status), 0) != theirs.get((day, status), 0)
    ]
