"""`make dev`'s event log: Dagster's PostgreSQL event log, with a run's planned events in batches.

When a run is created, Dagster records one ASSET_MATERIALIZATION_PLANNED event per asset and
partition (a partition's *failed* and *in progress* states are derived from it) and one
ASSET_CHECK_EVALUATION_PLANNED event per check, and hands them to the event log in batches of
DAGSTER_EVENT_BATCH_SIZE. PostgresEventLogStorage writes only batches of materialisations or
observations in one statement; any other batch it stores event by event, with new connections
each time, and each check's event as one row per partition with the event serialised again for
every row: Dagster's bookkeeping took 12.6 ms per asset-partition, against 1.4 ms with one
planned event per asset instead (bench/RESULTS.md), a setting that loses the days' states.

This class writes a batch of planned events, and the checks' PLANNED rows in
`asset_check_executions`, in one transaction (each check's event serialised once), then each
asset's row in `asset_keys` once, from its last event, through the storage's public
`store_asset_event` (the one-by-one path upserts it for every event, each overwriting the one
before). Any other batch goes to PostgresEventLogStorage unchanged. The rows are the ones the
stock class writes: tests/deploy/test_instance_storage.py compares every table with its.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster_postgres import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

MATERIALIZATION_PLANNED = dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
CHECK_PLANNED = dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
# The columns Dagster's storage fills for a planned check execution (its schema's table, which
# is not public: only the columns written are named here).
CHECK_EXECUTIONS = sa.table(
    "asset_check_executions",
    *(
        sa.column(name)
        for name in (
            "asset_key",
            "check_name",
            "partition",
            "run_id",
            "execution_status",
            "evaluation_event",
            "evaluation_event_timestamp",
            "evaluation_event_storage_id",
        )
    ),
)
PLANNED_STATUS = "PLANNED"  # Dagster's AssetCheckExecutionRecordStatus.PLANNED


class OrderflowPostgresEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage that writes a batch of planned events in one transaction."""

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> OrderflowPostgresEventLogStorage:
        """An instance of this class from PostgresEventLogStorage's config (its own builds its own)."""
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        """A batch of planned events at once; any other batch as the stock class stores it."""
        planned = (MATERIALIZATION_PLANNED, CHECK_PLANNED)
        if not events or any(event.dagster_event_type not in planned for event in events):
            super().store_event_batch(events)
            return
        insert = self.prepare_insert_event_batch(events)
        with self.index_transaction() as connection:
            ids = connection.execute(insert.returning(insert.table.c.id)).scalars().all()
            checks = [
                row
                for event, event_id in zip(events, ids, strict=True)
                if event.dagster_event_type == CHECK_PLANNED
                for row in _planned_check_rows(event, event_id)
            ]
            if checks:
                connection.execute(CHECK_EXECUTIONS.insert(), checks)
        last_of_asset = {
            event.get_dagster_event().asset_key: (event, event_id)
            for event, event_id in zip(events, ids, strict=True)
            if event.dagster_event_type == MATERIALIZATION_PLANNED
        }
        for event, event_id in last_of_asset.values():
            self.store_asset_event(event, event_id)


def _planned_check_rows(event: dg.EventLogEntry, event_id: int) -> list[dict[str, Any]]:
    """A planned check's rows in asset_check_executions: one per partition, or one unpartitioned."""
    planned = event.get_dagster_event().asset_check_planned_data
    subset = planned.partitions_subset
    common = {
        "asset_key": planned.asset_key.to_string(),
        "check_name": planned.check_name,
        "run_id": event.run_id,
        "execution_status": PLANNED_STATUS,
        "evaluation_event": dg.serialize_value(event),
        # PostgreSQL's column holds UTC without a time zone, as Dagster writes it.
        "evaluation_event_timestamp": datetime.fromtimestamp(event.timestamp, UTC).replace(
            tzinfo=None
        ),
        "evaluation_event_storage_id": event_id,
    }
    keys = subset.get_partition_keys() if subset is not None else [None]
    return [{**common, "partition": key} for key in keys]
