"""Runs as users get them: a day's run in-process, a range's branches in parallel, effects once.

Runs are executed as a run worker executes them (`dg.execute_job` of a reconstructable job on an
instance opened from a DAGSTER_HOME with the project's config); the range runs in a process of
its own, as each run does, so that its step processes see that instance's environment.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from assets.staging.catalog import staging_catalog
from assets.staging.orders import staging_orders
from foundation.jobs import fulfillment_job
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG
from orchestration_defs.definitions import FULFILLMENT_ASSETS, defs
from orchestration_defs.executor import run_days
from tests.assets.test_fulfillment import fingerprint, side_effects
from tests.helpers import WEEKS_END, WEEKS_START, resources_for

ROOT = Path(__file__).resolve().parent.parent
IN_PROCESS = "Executing steps in process"
MULTIPROCESS = "Executing steps using multiprocess executor"


def fulfillment_for(data_dir: str) -> dg.JobDefinition:
    """`fulfillment_job` over the local systems in `data_dir`, with the code location's executor."""
    return dg.Definitions(
        assets=[staging_catalog, staging_orders, *FULFILLMENT_ASSETS],
        jobs=[fulfillment_job],
        resources=resources_for(Path(data_dir)),
        executor=defs.executor,
    ).resolve_job_def("fulfillment_job")


def _job(data: Path):
    return dg.build_reconstructable_job(
        "tests.test_executor", "fulfillment_for", reconstructable_kwargs={"data_dir": str(data)}
    )


# One run in a process of its own; prints its run id.
RUN = """
import json, sys
import dagster as dg
from tests.test_executor import _job
from pathlib import Path
home, data, tags = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
with dg.DagsterInstance.from_config(home) as instance:
    with dg.execute_job(_job(data), instance, tags=tags) as result:
        print(result.run_id)
        sys.exit(0 if result.success else 1)
"""


def steps_and_engine(instance: dg.DagsterInstance, run_id: str):
    """Each step's [start, end] times, and the run's engine messages."""
    times: dict[str, list[float]] = {}
    engine = []
    for entry in instance.all_logs(run_id):
        kind = entry.dagster_event_type
        if kind in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS):
            times.setdefault(entry.step_key, []).append(entry.timestamp)
        elif kind == dg.DagsterEventType.ENGINE_EVENT:
            engine.append(entry.message)
    return {key: (min(t), max(t)) for key, t in times.items()}, engine


# The pool of every step of the code location's jobs, as the definitions load in a new process.
POOLS = """
import json
from orchestration_defs.definitions import defs
print(json.dumps({node.name: node.definition.pool for job in ("order_to_cash_job", "analytics_job")
                  for node in defs.resolve_job_def(job).graph.nodes}))
"""


def _pools(**environment: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", POOLS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **environment},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_each_warehouse_step_has_its_own_pool_or_all_share_the_one_named():
    """Steps of a run use different pools (so they can overlap); the same step of two runs shares one."""
    own = _pools()
    assert len(own) == 18
    assert own == {step: f"duckdb-{step}" for step in own}
    assert set(_pools(ORDERFLOW_WAREHOUSE_POOL="duckdb").values()) == {"duckdb"}


def test_run_days_counts_a_ranges_days_and_one_for_the_rest():
    assert run_days({RANGE_START_TAG: "2021-01-04", RANGE_END_TAG: "2021-01-10"}) == 7
    assert run_days({RANGE_START_TAG: "2021-01-04", RANGE_END_TAG: "2021-01-04"}) == 1
    assert run_days({"dagster/partition": "2021-01-04"}) == 1
    assert run_days({}) == 1


def test_a_days_run_executes_its_steps_in_process(copy_of_staged, sqlite_instance):
    with dg.execute_job(
        _job(copy_of_staged), sqlite_instance, tags={"dagster/partition": "2021-01-06"}
    ) as result:
        assert result.success
    spans, engine = steps_and_engine(sqlite_instance, result.run_id)
    assert len(spans) == len(FULFILLMENT_ASSETS)
    assert any(IN_PROCESS in message for message in engine), engine
    assert not any(MULTIPROCESS in message for message in engine), engine


@pytest.mark.slow
def test_a_range_run_overlaps_its_branches_with_the_same_effects(
    copy_of_staged, fulfilled_weeks, dagster_instance
):
    """The timeline shows parallel branches; the effects equal the in-process run's, and again."""
    data = copy_of_staged
    tags = json.dumps({RANGE_START_TAG: WEEKS_START, RANGE_END_TAG: WEEKS_END})
    runs = []
    for _ in range(2):  # the second run: a rerun of the range changes nothing
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                RUN,
                str(Path(dagster_instance.root_directory)),
                str(data),
                tags,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
            # Six weeks run in parallel when the code location is set so (default: over a year).
            env={
                **os.environ,
                "ORDERFLOW_PARALLEL_FROM_DAYS": "7",
                # Step processes import tests.test_executor, which is not an installed package.
                "PYTHONPATH": str(ROOT),
            },
        )
        assert done.returncode == 0, done.stderr[-4000:]
        runs.append(done.stdout.strip().splitlines()[-1])
        assert side_effects(data) == side_effects(fulfilled_weeks)
        assert fingerprint(data) == fingerprint(fulfilled_weeks)
    for run_id in runs:
        record = dagster_instance.get_run_record_by_id(run_id)
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        spans, engine = steps_and_engine(dagster_instance, run_id)
        assert len(spans) == len(FULFILLMENT_ASSETS)
        assert any(MULTIPROCESS in message for message in engine), engine
        overlapping = [
            (a, b)
            for (a, (a_start, a_end)), (b, (b_start, b_end)) in itertools.combinations(
                spans.items(), 2
            )
            if a_start < b_end and b_start < a_end
        ]
        assert overlapping, f"no two steps ran at the same time: {spans}"
