"""The one calendar every order-date-dependent asset shares."""

import dagster as dg

HISTORY_START = "2020-01-01"

# Daily, UTC, from the first day of the store's history; a partition exists once its day is over.
daily_partitions = dg.DailyPartitionsDefinition(start_date=HISTORY_START, timezone="UTC")
