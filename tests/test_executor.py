"""Runs as users get them: a day's run in-process, a range's branches in parallel, effects once.

Runs are executed as a run worker executes them (`dg.execute_job` of a reconstructable job on an
instance opened from a DAGSTER_HOME with the project's config); the range runs in a process of
its own, as each run does, so that its step processes see that instance's environment. A run's
pools get their limits before its steps claim them, also when another run sets them at that moment.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psycopg2.errors
import pytest
import sqlalchemy as sa

from assets.staging.catalog import staging_catalog
from assets.staging.orders import staging_orders
from foundation.jobs import fulfillment_job
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG
from orchestration_defs.definitions import FULFILLMENT_ASSETS, defs
from orchestration_defs.executor import initialize_pools, run_days
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


POOL = "duckdb-reservations"
# How long the other run's transaction may take to be waited for: a deadline for a hang, not a
# measurement.
WAIT_S = 60


def _other_run_initialising(local_postgres, pool: str):
    """A connection that has written `pool`'s limit row and slot, as a run's first claim does, and
    not yet committed: another run initialising the pool at the same moment."""
    database = sa.engine.make_url(os.environ["DAGSTER_PG_URL"]).database
    other = local_postgres.connect(database)
    with other.cursor() as cursor:
        cursor.execute(
            'insert into concurrency_limits (concurrency_key, "limit", using_default_limit)'
            " values (%s, 1, true)",
            [pool],
        )
        cursor.execute(
            "insert into concurrency_slots (concurrency_key, deleted) values (%s, false)", [pool]
        )
    return other


def _initialise_during_the_other_run(local_postgres, initialise) -> BaseException | None:
    """Run `initialise()` while another run initialises POOL: it waits on the pool's unique
    index until the other run commits. Returns what it raised, if anything."""
    other = _other_run_initialising(local_postgres, POOL)
    watcher = local_postgres.connect(other.info.dbname)
    watcher.autocommit = True  # pg_stat_activity is read afresh only outside a transaction
    raised: list[BaseException] = []

    def attempt() -> None:
        try:
            initialise()
        except Exception as error:
            raised.append(error)

    def waiting_on_a_lock() -> bool:
        with watcher.cursor() as cursor:
            cursor.execute(
                "select count(*) from pg_stat_activity"
                " where datname = current_database() and wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0

    try:
        thread = threading.Thread(target=attempt, daemon=True)
        thread.start()
        deadline = time.monotonic() + WAIT_S
        while not waiting_on_a_lock():
            assert thread.is_alive(), f"finished without meeting the other run: {raised}"
            assert time.monotonic() < deadline, "never waited for the other run's limit row"
            time.sleep(0.05)
        other.commit()
        thread.join(WAIT_S)
        assert not thread.is_alive()
    finally:
        other.close()
        watcher.close()
    return raised[0] if raised else None


def _pool_limits(instance: dg.DagsterInstance) -> dict[str, tuple[int, bool]]:
    return {
        pool.name: (pool.limit, pool.from_default)
        for pool in instance.event_log_storage.get_pool_limits()
    }


def test_dagsters_first_claim_fails_when_another_run_initialises_the_pool(
    dagster_instance, local_postgres
):
    """The defect (Dagster 1.13 on PostgreSQL): the second run's insert of the limit row violates
    the unique index, and the update Dagster then tries fails in the aborted transaction. When
    this stops raising, Dagster has fixed it and `initialize_pools` may go."""
    storage = dagster_instance.event_log_storage
    error = _initialise_during_the_other_run(
        local_postgres, lambda: storage.initialize_concurrency_limit_to_default(POOL)
    )
    assert isinstance(error, sa.exc.InternalError), error
    assert isinstance(error.orig, psycopg2.errors.InFailedSqlTransaction)
    chain = []
    while error is not None:
        chain.append(type(error))
        error = error.__context__
    assert sa.exc.IntegrityError in chain, chain
    assert psycopg2.errors.UniqueViolation in chain, chain


def test_a_run_initialising_its_pools_during_another_run_goes_on(dagster_instance, local_postgres):
    error = _initialise_during_the_other_run(
        local_postgres, lambda: initialize_pools(dagster_instance, [POOL])
    )
    assert error is None
    assert _pool_limits(dagster_instance) == {POOL: (1, True)}
    info = dagster_instance.event_log_storage.get_concurrency_info(POOL)
    assert (info.limit, info.slot_count, info.claimed_slots) == (1, 1, [])


def test_initialize_pools_gives_missing_pools_the_default_and_keeps_set_ones(dagster_instance):
    storage = dagster_instance.event_log_storage
    storage.set_concurrency_slots("duckdb-set_by_hand", 3)
    pools = ["duckdb-set_by_hand", "duckdb-a", "duckdb-b", "duckdb-a"]
    for _ in range(2):  # a second run's finds them all
        initialize_pools(dagster_instance, pools)
        assert _pool_limits(dagster_instance) == {
            "duckdb-set_by_hand": (3, False),
            "duckdb-a": (1, True),
            "duckdb-b": (1, True),
        }
    for pool in pools:
        info = storage.get_concurrency_info(pool)
        assert info.slot_count == info.limit


def test_a_run_initialises_every_pool_of_its_plan_before_its_steps(tmp_path, dagster_instance):
    """Its first step fails on an empty data dir, so no other step claims its pool: the pools
    exist because the executor initialised them before the steps."""
    data = tmp_path / "empty"
    data.mkdir()
    with dg.execute_job(
        _job(data), dagster_instance, tags={"dagster/partition": "2021-01-06"}
    ) as result:
        assert not result.success
        started = {
            event.step_key
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.STEP_START
        }
    assert len(started) < len(FULFILLMENT_ASSETS)
    pools = {asset.op.pool for asset in FULFILLMENT_ASSETS}
    assert len(pools) == len(FULFILLMENT_ASSETS)
    assert _pool_limits(dagster_instance) == dict.fromkeys(pools, (1, True))
