"""The one code location: every asset, check, job, schedule, sensor and resource, wired explicitly.

Resources are chosen here from environment variables (see foundation.settings), so the
same assets run against the laptop's embedded systems or production backends unchanged.
"""

import os

import dagster as dg

from assets.analytics.daily import daily_sales, fulfillment_kpis
from assets.analytics.history import customer_value, inventory_health, profit_by_nation_year
from assets.analytics.report import daily_report
from assets.analytics.timeline import order_timeline
from assets.fulfillment.allocations import allocations, inventory_stock
from assets.fulfillment.backorder_notices import backorder_notices
from assets.fulfillment.compensations import compensations
from assets.fulfillment.invoices import invoices
from assets.fulfillment.ledger_postings import ledger_postings
from assets.fulfillment.reconciliation import reconciliation
from assets.fulfillment.shipment_notifications import shipment_notifications
from assets.fulfillment.shipments import shipments
from assets.staging.catalog import staging_catalog
from assets.staging.orders import staging_orders
from foundation import layout, settings
from foundation.jobs import (
    analytics_job,
    fulfillment_job,
    order_to_cash_job,
    staging_job,
)
from foundation.sqldb.connections import sqlite_url
from orchestration_defs.automation import with_automation
from orchestration_defs.executor import by_run_length_executor
from orchestration_defs.schedules import order_to_cash_schedule
from resources.accounting import SqlAccounting
from resources.carrier import CarrierResource, LocalCarrier
from resources.carrier_http import HttpCarrier
from resources.inventory import SqlInventory
from resources.metrics import PushgatewayResource
from resources.notifier import MaildirNotifier, NotifierResource
from resources.notifier_outbox import OutboxNotifier
from resources.notifier_smtp import SmtpNotifier
from resources.order_system import LandingZoneOrderSystem
from resources.reports import ReportStore
from resources.rules import RulesResource
from resources.warehouse import WarehouseResource
from sensors.alerts import blocking_check_alert_sensor, run_failure_alert_sensor
from sensors.analytics import analytics_automation_sensor
from sensors.landing import landing_zone_sensor
from sensors.metrics import run_failure_metrics_sensor, run_success_metrics_sensor


def _secret(name: str) -> dg.EnvVar | None:
    """A secret read by Dagster from the environment at run time (never stored in config)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def _carrier() -> CarrierResource:
    base_url = os.environ.get("ORDERFLOW_CARRIER_URL")
    if base_url:
        return HttpCarrier(base_url=base_url, token=_secret("ORDERFLOW_CARRIER_TOKEN"))
    # Local backends find their databases from the data dir (or an ORDERFLOW_*_URL) at run time,
    # so a run's config may set just `faults` for a demo of retries and error paths.
    return LocalCarrier()


def _notifier() -> NotifierResource:
    common = {
        "admin_address": os.environ.get("ORDERFLOW_ADMIN_EMAIL", "ops@orderflow.example"),
        # A chat webhook's URL is its credential.
        "webhook_url": _secret("ORDERFLOW_ALERT_WEBHOOK"),
    }
    host = os.environ.get("ORDERFLOW_SMTP_HOST")
    if host:
        return SmtpNotifier(
            host=host,
            port=int(os.environ.get("ORDERFLOW_SMTP_PORT", "587")),
            username=os.environ.get("ORDERFLOW_SMTP_USER") or None,
            password=_secret("ORDERFLOW_SMTP_PASSWORD"),
            starttls=os.environ.get("ORDERFLOW_SMTP_STARTTLS", "1") == "1",
            sent_log_url=sqlite_url(layout.systems_dir(settings.data_dir()) / "notifier.sqlite"),
            **common,
        )
    # A Maildir for the demo (any mail client reads it); one SQL table for large stores.
    if settings.outbox_kind() == "sql":
        return OutboxNotifier(**common)
    return MaildirNotifier(**common)


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources for this deployment, from environment variables."""
    return {
        "warehouse": WarehouseResource(
            database=settings.warehouse_database(), connection_config=settings.duckdb_config()
        ),
        "order_system": LandingZoneOrderSystem(
            landing_dir=str(layout.landing_dir(settings.data_dir()))
        ),
        "inventory": SqlInventory(),
        "carrier": _carrier(),
        "notifier": _notifier(),
        "reports": ReportStore(directory=str(layout.reports_dir(settings.data_dir()))),
        "accounting": SqlAccounting(),
        # Off unless $ORDERFLOW_PUSHGATEWAY_URL names a Pushgateway (read when the sensors push).
        "metrics": PushgatewayResource(),
        # Read now: a wrong rule stops the definitions from loading, naming the file and field.
        "rules": RulesResource.from_file(),
    }


FULFILLMENT_ASSETS = [
    inventory_stock,
    allocations,
    backorder_notices,
    invoices,
    shipments,
    compensations,
    shipment_notifications,
    ledger_postings,
    reconciliation,
]

ANALYTICS_ASSETS = [
    daily_sales,
    fulfillment_kpis,
    order_timeline,
    inventory_health,
    customer_value,
    profit_by_nation_year,
    daily_report,
]

defs = with_automation(
    dg.Definitions(
        assets=[staging_catalog, staging_orders, *FULFILLMENT_ASSETS, *ANALYTICS_ASSETS],
        jobs=[staging_job, fulfillment_job, analytics_job, order_to_cash_job],
        schedules=[order_to_cash_schedule],
        sensors=[
            run_failure_alert_sensor,
            blocking_check_alert_sensor,
            analytics_automation_sensor,
            landing_zone_sensor,
            run_success_metrics_sensor,
            run_failure_metrics_sensor,
        ],
        resources=build_resources(),
        # A day's run in-process, a range's steps in parallel processes (orchestration_defs/executor.py).
        executor=by_run_length_executor,
    )
)
