"""Accounting: every invoice and every credit note posted to the double-entry ledger, once.

One compound entry per document, posted on the order's day, amounts in cents:
- `invoice:<order>`      Dr receivable (total) / Cr revenue (net), Cr tax_payable (tax), and the
                         goods leaving stock: Dr cost_of_goods / Cr inventory (Σ ps_supplycost · qty)
- `credit_note:<order>`  the invoice reversed, for an order the carrier refused (the goods are back
                         in stock, so their cost is reversed with it)
An order re-decided with a change has an entry pair per revision r: `credit_note:<order>:r<r>`
reverses the invoice of revision r-1 and `invoice:<order>:r<r>` books revision r's reserved lines
(each when it has any), computed from the lines' statuses at each revision (allocations.history).
The accounting system keeps each entry key once, so re-runs post nothing twice. (Ledgers written
before the sale and its cost shared one entry also hold `cost_of_goods:` and `cost_reversal:`
entries; per day and account they add up to the same amounts.)
"""

import time
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg

from assets.fulfillment.common import (
    INVOICES_TABLE,
    calling,
    fulfillment_asset,
    read_frame,
    replace_chunks,
    rows,
    window,
    window_result,
)
from foundation.batches import chunks
from foundation.money import line_cents_sql, line_net_cents_sql, supply_cost_cents_sql
from foundation.registry import (
    ALLOCATIONS_KEY,
    COMPENSATIONS_KEY,
    INVOICES_KEY,
    LEDGER_POSTINGS_KEY,
    LINEITEM_KEY,
    PARTSUPP_KEY,
)
from resources.accounting import AccountingResource
from resources.warehouse import WarehouseResource

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Journal lines per call (a multiple of 5: batches end on an entry's last line).
POST_BATCH = 10_000_000
MONEY_COLUMNS = "net_cents as net, tax_cents as tax, total_cents as total, cost_cents as cost"
FIX = "Check the accounting system's configuration (resource `accounting`), then re-run the step."
# A re-decided order's invoice at each of its revisions: the lines reserved then.
REVISIONS_SQL = f"""
with decided as (
    select l_orderkey, l_linenumber, l_orderdate, revision as latest,
        list_append(string_split(history, ','), status) as statuses
    from fulfillment.allocations
    where l_orderdate >= ? and l_orderdate < ? and revision > 0
), by_revision as (
    select l_orderkey, l_linenumber, l_orderdate, latest, unnest(statuses) as status,
        unnest(range(len(statuses))) as revision
    from decided
)
select r.l_orderkey as o_orderkey, strftime(r.l_orderdate, '%Y-%m-%d') as day, r.revision,
    any_value(r.latest) as latest,
    sum({line_net_cents_sql("l.l_extendedprice", "l.l_discount")})::BIGINT as net,
    (sum({line_cents_sql("l.l_extendedprice", "l.l_discount", "l.l_tax")})
        - sum({line_net_cents_sql("l.l_extendedprice", "l.l_discount")}))::BIGINT as tax,
    sum({line_cents_sql("l.l_extendedprice", "l.l_discount", "l.l_tax")})::BIGINT as total,
    sum({supply_cost_cents_sql("ps.ps_supplycost", "l.l_quantity")})::BIGINT as cost
from by_revision r
join staging.lineitem l on l.l_orderkey = r.l_orderkey and l.l_linenumber = r.l_linenumber
join staging.partsupp ps on ps.ps_partkey = l.l_partkey and ps.ps_suppkey = l.l_suppkey
where r.status = 'reserved' and l.l_orderdate >= ? and l.l_orderdate < ?
group by r.l_orderkey, r.l_orderdate, r.revision
order by r.l_orderdate, r.l_orderkey, r.revision
"""  # noqa: S608 - the formulas are SQL from code; values are bound


# The lines of a sale's entry: (account, debit column, credit column) in the invoice's view.
SALE_LINES = (
    ("receivable", "total", None),
    ("revenue", None, "net"),
    ("tax_payable", None, "tax"),
    ("cost_of_goods", "cost", None),
    ("inventory", None, "cost"),
)


def _journal_lines(frame: "pd.DataFrame", reverse: bool) -> "pd.DataFrame":
    """Journal lines (LINE_COLUMNS) of the invoices' entries, or of their credit notes (sides swapped).

    Keyed `<kind>:<order>`, or by the frame's `entry_key` column when it has one.
    """
    import numpy as np
    import pandas as pd

    kind = "credit_note" if reverse else "invoice"
    count, width = len(frame), len(SALE_LINES)
    zero = np.zeros(count, dtype=np.int64)

    def amounts(side: int) -> "np.ndarray":
        columns = [
            zero if spec[side] is None else frame[spec[side]].to_numpy(dtype=np.int64)
            for spec in SALE_LINES
        ]
        return np.column_stack(columns).ravel() if count else np.zeros(0, dtype=np.int64)

    debit, credit = amounts(1), amounts(2)
    if reverse:
        debit, credit = credit, debit
    orders = frame["o_orderkey"].to_numpy(dtype=np.int64)
    keys = (
        frame["entry_key"]
        if "entry_key" in frame
        else kind + ":" + frame["o_orderkey"].astype("int64").astype(str)
    ).to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "entry_key": np.repeat(keys, width),
            "line_number": np.tile(np.arange(1, width + 1), count),
            "order_key": np.repeat(orders, width),
            "entry_day": np.repeat(frame["day"].to_numpy(dtype=object), width),
            "kind": kind,
            "account": np.tile(np.array([spec[0] for spec in SALE_LINES], dtype=object), count),
            "debit_cents": debit,
            "credit_cents": credit,
        }
    )


def _revision_entries(revisions: "pd.DataFrame") -> list["pd.DataFrame"]:
    """The entry pairs of re-decided orders: each revision's invoice, and the reversal of the last."""
    order = revisions["o_orderkey"].astype("int64").astype(str)
    first = revisions["revision"] == 0
    invoices = revisions.assign(
        entry_key="invoice:" + order + (":r" + revisions["revision"].astype(str)).where(~first, "")
    )
    replaced = revisions[revisions["revision"] < revisions["latest"]]
    credit_notes = replaced.assign(
        entry_key="credit_note:"
        + order[replaced.index]
        + ":r"
        + (replaced["revision"] + 1).astype(str)
    )
    return [_journal_lines(invoices, reverse=False), _journal_lines(credit_notes, reverse=True)]


@fulfillment_asset(
    LEDGER_POSTINGS_KEY,
    deps=[INVOICES_KEY, COMPENSATIONS_KEY, ALLOCATIONS_KEY, LINEITEM_KEY, PARTSUPP_KEY],
    kinds=["sqlite"],
    blocking_checks={
        "ledger_balances_per_day": "Per day, debits equal credits.",
        "revenue_equals_invoiced": "Per day, net revenue in the ledger = invoiced net − credit notes' net.",
        "matches_accounting_system": "Per day and account, the warehouse's postings equal the accounting system's.",
    },
)
def ledger_postings(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    accounting: AccountingResource,
):
    """The journal lines posted to the ledger for the window's invoices and credit notes."""
    import pandas as pd

    def post(start: date, end: date) -> tuple[pd.DataFrame, dict[str, float]]:
        # Re-decided orders' invoices come from their revisions below.
        invoiced, credited = (
            read_frame(
                warehouse,
                f"select o_orderkey, strftime(o_orderdate, '%Y-%m-%d') as day, {MONEY_COLUMNS} "  # noqa: S608
                f"from fulfillment.{table} where o_orderdate >= ? and o_orderdate < ?{only} "
                "order by o_orderdate, o_orderkey",
                [start, end],
            )
            for table, only in (
                ("invoices", " and coalesce(revision, 0) = 0"),
                ("compensations", ""),
            )
        )
        revisions = read_frame(warehouse, REVISIONS_SQL, [start, end] * 2)
        lines = pd.concat(
            [
                _journal_lines(invoiced, reverse=False),
                _journal_lines(credited, reverse=True),
                *_revision_entries(revisions),
            ],
            ignore_index=True,
        )
        started = time.perf_counter()
        with calling(context, "accounting", FIX):
            # Batches end on an entry boundary: every entry has 5 lines.
            posted = sum(accounting.post_frame(batch) for batch in chunks(lines, POST_BATCH))
        frame = lines.rename(columns={"order_key": "o_orderkey", "entry_day": "o_orderdate"})
        return frame, {
            "entries": int(lines["entry_key"].nunique()),
            "posted": posted,
            "seconds": time.perf_counter() - started,
        }

    # Orders counted in the invoices (one per order), which this step reads, to size its chunks.
    done = replace_chunks(context, warehouse, "ledger_postings", post, orders_from=INVOICES_TABLE)
    start, end = window(context)
    params = [start, end]
    started = time.perf_counter()
    with calling(context, "accounting", FIX):
        system_totals = accounting.day_totals(start.isoformat(), end.isoformat())
    seconds = done["seconds"] + time.perf_counter() - started
    context.log.info(f"Posted {done['posted']} new of {done['entries']} entries in {seconds:.1f} s")
    with warehouse.connect() as con:
        yield window_result(
            con,
            "ledger_postings",
            context,
            done["rows"],
            "o_orderdate desc, o_orderkey, entry_key, line_number",
            chunks=done["chunks"],
            preview_rows=6,
            entries=done["entries"],
            entries_posted_now=done["posted"],
            accounting_call_s=round(seconds, 3),
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
