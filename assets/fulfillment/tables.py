"""Fulfillment tables: what each step did in an outside system, one definition for DDL and UI schema."""

from __future__ import annotations

from assets.metadata import column_schema

Columns = tuple[tuple[str, str, str], ...]

INVENTORY_STOCK: Columns = (
    ("partkey", "BIGINT", "Part (staging.part)."),
    ("suppkey", "BIGINT", "Supplier (staging.supplier)."),
    ("base_level", "INTEGER", "Level the supplier tops the stock up to every month."),
    ("available", "INTEGER", "Units available to reserve when this snapshot was taken."),
)

ALLOCATIONS: Columns = (
    ("l_orderkey", "BIGINT", "Order of the line."),
    ("l_linenumber", "INTEGER", "Line number within the order."),
    ("l_orderdate", "DATE", "The order's date (the partition)."),
    ("l_partkey", "BIGINT", "Part asked for."),
    ("l_suppkey", "BIGINT", "Supplier asked for."),
    ("l_quantity", "INTEGER", "Units asked for."),
    ("status", "VARCHAR", "reserved (stock set aside) or backordered (not enough stock)."),
    ("line_cents", "BIGINT", "The line's value with tax in cents, TPC-H arithmetic."),
    ("rules_version", "VARCHAR", "Version of the business rules the decision was made under."),
    ("revision", "INTEGER", "The order's revision: 0, then +1 each time a re-decision changed it."),
    ("history", "VARCHAR", "The line's statuses at the order's earlier revisions, oldest first."),
)

BACKORDER_NOTICES: Columns = (
    ("o_orderkey", "BIGINT", "Order with back-ordered lines."),
    ("o_orderdate", "DATE", "The order's date (the partition)."),
    ("recipient", "VARCHAR", "Customer's e-mail address."),
    ("lines", "INTEGER", "Lines back-ordered."),
    ("backordered_cents", "BIGINT", "Value of those lines with tax, in cents (not charged)."),
    ("message_key", "VARCHAR", "Idempotency key of the e-mail."),
    ("message_id", "VARCHAR", "Message-ID of the e-mail."),
    ("status", "VARCHAR", "sent or rejected (the recipient bounced)."),
    ("detail", "VARCHAR", "Why a message was rejected."),
    ("rules_version", "VARCHAR", "Rules version the order's lines were decided under."),
    ("revision", "INTEGER", "The order's revision it answers (0: its first decisions)."),
)

INVOICES: Columns = (
    ("invoice_number", "VARCHAR", "INV-<order key>, or INV-<order key>-R<revision> re-issued."),
    ("o_orderkey", "BIGINT", "Invoiced order."),
    ("o_orderdate", "DATE", "The order's date (the partition)."),
    ("o_custkey", "BIGINT", "Customer billed."),
    ("lines", "INTEGER", "Reserved lines invoiced."),
    ("net_cents", "BIGINT", "Revenue: Σ ⌊extendedprice·(1−discount)⌋ in cents."),
    ("tax_cents", "BIGINT", "Tax: total − net."),
    ("total_cents", "BIGINT", "Σ ⌊⌊extendedprice·(1−discount)⌋·(1+tax)⌋ in cents (receivable)."),
    ("cost_cents", "BIGINT", "Cost of the goods: Σ ps_supplycost · quantity in cents."),
    ("revision", "INTEGER", "The order's revision it answers (0: its first decisions)."),
)

SHIPMENTS: Columns = (
    ("o_orderkey", "BIGINT", "Order shipped (one consignment per order)."),
    ("l_linenumber", "INTEGER", "Line shipped."),
    ("o_orderdate", "DATE", "The order's date (the partition)."),
    ("status", "VARCHAR", "shipped, refused by the carrier, or cancelled (re-decided)."),
    ("tracking_number", "VARCHAR", "The carrier's tracking number (null when refused)."),
    ("ship_mode", "VARCHAR", "TPC-H ship mode of the line."),
    ("l_quantity", "INTEGER", "Units shipped."),
    ("ship_date", "DATE", "Day the carrier picks the consignment up."),
    ("delivery_date", "DATE", "Day the carrier delivers the line."),
    ("reason", "VARCHAR", "Why the carrier refused, when it did."),
    ("rules_version", "VARCHAR", "Rules version the order's lines were decided under."),
    ("revision", "INTEGER", "The order's revision it answers (0: its first decisions)."),
)

COMPENSATIONS: Columns = (
    ("o_orderkey", "BIGINT", "Order the carrier refused to ship."),
    ("o_orderdate", "DATE", "The order's date (the partition)."),
    ("reason", "VARCHAR", "The carrier's reason."),
    ("credit_note_number", "VARCHAR", "CN-<order key>: reverses invoice INV-<order key>."),
    ("net_cents", "BIGINT", "Revenue reversed, in cents."),
    ("tax_cents", "BIGINT", "Tax reversed, in cents."),
    ("total_cents", "BIGINT", "Receivable reversed, in cents."),
    ("cost_cents", "BIGINT", "Cost of goods reversed (goods back in stock), in cents."),
    ("lines_released", "INTEGER", "Reserved lines released back to stock."),
    ("customer_message_id", "VARCHAR", "Message-ID of the e-mail telling the customer."),
    ("customer_status", "VARCHAR", "sent or rejected."),
    ("admin_message_id", "VARCHAR", "Message-ID of the admin alert."),
)

SHIPMENT_NOTIFICATIONS: Columns = (
    ("o_orderkey", "BIGINT", "Order shipped."),
    ("o_orderdate", "DATE", "The order's date (the partition)."),
    ("tracking_number", "VARCHAR", "Tracking number told to the customer."),
    ("recipient", "VARCHAR", "Customer's e-mail address."),
    ("message_key", "VARCHAR", "Idempotency key of the e-mail."),
    ("message_id", "VARCHAR", "Message-ID of the e-mail."),
    ("status", "VARCHAR", "sent or rejected (the recipient bounced)."),
    ("detail", "VARCHAR", "Why a message was rejected."),
    ("revision", "INTEGER", "The order's revision it answers (0: its first decisions)."),
)

LEDGER_POSTINGS: Columns = (
    (
        "entry_key",
        "VARCHAR",
        "Idempotency key of the journal entry, e.g. invoice:<order key>[:r<n>].",
    ),
    ("line_number", "INTEGER", "Line within the entry."),
    ("o_orderkey", "BIGINT", "Order the entry is about."),
    ("o_orderdate", "DATE", "Day the entry is posted on: the order's date (the partition)."),
    ("kind", "VARCHAR", "invoice or credit_note (a sale with its cost, or its reversal)."),
    ("account", "VARCHAR", "receivable, revenue, tax_payable, cost_of_goods or inventory."),
    ("debit_cents", "BIGINT", "Debit in cents."),
    ("credit_cents", "BIGINT", "Credit in cents."),
)

RECONCILIATION: Columns = (
    ("day", "DATE", "Order date compared."),
    ("system", "VARCHAR", "inventory, carrier or accounting."),
    ("measure", "VARCHAR", "What is compared, e.g. reserved_lines or revenue_credit_cents."),
    ("warehouse_value", "BIGINT", "What the warehouse recorded."),
    ("system_value", "BIGINT", "What the outside system holds."),
    ("matches", "BOOLEAN", "Whether the two agree."),
)

PROCESSED_AT = (
    "processed_at",
    "TIMESTAMP",
    "When this step first recorded the row (UTC); kept when the window is re-run.",
)

# Natural key of each windowed table: a re-run keeps the first processed_at of every key.
KEYS = {
    "allocations": ("l_orderkey", "l_linenumber"),
    "backorder_notices": ("o_orderkey",),
    "invoices": ("o_orderkey",),
    "shipments": ("o_orderkey", "l_linenumber"),
    "compensations": ("o_orderkey",),
    "shipment_notifications": ("o_orderkey",),
    "ledger_postings": ("entry_key", "line_number"),
}
# Each table's columns; a windowed one (with KEYS) ends with processed_at.
TABLES: dict[str, Columns] = {
    name: columns + ((PROCESSED_AT,) if name in KEYS else ())
    for name, columns in {
        "inventory_stock": INVENTORY_STOCK,
        "allocations": ALLOCATIONS,
        "backorder_notices": BACKORDER_NOTICES,
        "invoices": INVOICES,
        "shipments": SHIPMENTS,
        "compensations": COMPENSATIONS,
        "shipment_notifications": SHIPMENT_NOTIFICATIONS,
        "ledger_postings": LEDGER_POSTINGS,
        "reconciliation": RECONCILIATION,
    }.items()
}
SCHEMAS = {name: column_schema(columns) for name, columns in TABLES.items()}
