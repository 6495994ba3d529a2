"""Staging tables: TPC-H names and types, one definition feeding the DDL and the UI's column schema."""

from __future__ import annotations

from assets.metadata import column_schema

Columns = tuple[tuple[str, str, str], ...]

ORDERS: Columns = (
    ("o_orderkey", "BIGINT", "Order key, unique across the history."),
    ("o_custkey", "BIGINT", "Customer who placed the order (staging.customer)."),
    ("o_orderstatus", "VARCHAR", "F (all lines fulfilled), O (open) or P (partly)."),
    ("o_totalprice", "DECIMAL(15,2)", "Order total; equals the sum of its lines to the cent."),
    ("o_orderdate", "DATE", "Day the order was placed (the partition)."),
    ("o_orderpriority", "VARCHAR", "Priority, e.g. 1-URGENT."),
    ("o_clerk", "VARCHAR", "Clerk who took the order."),
    ("o_shippriority", "INTEGER", "Shipping priority."),
    ("o_comment", "VARCHAR", "Free text."),
)

LINEITEM: Columns = (
    ("l_orderkey", "BIGINT", "Order the line belongs to."),
    ("l_partkey", "BIGINT", "Part ordered (staging.part)."),
    ("l_suppkey", "BIGINT", "Supplier chosen for the part (staging.partsupp)."),
    ("l_linenumber", "INTEGER", "Line number within the order, from 1."),
    ("l_quantity", "DECIMAL(15,2)", "Quantity ordered."),
    ("l_extendedprice", "DECIMAL(15,2)", "Quantity times the part's retail price."),
    ("l_discount", "DECIMAL(15,2)", "Discount as a fraction, e.g. 0.04."),
    ("l_tax", "DECIMAL(15,2)", "Tax as a fraction, e.g. 0.02."),
    ("l_commitdate", "DATE", "Delivery date promised to the customer."),
    ("l_shipinstruct", "VARCHAR", "Shipping instruction."),
    ("l_shipmode", "VARCHAR", "Ship mode, e.g. AIR or TRUCK."),
    ("l_comment", "VARCHAR", "Free text."),
    ("l_orderdate", "DATE", "The order's date (not a TPC-H column): the partition key."),
)

ORDER_REJECTS: Columns = (
    ("batch_day", "DATE", "Day directory of the batch the record came in (the partition)."),
    ("source_file", "VARCHAR", "Batch file, relative to landing/orders."),
    ("line_number", "INTEGER", "Line of the record in the file, from 1."),
    ("o_orderkey", "BIGINT", "Order key when it could be read, else null."),
    ("reason", "VARCHAR", "Every reason the record was rejected, separated by '; '."),
    ("raw_text", "VARCHAR", "The record as received (bad bytes shown as \\x escapes)."),
)

# Catalog tables are copied from the order system's Parquet files with TPC-H's types.
CATALOG_DESCRIPTIONS = {
    "region": "The five regions of the world the store sells to (TPC-H region).",
    "nation": "The 25 nations customers and suppliers live in (TPC-H nation).",
    "supplier": "The store's suppliers (TPC-H supplier).",
    "customer": "The store's customers with their nation and market segment (TPC-H customer).",
    "part": "The parts the store sells, with retail prices (TPC-H part).",
    "partsupp": "Which supplier offers which part, its stock and supply cost (TPC-H partsupp).",
}
CATALOG_KEYS = {
    "region": ("r_regionkey",),
    "nation": ("n_nationkey",),
    "supplier": ("s_suppkey",),
    "customer": ("c_custkey",),
    "part": ("p_partkey",),
    "partsupp": ("ps_partkey", "ps_suppkey"),
}


def create_table_sql(schema: str, table: str, columns: Columns) -> str:
    """DDL for a table whose identifiers all come from this module."""
    body = ", ".join(f"{name} {sql_type}" for name, sql_type, _ in columns)
    return f"create table if not exists {schema}.{table} ({body})"


orders_schema = column_schema(ORDERS)
lineitem_schema = column_schema(LINEITEM)
order_rejects_schema = column_schema(ORDER_REJECTS)
