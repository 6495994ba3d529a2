"""Compensations: a shipment the carrier refused, undone once.

The reservation is released, the invoice is reversed by credit note CN-<order> (posted by
`ledger_postings`), and the customer and an admin are told. The inventory system releases a line
once and every message is keyed by its order, so re-runs change nothing.
"""

import time
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg

from assets.fulfillment.common import (
    INVOICES_TABLE,
    calling,
    customer_email,
    fulfillment_asset,
    read_frame,
    replace_chunks,
    rows,
    window,
    window_result,
)
from foundation.money import money
from foundation.registry import COMPENSATIONS_KEY, CUSTOMER_KEY, INVOICES_KEY, SHIPMENTS_KEY
from resources.inventory import InventoryResource
from resources.notifier import Message, NotifierResource
from resources.warehouse import WarehouseResource

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd

REFUSED_SQL = """
select s.o_orderkey, strftime(s.o_orderdate, '%Y-%m-%d') as day, any_value(s.reason) as reason,
    list(s.l_linenumber order by s.l_linenumber) as line_numbers,
    any_value(i.net_cents) as net_cents, any_value(i.tax_cents) as tax_cents,
    any_value(i.total_cents) as total_cents, any_value(i.cost_cents) as cost_cents,
    any_value(c.c_name) as c_name
from fulfillment.shipments s
join fulfillment.invoices i on i.o_orderkey = s.o_orderkey
join staging.customer c on c.c_custkey = i.o_custkey
where s.o_orderdate >= ? and s.o_orderdate < ? and s.status = 'refused'
  and i.o_orderdate >= ? and i.o_orderdate < ?
group by s.o_orderkey, s.o_orderdate order by s.o_orderdate, s.o_orderkey
"""


@fulfillment_asset(
    COMPENSATIONS_KEY,
    deps=[SHIPMENTS_KEY, INVOICES_KEY, CUSTOMER_KEY],
    kinds=["sqlite", "email"],
    blocking_checks={
        "every_refusal_compensated": "Every refused shipment has its credit note, release and messages.",
    },
)
def compensations(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    inventory: InventoryResource,
    notifier: NotifierResource,
):
    """Refused shipments undone: reservation released, credit note issued, customer and admin told."""

    def compensate(start: date, end: date) -> "tuple[pd.DataFrame, dict[str, float]]":
        refused = read_frame(warehouse, REFUSED_SQL, [start, end] * 2)
        started = time.perf_counter()
        with calling(context, "inventory", "Check the inventory system (resource `inventory`)."):
            released = inventory.release(
                [
                    (int(order), int(line))
                    for order, numbers in zip(
                        refused["o_orderkey"], refused["line_numbers"], strict=True
                    )
                    for line in numbers
                ]
            )
        messages = [
            Message(
                key=f"refund:{order}",
                day=day,
                kind="refund",
                to=customer_email(name),
                subject=f"We could not ship your order {order}: credit note CN-{order}",
                body=(
                    f"Dear {name},\n\nThe carrier could not take your order {order} of {day} "
                    f"({reason}).\nWe have cancelled it and issued credit note CN-{order} for "
                    f"{money(int(total))}; nothing is owed.\n\nOrderflow"
                ),
            )
            for order, day, reason, name, total in zip(
                refused["o_orderkey"],
                refused["day"],
                refused["reason"],
                refused["c_name"],
                refused["total_cents"],
                strict=True,
            )
        ]
        with calling(context, "notifier", "Check the notifier (resource `notifier`)."):
            customer = {d.key: d for d in notifier.send(messages)}
            admin = {}
            for order, day, reason in zip(
                refused["o_orderkey"], refused["day"], refused["reason"], strict=True
            ):
                admin[order] = notifier.alert(
                    f"refused:{order}",
                    day,
                    f"Carrier refused order {order}",
                    f"The carrier refused the shipment of order {order} ({day}): {reason}.\n"
                    f"Compensated: reservation released, credit note CN-{order} issued, "
                    "customer told.",
                )
        seconds = time.perf_counter() - started
        frame = refused.drop(columns=["line_numbers", "c_name"]).rename(
            columns={"day": "o_orderdate"}
        )
        frame["credit_note_number"] = "CN-" + frame["o_orderkey"].astype(str)
        frame["lines_released"] = refused["line_numbers"].map(len)
        told = [customer[f"refund:{order}"] for order in refused["o_orderkey"]]
        frame["customer_message_id"] = [delivery.message_id for delivery in told]
        frame["customer_status"] = [delivery.status for delivery in told]
        frame["admin_message_id"] = [admin[order].message_id for order in refused["o_orderkey"]]
        return frame, {"released": released, "seconds": seconds}

    # Orders counted in the invoices (one per order), which this step reads, to size its chunks.
    done = replace_chunks(
        context, warehouse, "compensations", compensate, orders_from=INVOICES_TABLE
    )
    context.log.info(
        f"Compensated {done['rows']} refused orders; {done['released']} lines released now"
    )
    params = list(window(context))
    with warehouse.connect() as con:
        yield window_result(
            con,
            "compensations",
            context,
            done["rows"],
            "o_orderdate desc, o_orderkey",
            chunks=done["chunks"],
            lines_released_now=done["released"],
            inventory_and_notifier_call_s=round(done["seconds"], 3),
        )
        missing = rows(
            con,
            """
            select distinct s.o_orderkey from fulfillment.shipments s
            left join fulfillment.compensations c on c.o_orderkey = s.o_orderkey
            where s.o_orderdate >= ? and s.o_orderdate < ? and s.status = 'refused'
              and (c.o_orderkey is null or c.admin_message_id is null)
            order by 1 limit 20
            """,
            params,
        )
    yield dg.AssetCheckResult(
        check_name="every_refusal_compensated",
        passed=not missing,
        metadata={"uncompensated_orders": [row[0] for row in missing]},
    )
