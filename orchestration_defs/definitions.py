"""The one code location: every asset, check, job, schedule, sensor and resource, wired explicitly.

Resources are chosen here from environment variables (see orchestration_defs.settings), so the
same assets run against the laptop's embedded systems or production backends unchanged.
"""

import dagster as dg

from assets.staging.catalog import staging_catalog
from assets.staging.orders import staging_orders
from orchestration_defs import settings
from orchestration_defs.jobs import staging_job
from resources.order_system import LandingZoneOrderSystem
from resources.warehouse import WarehouseResource


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources for this deployment, from environment variables."""
    return {
        "warehouse": WarehouseResource(database=settings.warehouse_database()),
        "order_system": LandingZoneOrderSystem(landing_dir=str(settings.landing_dir())),
    }


defs = dg.Definitions(
    assets=[staging_catalog, staging_orders],
    jobs=[staging_job],
    resources=build_resources(),
    # Every step writes the one DuckDB file, whose single writer the "duckdb" pool serialises
    # anyway; running steps in-process saves a process start per step.
    executor=dg.in_process_executor,
)
