"""Accounting: every invoice and every credit note posted to the double-entry ledger, once.

Entries, posted on the order's day, amounts in cents:
- `invoice:<order>`        Dr receivable (total)  / Cr revenue (net), Cr tax_payable (tax)
- `cost_of_goods:<order>`  Dr cost_of_goods       / Cr inventory (Σ ps_supplycost · quantity)
- `credit_note:<order>`    the invoice reversed, for an order the carrier refused
- `cost_reversal:<order>`  the cost of goods reversed (the goods are back in stock)
The accounting system keeps each entry key once, so re-runs post nothing twice.
"""

import time

import dagster as dg
import pandas as pd

from assets.fulfillment.common import (
    GROUP,
    OWNERS,
    asset_metadata,
    calling,
    chunks,
    key,
    read_frame,
    replace_window,
    retry_policy,
    rows,
    window,
)
from assets.fulfillment.invoices import INVOICES_KEY
from assets.fulfillment.shipments import COMPENSATIONS_KEY
from assets.fulfillment.tables import LEDGER_POSTINGS
from assets.metadata import markdown_preview
from orchestration_defs.partitions import daily_partitions
from resources.accounting import AccountingResource, JournalEntry, JournalLine
from resources.warehouse import WarehouseResource

LEDGER_POSTINGS_KEY = key("ledger_postings")
POST_BATCH = 20_000
FIX = "Check the accounting system's configuration (resource `accounting`), then re-run the step."


def _entries(frame: pd.DataFrame, reverse: bool) -> list[JournalEntry]:
    """Revenue and cost entries for invoices, or their reversals for credit notes."""
    revenue_kind, cost_kind = (
        ("credit_note", "cost_reversal") if reverse else ("invoice", "cost_of_goods")
    )
    entries = []
    for order, day, net, tax, total, cost in zip(
        frame["o_orderkey"].tolist(),
        frame["day"].tolist(),
        frame["net_cents"].tolist(),
        frame["tax_cents"].tolist(),
        frame["total_cents"].tolist(),
        frame["cost_cents"].tolist(),
        strict=True,
    ):
        revenue = (
            JournalLine("receivable", total, 0),
            JournalLine("revenue", 0, net),
            JournalLine("tax_payable", 0, tax),
        )
        goods = (JournalLine("cost_of_goods", cost, 0), JournalLine("inventory", 0, cost))
        if reverse:
            revenue = tuple(JournalLine(x.account, x.credit_cents, x.debit_cents) for x in revenue)
            goods = tuple(JournalLine(x.account, x.credit_cents, x.debit_cents) for x in goods)
        entries.append(JournalEntry(f"{revenue_kind}:{order}", day, revenue_kind, order, revenue))
        entries.append(JournalEntry(f"{cost_kind}:{order}", day, cost_kind, order, goods))
    return entries


@dg.asset(
    key=LEDGER_POSTINGS_KEY,
    deps=[INVOICES_KEY, COMPENSATIONS_KEY],
    group_name=GROUP,
    kinds={"duckdb", "sqlite"},
    owners=OWNERS,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    retry_policy=retry_policy(),
    metadata=asset_metadata("ledger_postings"),
    check_specs=[
        dg.AssetCheckSpec(
            "ledger_balances_per_day",
            asset=LEDGER_POSTINGS_KEY,
            blocking=True,
            description="Per day, debits equal credits.",
        ),
        dg.AssetCheckSpec(
            "revenue_equals_invoiced",
            asset=LEDGER_POSTINGS_KEY,
            blocking=True,
            description="Per day, net revenue in the ledger = invoiced net − credit notes' net.",
        ),
        dg.AssetCheckSpec(
            "matches_accounting_system",
            asset=LEDGER_POSTINGS_KEY,
            blocking=True,
            description="Per day and account, the warehouse's postings equal the accounting system's.",
        ),
    ],
)
def ledger_postings(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    accounting: AccountingResource,
):
    """The journal lines posted to the ledger for the window's invoices and credit notes."""
    start, end = window(context)
    params = [start, end]
    money_columns = "net_cents, tax_cents, total_cents, cost_cents"
    invoiced = read_frame(
        warehouse,
        f"select o_orderkey, strftime(o_orderdate, '%Y-%m-%d') as day, {money_columns} "  # noqa: S608
        "from fulfillment.invoices where o_orderdate >= ? and o_orderdate < ? "
        "order by o_orderdate, o_orderkey",
        params,
    )
    credited = read_frame(
        warehouse,
        f"select o_orderkey, strftime(o_orderdate, '%Y-%m-%d') as day, {money_columns} "  # noqa: S608
        "from fulfillment.compensations where o_orderdate >= ? and o_orderdate < ? "
        "order by o_orderdate, o_orderkey",
        params,
    )
    entries = _entries(invoiced, reverse=False) + _entries(credited, reverse=True)
    started = time.perf_counter()
    posted = 0
    with calling(context, "accounting", FIX):
        for batch in chunks(entries, POST_BATCH):
            posted += accounting.post(batch)
        system_totals = accounting.day_totals(start.isoformat(), end.isoformat())
    seconds = time.perf_counter() - started
    frame = pd.DataFrame.from_records(
        [
            (
                entry.key,
                number,
                entry.order_key,
                entry.day,
                entry.kind,
                line.account,
                line.debit_cents,
                line.credit_cents,
            )
            for entry in entries
            for number, line in enumerate(entry.lines, start=1)
        ],
        columns=[name for name, _, _ in LEDGER_POSTINGS[:-1]],
    )
    context.log.info(f"Posted {posted} new of {len(entries)} entries in {seconds:.1f} s")
    with warehouse.transaction() as con:
        replace_window(con, "ledger_postings", LEDGER_POSTINGS, "o_orderdate", start, end, frame)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "entries": len(entries),
                "entries_posted_now": posted,
                "accounting_call_s": round(seconds, 3),
                "preview": markdown_preview(
                    con,
                    "select * from fulfillment.ledger_postings where o_orderdate >= ? "
                    "and o_orderdate < ? order by o_orderdate desc, o_orderkey, entry_key, "
                    "line_number limit 6",
                    params,
                ),
            }
        )
        unbalanced = rows(
            con,
            "select strftime(o_orderdate, '%Y-%m-%d'), sum(debit_cents), sum(credit_cents) "
            "from fulfillment.ledger_postings where o_orderdate >= ? and o_orderdate < ? "
            "group by 1 having sum(debit_cents) <> sum(credit_cents) order by 1 limit 20",
            params,
        )
        revenue_off = rows(
            con,
            """
            with ledger as (
                select o_orderdate, sum(credit_cents) - sum(debit_cents) as revenue
                from fulfillment.ledger_postings
                where o_orderdate >= ? and o_orderdate < ? and account = 'revenue' group by 1),
            invoiced as (
                select o_orderdate, sum(net_cents) as net from fulfillment.invoices
                where o_orderdate >= ? and o_orderdate < ? group by 1),
            credited as (
                select o_orderdate, sum(net_cents) as net from fulfillment.compensations
                where o_orderdate >= ? and o_orderdate < ? group by 1)
            select strftime(coalesce(l.o_orderdate, i.o_orderdate), '%Y-%m-%d'),
                coalesce(l.revenue, 0), coalesce(i.net, 0) - coalesce(c.net, 0)
            from ledger l full join invoiced i using (o_orderdate)
            left join credited c on c.o_orderdate = coalesce(l.o_orderdate, i.o_orderdate)
            where coalesce(l.revenue, 0) <> coalesce(i.net, 0) - coalesce(c.net, 0)
            order by 1 limit 20
            """,
            params * 3,
        )
        warehouse_totals = rows(
            con,
            "select strftime(o_orderdate, '%Y-%m-%d'), account, sum(debit_cents), "
            "sum(credit_cents) from fulfillment.ledger_postings "
            "where o_orderdate >= ? and o_orderdate < ? group by 1, 2",
            params,
        )
    yield dg.AssetCheckResult(
        check_name="ledger_balances_per_day",
        passed=not unbalanced,
        metadata={"unbalanced_days": [f"{d}: Dr {dr} Cr {cr}" for d, dr, cr in unbalanced]},
    )
    yield dg.AssetCheckResult(
        check_name="revenue_equals_invoiced",
        passed=not revenue_off,
        metadata={
            "days_off": [f"{d}: ledger {got}, invoiced {want}" for d, got, want in revenue_off]
        },
    )
    ours = {(d, a): (int(dr), int(cr)) for d, a, dr, cr in warehouse_totals}
    differing = sorted(
        f"{d} {a}: warehouse {ours.get((d, a))}, accounting {system_totals.get((d, a))}"
        for d, a in set(ours) | set(system_totals)
        if ours.get((d, a)) != system_totals.get((d, a))
    )
    yield dg.AssetCheckResult(
        check_name="matches_accounting_system",
        passed=not differing,
        metadata={"differences": differing[:20]},
    )
