"""Schedules: the order-to-cash chain for yesterday, every day shortly after midnight UTC."""

from datetime import UTC, timedelta

import dagster as dg

from foundation.jobs import order_to_cash_job


# Not build_schedule_from_partitioned_job: with today's partition open (end_offset=1) that would
# target today; the day to close at 00:15 is the one that just ended.
@dg.schedule(
    name="order_to_cash_schedule",
    job=order_to_cash_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Stage and fulfil yesterday's orders (the day that just closed) at 00:15 UTC.",
)
def order_to_cash_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Request yesterday's partition of the order-to-cash job."""
    day = (context.scheduled_execution_time.astimezone(UTC) - timedelta(days=1)).date()
    return dg.RunRequest(run_key=f"order_to_cash_schedule:{day}", partition_key=day.isoformat())
