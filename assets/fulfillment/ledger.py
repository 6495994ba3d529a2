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
import numpy as np
import pandas as pd

from assets.fulfillment.common import (
    GROUP,
    OWNERS,
    asset_metadata,
    calling,
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
from resources.accounting import AccountingResource
from resources.warehouse import WarehouseResource

LEDGER_POSTINGS_KEY = key("ledger_postings")
# Journal lines per call (a multiple of 5: an invoice's and its cost entry's lines).
POST_BATCH = 10_000_000
FIX = "Check the accounting system's configuration (resource `accounting`), then re-run the step."


def _journal_lines(frame: pd.DataFrame, reverse: bool) -> pd.DataFrame:
    """Journal lines of the revenue and cost entries for invoices, or their reversals for credit notes.

    One row per line (LINE_COLUMNS of the accounting system), each entry's lines together and
    numbered from 1, entries in the frame's order.
    """
    revenue_kind, cost_kind = (
        ("credit_note", "cost_reversal") if reverse else ("invoice", "cost_of_goods")
    )
    zero = np.zeros(len(frame), dtype=np.int64)
    money = {c: frame[c].to_numpy(dtype=np.int64) for c in ("net", "tax", "total", "cost")}
    # (kind, line number, account, debit, credit) of the invoice's view; a reversal swaps sides.
    specs = (
        (revenue_kind, 1, "receivable", money["total"], zero),
        (revenue_kind, 2, "revenue", zero, money["net"]),
        (revenue_kind, 3, "tax_payable", zero, money["tax"]),
        (cost_kind, 1, "cost_of_goods", money["cost"], zero),
        (cost_kind, 2, "inventory", zero, money["cost"]),
    )
    orders = frame["o_orderkey"].astype("int64")
    order_text = orders.astype(str)
    parts = []
    for rank, (kind, number, account, debit, credit) in enumerate(specs):
        if reverse:
            debit, credit = credit, debit
        parts.append(
            pd.DataFrame(
                {
                    "entry_key": kind + ":" + order_text,
                    "line_number": number,
                    "order_key": orders,
                    "entry_day": frame["day"],
                    "kind": kind,
                    "account": account,
                    "debit_cents": debit,
                    "credit_cents": credit,
                    "position": np.arange(len(frame)),
                    "rank": rank,
                }
            )
        )
    lines = pd.concat(parts, ignore_index=True)
    lines = lines.iloc[np.lexsort((lines["rank"].to_numpy(), lines["position"].to_numpy()))]
    return lines.drop(columns=["position", "rank"]).reset_index(drop=True)


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
    money_columns = "net_cents as net, tax_cents as tax, total_cents as total, cost_cents as cost"
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
    lines = pd.concat(
        [_journal_lines(invoiced, reverse=False), _journal_lines(credited, reverse=True)],
        ignore_index=True,
    )
    entries = int(lines["entry_key"].nunique())
    started = time.perf_counter()
    posted = 0
    with calling(context, "accounting", FIX):
        for begin in range(0, len(lines), POST_BATCH):
            # Batches end on an entry boundary: every entry has 3 or 2 lines, in that order.
            posted += accounting.post_frame(lines[begin : begin + POST_BATCH])
        system_totals = accounting.day_totals(start.isoformat(), end.isoformat())
    seconds = time.perf_counter() - started
    frame = lines.rename(columns={"order_key": "o_orderkey", "entry_day": "o_orderdate"})
    context.log.info(f"Posted {posted} new of {entries} entries in {seconds:.1f} s")
    with warehouse.transaction() as con:
        replace_window(con, "ledger_postings", LEDGER_POSTINGS, "o_orderdate", start, end, frame)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "entries": entries,
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
