"""Empty-bodied copies of the project's assets: Dagster's own cost of the same graph.

A copy has the real asset's keys, partitions, backfill policy, deps, checks and pool; its body
yields a materialisation per selected asset and a passing result per selected check, and does
nothing else. `bench/backfill.py` materialises copies of the daily assets in one process; loaded
as a code location (`bench/workspace.yaml`), this module serves `order_to_cash_job` over copies
of that job's assets under the key prefix `empty`, so that `dagster dev` can run the real job and
its empty twin side by side on one instance without mixing their asset histories.
"""

import dagster as dg

PREFIX = "empty"


def empty_copy(real: dg.AssetsDefinition, prefix: str | None = None) -> dg.AssetsDefinition:
    """An empty-bodied copy of `real`, its keys and their deps under `prefix` if given."""

    def key(asset_key: dg.AssetKey) -> dg.AssetKey:
        return dg.AssetKey([prefix, *asset_key.path]) if prefix else asset_key

    specs = [
        spec.replace_attributes(
            key=key(spec.key),
            partitions_def=None,
            deps=[
                dg.AssetDep(key(dep.asset_key), partition_mapping=dep.partition_mapping)
                for dep in spec.deps
            ],
        )
        for spec in real.specs
    ]
    checks = [
        dg.AssetCheckSpec(
            check.name,
            asset=key(check.asset_key),
            description=check.description,
            blocking=check.blocking,
            additional_deps=[key(dep.asset_key) for dep in check.additional_deps],
        )
        for check in real.check_specs
    ]
    partitioned = real.partitions_def is not None

    @dg.multi_asset(
        specs=specs,
        check_specs=checks,
        partitions_def=real.partitions_def,
        backfill_policy=real.backfill_policy,
        can_subset=real.can_subset,
        pool=real.node_def.pool,
        name=f"empty_{real.node_def.name}",
    )
    def empty(context: dg.AssetExecutionContext):
        if partitioned:
            context.partition_time_window  # noqa: B018 - the real assets read it too
        for spec in specs:
            if spec.key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=spec.key)
        for check in checks:
            if check.key in context.selected_asset_check_keys:
                yield dg.AssetCheckResult(
                    asset_key=check.asset_key, check_name=check.name, passed=True
                )

    return empty


def _order_to_cash_copies() -> list[dg.AssetsDefinition]:
    """Empty copies, under the prefix, of every asset `order_to_cash_job` selects."""
    from foundation.jobs import order_to_cash_job
    from orchestration_defs import definitions as real

    assets = [
        real.staging_catalog,
        real.staging_orders,
        *real.FULFILLMENT_ASSETS,
        *real.ANALYTICS_ASSETS,
    ]
    selected = order_to_cash_job.selection.resolve(assets)
    return [empty_copy(a, PREFIX) for a in assets if set(a.keys) & selected]


def _definitions() -> dg.Definitions:
    from foundation.partitions import daily_partitions

    return dg.Definitions(
        assets=_order_to_cash_copies(),
        jobs=[
            dg.define_asset_job(
                name="order_to_cash_job",
                selection=dg.AssetSelection.all(),
                partitions_def=daily_partitions,
                description="order_to_cash_job's assets and checks with empty bodies.",
            )
        ],
        # As the real location: one process per run, every step in it.
        executor=dg.in_process_executor,
    )


defs = _definitions()
