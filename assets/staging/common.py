"""What the staging assets share: their decorator."""

from collections.abc import Sequence

import dagster as dg

from foundation.partitions import daily_partitions
from foundation.registry import STAGING
from resources.warehouse import step_pool


def staging_assets(
    name: str,
    specs: Sequence[dg.AssetSpec],
    *,
    kinds: Sequence[str],
    partitioned: bool = False,
    check_specs: Sequence[dg.AssetCheckSpec] = (),
    can_subset: bool = False,
):
    """`dg.multi_asset` loading staging tables: group, kinds, owners, pool, window if partitioned."""
    return dg.multi_asset(
        name=name,
        specs=[
            spec.replace_attributes(
                group_name=STAGING,
                kinds={"duckdb", *kinds},
                owners=["team:data-engineering"],
                tags={"layer": STAGING},
            )
            for spec in specs
        ],
        check_specs=check_specs,
        partitions_def=daily_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        can_subset=can_subset,
        pool=step_pool(name),
    )
