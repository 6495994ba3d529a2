"""Declarative automation and freshness, applied to the asset groups here (wiring, not assets).

- The marts and the report refresh after their upstream changes, for every day that changed, not
  only the latest: `AutomationCondition.eager()` without its latest-time-window clause. Evaluated
  by `analytics_automation_sensor` (on by default), which emits one backfill when several days
  changed; the backfill runs the daily marts as one run per contiguous range of days (their
  `BackfillPolicy.single_run()`), then the whole-history marts and the report once.
- The order-to-cash assets carry a freshness policy: yesterday's orders staged and fulfilled by
  10:00 UTC (the schedule starts them at 00:15).
"""

from datetime import timedelta

import dagster as dg

from assets.analytics.report import DAILY_REPORT_KEY
from assets.staging.catalog import staging_catalog

ORDER_TO_CASH = dg.AssetSelection.groups("staging", "fulfillment")
ANALYTICS = dg.AssetSelection.groups("analytics")
CATALOG = dg.AssetSelection.assets(staging_catalog)

# A day's marts follow that day's staged and fulfilled rows. The catalog is ignored: it reloads
# with every staging run and only grows, so a reload changes no past day's figures, and as an
# unpartitioned parent it would otherwise mark every day of the history as changed.
DAILY_MARTS_CONDITION = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .ignore(CATALOG)
    .with_label("eager_every_changed_day")
)

# Whole-history marts and the report span all days: some day is always missing (today's open
# partition, days never loaded), so they must not wait for every upstream partition to exist.
WHOLE_HISTORY_CONDITION = (
    dg.AutomationCondition.eager()
    .without(dg.AutomationCondition.in_latest_time_window())
    .without(~dg.AutomationCondition.any_deps_missing())
    .with_label("eager_allow_missing")
)

# The report follows its marts. It reads staging only to find the latest order day; reacting to
# staging would run it while the day's fulfillment is still going, before the day's marts.
REPORT_CONDITION = WHOLE_HISTORY_CONDITION.ignore(ORDER_TO_CASH).with_label("after_its_marts")

# By 10:00 UTC every day, the latest materialisation must be at most 10 hours old.
ORDER_TO_CASH_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="0 10 * * *", lower_bound_delta=timedelta(hours=10)
)

analytics_automation_sensor = dg.AutomationConditionSensorDefinition(
    "analytics_automation_sensor",
    target=ANALYTICS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    # Several changed days become one backfill, run as the assets' backfill policies say (one
    # run per contiguous range of days), instead of a run per day.
    emit_backfills=True,
    description=(
        "Refreshes the marts for every day whose staging or fulfillment changed (one run per "
        "contiguous range of days), then the whole-history marts and the daily report."
    ),
)


def _analytics_condition(spec: dg.AssetSpec) -> dg.AssetSpec:
    if spec.key == DAILY_REPORT_KEY:
        condition = REPORT_CONDITION
    elif spec.partitions_def:
        condition = DAILY_MARTS_CONDITION
    else:
        condition = WHOLE_HISTORY_CONDITION
    return spec.replace_attributes(automation_condition=condition)


def with_automation(defs: dg.Definitions) -> dg.Definitions:
    """The definitions with automation on the analytics group and freshness on order-to-cash."""
    defs = defs.map_resolved_asset_specs(func=_analytics_condition, selection=ANALYTICS)
    return defs.map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(freshness_policy=ORDER_TO_CASH_FRESHNESS),
        selection=ORDER_TO_CASH,
    )
