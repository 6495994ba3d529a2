"""Jobs: named selections of asset groups that schedules, sensors and people launch."""

import dagster as dg

from foundation.partitions import daily_partitions
from foundation.registry import ANALYTICS, FULFILLMENT, STAGING

# Catalog + daily orders: the catalog reloads with each run so that new customers and parts
# are known before a day's orders are validated against them.
staging_job = dg.define_asset_job(
    name="staging_job",
    selection=dg.AssetSelection.groups(STAGING),
    partitions_def=daily_partitions,
    description="Load the catalog and stage a day's (or a range's) orders from the landing zone.",
)

# The order-to-cash chain after staging: inventory, notices, invoices, shipping, accounting.
fulfillment_job = dg.define_asset_job(
    name="fulfillment_job",
    selection=dg.AssetSelection.groups(FULFILLMENT),
    partitions_def=daily_partitions,
    description="Reserve, notify, invoice, ship, compensate and post a day's (or a range's) orders.",
)

# The marts and the daily report over what staging and fulfillment recorded.
analytics_job = dg.define_asset_job(
    name="analytics_job",
    selection=dg.AssetSelection.groups(ANALYTICS),
    description="Refresh the marts (a day's partitions, or a range) and the daily report.",
)

# The whole order-to-cash chain for a day: what the schedule and the landing-zone sensor launch.
order_to_cash_job = dg.define_asset_job(
    name="order_to_cash_job",
    selection=dg.AssetSelection.groups(STAGING, FULFILLMENT),
    partitions_def=daily_partitions,
    description="Stage a day's orders, then reserve, notify, invoice, ship and post them.",
)

# A run of fulfillment_job (or order_to_cash_job) tagged `orderflow/redecide=true` decides its days
# again under the rules in force, compensating what changes (README, "Business rules"); without it
# every day decided before keeps its decisions.
REDECIDE_TAG = "orderflow/redecide"
