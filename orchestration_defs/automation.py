"""Declarative automation and freshness, applied to the asset groups here (wiring, not assets).

- The marts and the report refresh through `AutomationCondition.eager()`: after their upstream
  partitions update, evaluated by `analytics_automation_sensor`, which is on by default.
- The order-to-cash assets carry a freshness policy: yesterday's orders staged and fulfilled by
  10:00 UTC (the schedule starts them at 00:15).
"""

from datetime import timedelta

import dagster as dg

ORDER_TO_CASH = dg.AssetSelection.groups("staging", "fulfillment")
ANALYTICS = dg.AssetSelection.groups("analytics")

# By 10:00 UTC every day, the latest materialisation must be at most 10 hours old.
ORDER_TO_CASH_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 10 * * *", lower_bound_delta=timedelta(hours=10)
)

analytics_automation_sensor = dg.AutomationConditionSensorDefinition(
    "analytics_automation_sensor",
    target=ANALYTICS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes the marts and the report after their upstream partitions update.",
)


def with_automation(defs: dg.Definitions) -> dg.Definitions:
    """The definitions with eager automation on the analytics group and freshness on order-to-cash."""
    defs = defs.map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(
            automation_condition=dg.AutomationCondition.eager()
        ),
        selection=ANALYTICS,
    )
    return defs.map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(freshness_policy=ORDER_TO_CASH_FRESHNESS),
        selection=ORDER_TO_CASH,
    )
