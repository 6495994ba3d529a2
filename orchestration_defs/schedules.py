"""Schedules: the order-to-cash chain for yesterday, every day shortly after midnight UTC."""

import dagster as dg

from orchestration_defs.jobs import order_to_cash_job

# Built from the partitioned job, so each tick targets the partition that just closed
# (at 00:15 on day D, partition D-1) and the UI shows the schedule's partitions.
order_to_cash_schedule = dg.build_schedule_from_partitioned_job(
    order_to_cash_job,
    name="order_to_cash_schedule",
    description="Stage and fulfil yesterday's orders at 00:15 UTC.",
    hour_of_day=0,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
