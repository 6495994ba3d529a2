"""Alert sensors: an admin alert when a run fails, and when a blocking asset check fails.

Alerts go through the notifier resource (Maildir `.admin` folder by default, SMTP and a webhook
when configured). Both watch failed runs through Dagster's run-status records, which every
instance storage serves (run-sharded SQLite too). Each alert has an idempotency key (the run, or
the run and the check), so a sensor tick that is retried never alerts twice.
"""

from datetime import UTC, datetime

import dagster as dg

from foundation import settings
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG
from resources.notifier import NotifierResource


def _partition(tags) -> str:
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]} .. {tags[RANGE_END_TAG]}"
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


@dg.run_failure_sensor(
    name="blocking_check_alert_sensor",
    description="Send an admin alert for every blocking asset check that failed in a failed run.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def blocking_check_alert_sensor(context: dg.RunFailureSensorContext, notifier: NotifierResource):
    """Alert an admin about each failed blocking asset check of a failed run."""
    # A failed blocking check (ERROR severity) fails its step, hence its run: watching failed runs
    # through the run-status records sees every one of them, on every event log storage.
    run = context.dagster_run
    records = context.instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = [record.event_log_entry.dagster_event.event_specific_data for record in records]
    failed = [e for e in evaluations if not e.passed and e.blocking]
    link = f"{settings.ui_url()}/runs/{run.run_id}"
    for evaluation in failed:
        asset = evaluation.asset_key.to_user_string()
        details = "\n".join(
            f"{name}: {value.value}" for name, value in (evaluation.metadata or {}).items()
        )
        partition = evaluation.partition or _partition(run.tags)
        notifier.alert(
            f"check-failure:{run.run_id}:{asset}:{evaluation.check_name}",
            _today(),
            f"Blocking check failed: {asset} {evaluation.check_name}",
            f"Asset: {asset}\nCheck: {evaluation.check_name}\nPartition: {partition}\n"
            f"{details}\n\nOpen the run: {link}",
        )
    context.log.info(f"Alerted about {len(failed)} failed blocking check(s) of run {run.run_id}")
