"""Reconciliation: the warehouse's record of each day against the outside systems' own books.

Per order day it compares what fulfillment recorded with what the inventory system, the carrier
and the ledger say (counts and sums), stores every comparison in fulfillment.reconciliation, fails
its check and alerts an admin when any differ. It runs last in the daily order-to-cash run.
"""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import dagster as dg

from assets.fulfillment.common import calling, create_table, fulfillment_asset, rows, window
from assets.fulfillment.tables import RECONCILIATION
from assets.metadata import markdown_preview
from foundation.registry import (
    ALLOCATIONS_KEY,
    LEDGER_POSTINGS_KEY,
    RECONCILIATION_KEY,
    SHIPMENTS_KEY,
)
from resources.accounting import AccountingResource
from resources.carrier import CarrierResource
from resources.inventory import InventoryResource
from resources.notifier import NotifierResource
from resources.warehouse import WarehouseResource

FIX = "Check the system's configuration, then re-run reconciliation."
# The systems recount at once, one thread each, while the warehouse counts: their drivers release
# the GIL, so the audit waits for the longest recount, not the sum (bench/RESULTS.md, issue #3).
RECOUNT_THREADS = 3


def _ours(con, start, end) -> dict[tuple[str, str, str], int]:
    params = [start, end]
    values: dict[tuple[str, str, str], int] = {}
    for day, status, lines, quantity in rows(
        con,
        "select strftime(l_orderdate, '%Y-%m-%d'), status, count(*), sum(l_quantity) "
        "from fulfillment.allocations where l_orderdate >= ? and l_orderdate < ? group by 1, 2",
        params,
    ):
        values[(day, "inventory", f"{status}_lines")] = lines
        values[(day, "inventory", f"{status}_quantity")] = int(quantity)
    for day, status, orders in rows(
        con,
        "select strftime(o_orderdate, '%Y-%m-%d'), status, count(distinct o_orderkey) "
        "from fulfillment.shipments where o_orderdate >= ? and o_orderdate < ? group by 1, 2",
        params,
    ):
        values[(day, "carrier", f"{status}_orders")] = orders
    for day, account, debit, credit in rows(
        con,
        "select strftime(o_orderdate, '%Y-%m-%d'), account, sum(debit_cents), sum(credit_cents) "
        "from fulfillment.ledger_postings where o_orderdate >= ? and o_orderdate < ? group by 1, 2",
        params,
    ):
        values[(day, "accounting", f"{account}_debit_cents")] = int(debit)
        values[(day, "accounting", f"{account}_credit_cents")] = int(credit)
    return values


def _add_inventory(values: dict, by_day: dict) -> None:
    # The systems' rows recounted, not the totals they keep: an audit catches a changed row.
    for day, statuses in by_day.items():
        for status, (lines, quantity) in statuses.items():
            # A released line was reserved when allocated; the warehouse keeps that decision.
            decision = "reserved" if status == "released" else status
            for measure, value in (
                (f"{decision}_lines", lines),
                (f"{decision}_quantity", quantity),
            ):
                key = (day, "inventory", measure)
                values[key] = values.get(key, 0) + value


def _add_carrier(values: dict, by_day: dict) -> None:
    for day, statuses in by_day.items():
        for status, orders in statuses.items():
            values[(day, "carrier", f"{status}_orders")] = orders


def _add_accounting(values: dict, by_day: dict) -> None:
    for (day, account), (debit, credit) in by_day.items():
        values[(day, "accounting", f"{account}_debit_cents")] = debit
        values[(day, "accounting", f"{account}_credit_cents")] = credit


def _recount(pool, inventory, carrier, accounting, start, end) -> list:
    """Start the systems' recounts of the window: each system and each half of the window at once.

    The systems are separate databases and the halves hold separate days, so the scans (a full
    history's wait on the disk) overlap; SQLite and HTTP release the interpreter while they wait.
    """
    middle = start + (end - start) / 2
    halves = [(a.isoformat(), b.isoformat()) for a, b in ((start, middle), (middle, end)) if a < b]
    return [
        (add, pool.submit(recount, first, last))
        for first, last in halves
        for add, recount in (
            (_add_accounting, accounting.recount_day_totals),
            (_add_inventory, inventory.recount_reservations_by_day),
            (_add_carrier, carrier.shipments_by_day),
        )
    ]


@fulfillment_asset(
    RECONCILIATION_KEY,
    deps=[ALLOCATIONS_KEY, SHIPMENTS_KEY, LEDGER_POSTINGS_KEY],
    kinds=["sqlite"],
    checks={
        "systems_reconcile": "The warehouse, the inventory system, the carrier and the ledger agree.",
    },
)
def reconciliation(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    inventory: InventoryResource,
    carrier: CarrierResource,
    accounting: AccountingResource,
    notifier: NotifierResource,
):
    """Every per-day count and sum compared between the warehouse and the outside systems."""
    import pandas as pd

    start, end = window(context)
    with ThreadPoolExecutor(RECOUNT_THREADS) as pool:
        recounts = _recount(pool, inventory, carrier, accounting, start, end)
        with warehouse.connect() as con:
            ours = _ours(con, start, end)
        theirs: dict[tuple[str, str, str], int] = {}
        # The systems' faults surface here, where their results are awaited.
        with calling(context, "reconciliation", FIX):
            for add, pending in recounts:
                add(theirs, pending.result())
    frame = pd.DataFrame.from_records(
        [
            (day, system, measure, ours.get(k), theirs.get(k), ours.get(k) == theirs.get(k))
            for k in sorted(set(ours) | set(theirs))
            for day, system, measure in [k]
        ],
        columns=[name for name, _, _ in RECONCILIATION],
    )
    differing = frame[~frame["matches"]] if len(frame) else frame
    with warehouse.transaction() as con:
        create_table(con, "reconciliation", RECONCILIATION)
        con.execute(
            "delete from fulfillment.reconciliation where day >= ? and day < ?", [start, end]
        )
        if len(frame):
            con.register("compared", frame)
            con.execute(
                "insert into fulfillment.reconciliation select day::DATE, system, measure, "
                "warehouse_value, system_value, matches from compared"
            )
            con.unregister("compared")
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "discrepancies": len(differing),
                "discrepancy_list": markdown_preview(
                    con,
                    "select * from fulfillment.reconciliation where day >= ? and day < ? "
                    "and not matches order by day, system, measure limit 20",
                    [start, end],
                ),
            }
        )
    listed = [
        f"{r.day} {r.system} {r.measure}: warehouse {r.warehouse_value}, system {r.system_value}"
        for r in differing.itertuples(index=False)
    ]
    if listed:
        digest = hashlib.sha1("\n".join(listed).encode()).hexdigest()[:12]
        last_day = end - timedelta(days=1)
        notifier.alert(
            f"reconciliation:{start}:{end}:{digest}",
            last_day.isoformat(),
            f"Reconciliation found {len(listed)} discrepancies ({start} .. {last_day})",
            "\n".join(listed[:50]),
        )
    yield dg.AssetCheckResult(
        check_name="systems_reconcile",
        passed=not listed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"discrepancies": listed[:20], "discrepancy_count": len(listed)},
    )
