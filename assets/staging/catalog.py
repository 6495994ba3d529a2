"""The store's catalog (customers, parts, suppliers, …), copied whole from the order system's Parquet files.

The catalog is small and replaced as a whole, so these assets are unpartitioned: each load swaps
the table in one statement (`create or replace`), which readers see atomically.
"""

import dagster as dg

from assets.metadata import markdown_preview
from assets.staging.common import staging_assets
from assets.staging.tables import CATALOG_DESCRIPTIONS, CATALOG_KEYS
from foundation.layout import CATALOG_TABLES
from foundation.registry import staging_key
from resources.order_system import OrderSystemResource
from resources.warehouse import WarehouseResource


@staging_assets(
    "staging_catalog",
    [
        dg.AssetSpec(
            staging_key(table),
            description=CATALOG_DESCRIPTIONS[table],
            skippable=True,
            metadata={"primary_key": ", ".join(CATALOG_KEYS[table])},
        )
        for table in CATALOG_TABLES
    ],
    kinds=["parquet"],
    can_subset=True,
)
def staging_catalog(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    order_system: OrderSystemResource,
):
    """Load the selected catalog tables into staging, each replaced in one statement."""
    with warehouse.connect() as con:
        for table in CATALOG_TABLES:
            key = staging_key(table)
            if key not in context.selected_asset_keys:
                continue
            location = order_system.catalog_location(table)
            # The table name comes from CATALOG_TABLES (code); the file location is bound.
            con.execute(
                f"create or replace table staging.{table} as "  # noqa: S608
                "select * from read_parquet(?)",
                [location],
            )
            rows = con.execute(f"select count(*) from staging.{table}").fetchall()[0][0]  # noqa: S608
            columns = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'staging' and table_name = ? order by ordinal_position",
                [table],
            ).fetchall()
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "dagster/row_count": rows,
                    "dagster/column_schema": dg.TableSchema(
                        columns=[dg.TableColumn(name, data_type) for name, data_type in columns]
                    ),
                    "source": dg.MetadataValue.path(location),
                    "preview": markdown_preview(
                        con,
                        f"select * from staging.{table} limit 5",  # noqa: S608
                    ),
                },
            )
