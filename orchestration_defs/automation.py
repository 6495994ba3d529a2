"""Freshness, applied to the order-to-cash groups here (wiring, not assets).

The order-to-cash assets carry a freshness policy: yesterday's orders staged and fulfilled by
10:00 UTC (the schedule starts them at 00:15). The marts follow their upstream through
`analytics_automation_sensor` (sensors/analytics.py), not through automation conditions: a
condition is evaluated per asset and partition at each tick, so a backfill still running (its
events written one by one) would be refreshed in pieces, several runs per backfill.
"""

from datetime import timedelta

import dagster as dg

from foundation.registry import FULFILLMENT, STAGING

ORDER_TO_CASH = dg.AssetSelection.groups(STAGING, FULFILLMENT)

# By 10:00 UTC every day, the latest materialisation must be at most 10 hours old.
ORDER_TO_CASH_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 10 * * *", lower_bound_delta=timedelta(hours=10)
)


def with_automation(defs: dg.Definitions) -> dg.Definitions:
    """The definitions with the freshness policy on the order-to-cash assets."""
    return defs.map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(freshness_policy=ORDER_TO_CASH_FRESHNESS),
        selection=ORDER_TO_CASH,
    )
