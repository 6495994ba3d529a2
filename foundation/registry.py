"""The names the layers share: asset groups (one per warehouse schema) and every asset's key.

An asset's key is [schema, table]: it names the warehouse table `<schema>.<table>` it writes.
"""

import dagster as dg

STAGING = "staging"
FULFILLMENT = "fulfillment"
ANALYTICS = "analytics"


def staging_key(name: str) -> dg.AssetKey:
    """The key of a staging asset, which is also its table `staging.<name>`."""
    return dg.AssetKey([STAGING, name])


def fulfillment_key(name: str) -> dg.AssetKey:
    """The key of a fulfillment asset, which is also its table `fulfillment.<name>`."""
    return dg.AssetKey([FULFILLMENT, name])


def analytics_key(name: str) -> dg.AssetKey:
    """The key of an analytics asset, which is also its table `analytics.<name>`."""
    return dg.AssetKey([ANALYTICS, name])


# The catalog (one asset per foundation.layout.CATALOG_TABLES) and the staged orders.
REGION_KEY = staging_key("region")
NATION_KEY = staging_key("nation")
SUPPLIER_KEY = staging_key("supplier")
CUSTOMER_KEY = staging_key("customer")
PART_KEY = staging_key("part")
PARTSUPP_KEY = staging_key("partsupp")
ORDERS_KEY = staging_key("orders")
LINEITEM_KEY = staging_key("lineitem")
ORDER_REJECTS_KEY = staging_key("order_rejects")

# The order-to-cash chain, in its order.
INVENTORY_STOCK_KEY = fulfillment_key("inventory_stock")
ALLOCATIONS_KEY = fulfillment_key("allocations")
BACKORDER_NOTICES_KEY = fulfillment_key("backorder_notices")
INVOICES_KEY = fulfillment_key("invoices")
SHIPMENTS_KEY = fulfillment_key("shipments")
COMPENSATIONS_KEY = fulfillment_key("compensations")
SHIPMENT_NOTIFICATIONS_KEY = fulfillment_key("shipment_notifications")
LEDGER_POSTINGS_KEY = fulfillment_key("ledger_postings")
RECONCILIATION_KEY = fulfillment_key("reconciliation")

# The marts and the report.
DAILY_SALES_KEY = analytics_key("daily_sales")
FULFILLMENT_KPIS_KEY = analytics_key("fulfillment_kpis")
ORDER_TIMELINE_KEY = analytics_key("order_timeline")
STEP_LATENCY_KEY = analytics_key("step_latency")
INVENTORY_HEALTH_KEY = analytics_key("inventory_health")
CUSTOMER_VALUE_KEY = analytics_key("customer_value")
PROFIT_BY_NATION_YEAR_KEY = analytics_key("profit_by_nation_year")
DAILY_REPORT_KEY = analytics_key("daily_report")
