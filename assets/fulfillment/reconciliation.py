"""Reconciliation: the warehouse's record of each day against the outside systems' own books.

Per order day it compares what fulfillment recorded with what the inventory system, the carrier
and the ledger say (counts and sums), stores every comparison in fulfillment.reconciliation, fails
its check and alerts an admin when any differ by more than the rules' tolerance. It also alerts when
a day's back-order rate or on-time rate passes the rules' threshold (rules.yaml, `alerts`). It runs
last in the daily order-to-cash run.
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
    LINEITEM_KEY,
    RECONCILIATION_KEY,
    SHIPMENTS_KEY,
)
from resources.accounting import AccountingResource
from resources.carrier import CarrierResource
from resources.inventory import InventoryResource
from resources.notifier import NotifierResource
from resources.rules import RulesResource
from resources.warehouse import WarehouseResource

FIX = "Check the system's configuration, then re-run reconciliation."
# The systems recount at once, one thread each, while the warehouse counts: their drivers release
# the GIL, so the audit waits for the longest recount, not the sum (bench/RESULTS.md, issue #3).
RECOUNT_THREADS = 3
# Per day: back-ordered lines / lines, and shipped lines delivered by their commit date / shipped.
RATES_SQL = """
select strftime(a.l_orderdate, '%Y-%m-%d') as day,
    count(*) filter (where a.status = 'backordered') / count(*) as backorder_rate,
    avg(case when s.delivery_date <= l.l_commitdate then 1.0 else 0.0 end)
        filter (where s.status = 'shipped') as on_time_rate
from fulfillment.allocations a
join staging.lineitem l on l.l_orderkey = a.l_orderkey and l.l_linenumber = a.l_linenumber
left join fulfillment.shipments s
  on s.o_orderkey = a.l_orderkey and s.l_linenumber = a.l_linenumber
 and s.o_orderdate >= ? and s.o_orderdate < ?
where a.l_orderdate >= ? and a.l_orderdate < ? and l.l_orderdate >= ? and l.l_orderdate < ?
group by 1 order by 1
"""


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


def _agree(ours: int | None, theirs: int | None, tolerance: float) -> bool:
    """Whether two values agree within a relative tolerance (0: exactly); a missing one never does."""
    if ours is None or theirs is None:
        return ours == theirs
    return abs(ours - theirs) <= tolerance * max(abs(ours), abs(theirs))


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
    deps=[ALLOCATIONS_KEY, SHIPMENTS_KEY, LEDGER_POSTINGS_KEY, LINEITEM_KEY],
    kinds=["sqlite"],
    checks={
        "systems_reconcile": "The warehouse, the inventory system, the carrier and the ledger agree.",
        "backorder_rate_within_threshold": "No day back-orders more lines than rules.yaml allows.",
        "on_time_rate_within_threshold": "No day delivers fewer lines on time than rules.yaml wants.",
    },
)
def reconciliation(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    inventory: InventoryResource,
    carrier: CarrierResource,
    accounting: AccountingResource,
    notifier: NotifierResource,
    rules: RulesResource,
):
    """Every per-day count and sum compared between the warehouse and the outside systems."""
    import pandas as pd

    alerts = rules.rules().alerts
    start, end = window(context)
    with ThreadPoolExecutor(RECOUNT_THREADS) as pool:
        recounts = _recount(pool, inventory, carrier, accounting, start, end)
        with warehouse.connect() as con:
            ours = _ours(con, start, end)
            rates = rows(con, RATES_SQL, [start, end] * 3)
        theirs: dict[tuple[str, str, str], int] = {}
        # The systems' faults surface here, where their results are awaited.
        with calling(context, "reconciliation", FIX):
            for add, pending in recounts:
                add(theirs, pending.result())
    frame = pd.DataFrame.from_records(
        [
            (
                day,
                system,
                measure,
                ours.get(k),
                theirs.get(k),
                _agree(ours.get(k), theirs.get(k), alerts.reconciliation_tolerance),
            )
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
                "reconciliation_tolerance": alerts.reconciliation_tolerance,
                "rules_version": rules.version,
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
    high = [(d, b) for d, b, _ in rates if _past(b, alerts.max_backorder_rate, above=True)]
    late = [(d, o) for d, _, o in rates if _past(o, alerts.min_on_time_rate, above=False)]
    for check, measure, days, threshold in (
        ("backorder_rate_within_threshold", "back-order rate", high, alerts.max_backorder_rate),
        ("on_time_rate_within_threshold", "on-time rate", late, alerts.min_on_time_rate),
    ):
        listed = [f"{day}: {measure} {rate:.3f}" for day, rate in days]
        if listed:
            _alert_rates(notifier, measure, threshold, start, end, listed, rules.version)
        yield dg.AssetCheckResult(
            check_name=check,
            passed=not listed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"threshold": "none" if threshold is None else threshold, "days": listed[:20]},
        )


def _past(rate: float | None, threshold: float | None, above: bool) -> bool:
    """Whether a day's rate is past its threshold (none set, or no rate that day: never)."""
    if rate is None or threshold is None:
        return False
    return rate > threshold if above else rate < threshold


def _alert_rates(notifier, measure, threshold, start, end, listed, version) -> None:
    """One admin alert per window and content: a rerun of the same days alerts nothing twice."""
    digest = hashlib.sha1("\n".join(listed).encode()).hexdigest()[:12]
    last_day = end - timedelta(days=1)
    notifier.alert(
        f"{measure.replace(' ', '-')}:{start}:{end}:{digest}",
        last_day.isoformat(),
        f"{len(listed)} days past the {measure} threshold {threshold} ({start} .. {last_day})",
        "\n".join([*listed[:50], "", f"Thresholds: rules.yaml, alerts (rules {version})."]),
    )
