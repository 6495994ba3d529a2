"""The one calendar every order-date-dependent asset shares."""

import dagster as dg

HISTORY_START = "2020-01-01"

# Daily, UTC, from the first day of the store's history. Today's partition is open
# (end_offset=1): batches landing during the day run as they arrive (landing-zone sensor), and
# the schedule runs the day once more after it closes. Every step is idempotent, so re-running
# a day as it fills up is safe.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=HISTORY_START, timezone="UTC", end_offset=1
)

# The tags of a run over a range of days (a single-run backfill), as Dagster names them; dagster
# has no public constants for them.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
