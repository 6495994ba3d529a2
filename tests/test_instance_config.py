"""The instance configs let the runs users launch through: run monitoring's start timeout.

A backfill's run is created by the backfill daemon, which writes one ASSET_MATERIALIZATION_PLANNED
event per asset and partition before it queues the run; run monitoring counts that time against
`start_timeout_seconds` (the run is NOT_STARTED meanwhile) and fails the run when it runs out.
bench/ui.py's newcomer backfill (the whole history from the UI) met exactly that with Dagster's
default of 180 s: the run was failed 3 minutes into its creation (bench/RESULTS.md).
"""

from pathlib import Path

import pytest
import yaml

from foundation.partitions import daily_partitions
from orchestration_defs.definitions import defs

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ["dagster.yaml", "dagster.postgres.yaml", "deploy/dagster.yaml"]
# Dagster's bookkeeping per asset-partition on SQLite, the slowest instance measured (bench/RESULTS.md,
# issue 16: 50.6 ms on a loaded machine, planned event included); PostgreSQL took 19.5 ms per
# planned event on the same machine.
SECONDS_PER_PLANNED_EVENT = 0.05


@pytest.mark.parametrize("config", CONFIGS)
def test_run_monitoring_lets_a_whole_history_backfill_run_be_created(config):
    monitoring = yaml.safe_load((ROOT / config).read_text())["run_monitoring"]
    job = defs.resolve_job_def("order_to_cash_job")
    # One per asset of the job and day, the unpartitioned assets included (45,504 measured).
    planned = len(job.asset_layer.selected_asset_keys) * len(daily_partitions.get_partition_keys())

    creation = planned * SECONDS_PER_PLANNED_EVENT

    assert monitoring["enabled"]
    # 180 s: Dagster's default when the key is absent.
    assert monitoring.get("start_timeout_seconds", 180) >= 1.5 * creation, (
        f"{config}: creating the whole history's backfill run writes {planned:,} planned events "
        f"(~{creation:.0f} s), and run monitoring must allow that with room to spare"
    )
