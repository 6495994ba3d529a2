"""Alert sensors: an admin alert when a run fails, and when a blocking asset check fails.

Alerts go through the notifier resource (Maildir `.admin` folder by default, SMTP and a webhook
when configured). Each alert has an idempotency key (the run, or the check evaluation), so a
sensor tick that is retried never alerts twice.
"""

from datetime import UTC, datetime

import dagster as dg

from orchestration_defs import settings
from resources.notifier import NotifierResource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def _partition(tags) -> str:
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    if RANGE_START in tags:
        return f"{tags[RANGE_START]} .. {tags[RANGE_END]}"
    return "(not partitioned)"


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    description="Send an admin alert with the job, partition, failing steps, error and a link.",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, notifier: NotifierResource):
    """Alert an admin about a failed run."""
    run = context.dagster_run
    partition = _partition(run.tags)
    steps = [
        f"- {event.step_key}: {event.event_specific_data.error.message.strip()[:500]}"
        if event.event_specific_data and event.event_specific_data.error
        else f"- {event.step_key}"
        for event in context.get_step_failure_events()
    ]
    link = f"{settings.ui_url()}/runs/{run.run_id}"
    body = "\n".join(
        [
            f"Job: {run.job_name}",
            f"Partition: {partition}",
            f"Run: {run.run_id}",
            f"Error: {context.failure_event.message}",
            "Failing steps:",
            *(steps or ["- (none recorded: the run failed outside a step)"]),
            "",
            f"Open the run: {link}",
            "Re-execute it from the failed step once the cause is fixed: every step is idempotent.",
        ]
    )
    delivery = notifier.alert(
        f"run-failure:{run.run_id}",
        _today(),
        f"Run failed: {run.job_name} {partition}",
        body,
    )
    context.log.info(f"Alerted {notifier.admin_address} ({delivery.status}) about run {run.run_id}")


@dg.sensor(
    name="blocking_check_alert_sensor",
    description="Send an admin alert when a blocking asset check fails.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def blocking_check_alert_sensor(context: dg.SensorEvaluationContext, notifier: NotifierResource):
    """Alert an admin about every failed blocking asset check since the last tick."""
    if context.cursor is None:
        # First tick: start from now rather than alerting about the whole history.
        latest = context.instance.get_event_records(
            dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
            limit=1,
            ascending=False,
        )
        context.update_cursor(str(latest[0].storage_id if latest else 0))
        return dg.SkipReason("Started watching asset check evaluations.")
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(
            event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
            after_cursor=int(context.cursor),
        ),
        limit=500,
        ascending=True,
    )
    alerted = 0
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            continue
        if evaluation.passed or not evaluation.blocking:
            continue
        asset = evaluation.asset_key.to_user_string()
        details = "\n".join(
            f"{name}: {value.value}" for name, value in (evaluation.metadata or {}).items()
        )
        link = f"{settings.ui_url()}/runs/{record.run_id}"
        notifier.alert(
            f"check-failure:{record.storage_id}",
            _today(),
            f"Blocking check failed: {asset} {evaluation.check_name}",
            f"Asset: {asset}\nCheck: {evaluation.check_name}\n"
            f"Partition: {evaluation.partition or '(whole asset or range)'}\n{details}\n\n"
            f"Open the run: {link}",
        )
        alerted += 1
    if records:
        context.update_cursor(str(records[-1].storage_id))
    if not alerted:
        return dg.SkipReason(f"No failed blocking check among {len(records)} new evaluations.")
    return None
