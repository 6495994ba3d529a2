"""How a run executes its steps: a day's run in its own process, a longer range in parallel.

A day's run (the schedule, the landing-zone sensor, one partition launched from the UI) is a chain
of short steps, and a process per step costs more than the steps: they run one after another in
the run's process, as do ranges shorter than `parallel_from_days` (measured in README, "Which runs
run steps in parallel"). A longer range (a backfill's single run, its analytics catch-up) runs up
to `max_concurrent` steps at once, each in a process of its own forked from a server that
imported the code once: the graph's branches (back-order notices beside invoices, e-mails beside
ledger postings, the marts) overlap, waiting for each other only for the warehouse's brief reads
and writes (resources/warehouse.py), and the timeline in the UI shows them side by side. Either
way, the run first gives its steps' pools their limits (`initialize_pools`), so that two runs
starting at once do not both set a new pool's limit at their steps' first claims.
"""

from collections.abc import Iterable, Mapping
from datetime import date

import dagster as dg

from foundation import settings
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG

# Imported once by the forkserver that forks the step processes, so that each starts with them
# (a module that is not installed is skipped): the code, the libraries steps import, and the
# PostgreSQL storage of `make dev`'s and production's instance (~1.5 s a step otherwise).
PRELOAD = ["orchestration_defs.definitions", "pandas", "sqlalchemy", "dagster_postgres"]
RETRIES = {"enabled": {}}  # steps' RetryPolicy applies (outside-system steps retry with backoff)


def run_days(tags: Mapping[str, str]) -> int:
    """How many days a run covers: its range's, else one (a single partition, or none)."""
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if not (start and end):
        return 1
    return (date.fromisoformat(end) - date.fromisoformat(start)).days + 1


def initialize_pools(instance: dg.DagsterInstance, pools: Iterable[str]) -> None:
    """Give each of `pools` that has no limit yet the instance's default, as its first claim would.

    Dagster 1.13 sets a pool's limit when a step first claims it; when two runs do so at once on
    PostgreSQL, the second one's insert of the limit row violates the unique index, the update
    Dagster then tries fails in the aborted transaction, and that run fails before its steps.
    Done here before the steps claim, a run that loses the race finds the pool set and goes on.
    """
    from sqlalchemy.exc import DBAPIError  # the instance's storage has it loaded already

    storage = instance.event_log_storage
    if (
        not storage.supports_global_concurrency_limits
        or instance.global_op_concurrency_default_limit is None
    ):
        return
    for pool in sorted(set(pools) - storage.get_concurrency_keys()):
        try:
            storage.initialize_concurrency_limit_to_default(pool)
        except DBAPIError:
            if pool not in storage.get_concurrency_keys():
                raise


class _ByRunLength(dg.Executor):
    """Runs shorter than `parallel_from_days` in-process, longer ones with the multiprocess executor."""

    def __init__(self, in_process: dg.Executor, parallel: dg.Executor | None, from_days: int):
        self.in_process, self.parallel, self.from_days = in_process, parallel, from_days

    @property
    def retries(self):
        return self.in_process.retries

    def execute(self, plan_context, execution_plan):
        steps = execution_plan.get_steps_to_execute_in_topo_order()
        initialize_pools(plan_context.instance, {step.pool for step in steps if step.pool})
        long_run = run_days(plan_context.run_tags) >= self.from_days
        chosen = self.parallel if self.parallel is not None and long_run else self.in_process
        return chosen.execute(plan_context, execution_plan)


def _parallel_possible(config: Mapping[str, object]) -> bool:
    return int(config["max_concurrent"]) > 1  # type: ignore[arg-type]


@dg.executor(
    name="by_run_length",
    config_schema={
        "max_concurrent": dg.Field(
            int,
            default_value=settings.max_concurrent_steps(),
            description="Steps of a long run that run at once ($ORDERFLOW_MAX_CONCURRENT); "
            "1 runs every run's steps one after another in the run's process.",
        ),
        "parallel_from_days": dg.Field(
            int,
            default_value=settings.parallel_from_days(),
            description="Runs over at least this many days run their steps in parallel "
            "($ORDERFLOW_PARALLEL_FROM_DAYS); shorter ones, and runs of no partition, in-process.",
        ),
    },
    requirements=lambda config: (
        [
            dg.ExecutorRequirement.RECONSTRUCTABLE_JOB,
            dg.ExecutorRequirement.NON_EPHEMERAL_INSTANCE,
            dg.ExecutorRequirement.PERSISTENT_OUTPUTS,
        ]
        if _parallel_possible(config)
        else []
    ),
)
def by_run_length_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """In-process for a day's run, multiprocess (bounded, forkserver) for a range of days."""
    config = init_context.executor_config

    def built(executor_def: dg.ExecutorDefinition, executor_config: dict) -> dg.Executor:
        context = dg.InitExecutorContext(
            job=init_context.job,
            executor_def=executor_def,
            executor_config=executor_config,
            instance=init_context.instance,
        )
        return executor_def.executor_creation_fn(context)  # type: ignore[misc]

    in_process = built(dg.in_process_executor, {"retries": RETRIES})
    parallel = None
    if _parallel_possible(config):
        parallel = built(
            dg.multiprocess_executor,
            {
                "retries": RETRIES,
                "max_concurrent": config["max_concurrent"],
                "start_method": {"forkserver": {"preload_modules": PRELOAD}},
            },
        )
    return _ByRunLength(in_process, parallel, int(config["parallel_from_days"]))  # type: ignore[arg-type]
