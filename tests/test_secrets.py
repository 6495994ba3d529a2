"""Secrets stay secret: a real run with every secret in use stores none of them anywhere.

The alert webhook's URL (it carries a token), the SMTP password and the carrier's token are set to
distinctive values; a day of `order_to_cash_job` then sends e-mail through an SMTP server that
requires the login, ships through the HTTP carrier that requires the token, and fails at the
ledger, so that the failure alert is posted to the webhook. Nothing the instance stored (run
config, job snapshot, event log text and metadata, compute logs: files, and the tables of its
PostgreSQL database or SQLite files) nor the run's console output may contain a secret, on either
kind of instance `make dev` runs.
"""

from __future__ import annotations

import sqlite3
import zlib
from contextlib import closing, suppress
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import AuthResult, LoginPassword

from orchestration_defs.definitions import build_resources, defs
from sensors.alerts import run_failure_alert_sensor
from tests.resources.test_carrier_http import Carrier
from tests.resources.test_notifier import Collector, smtp_server, webhook

DAY = "2021-03-10"
WEBHOOK_TOKEN = "T0K3N-webhook-5d1e8a"
SMTP_PASSWORD = "pa55-smtp-93c7f2"
CARRIER_TOKEN = "t0ken-carrier-b46e01"
SECRETS = (WEBHOOK_TOKEN, SMTP_PASSWORD, CARRIER_TOKEN)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"orders", SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


def _text(value: object) -> str:
    if isinstance(value, memoryview):  # PostgreSQL's bytea
        value = value.tobytes()
    if isinstance(value, bytes):
        # Dagster stores snapshots zlib-compressed.
        with suppress(zlib.error):
            value = zlib.decompress(value)
        return value.decode(errors="replace")
    return str(value)


def stored_text(home: Path) -> dict[str, str]:
    """Everything under a DAGSTER_HOME as text, by where it is: files, and SQLite tables' cells."""
    stored = {}
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        where = str(path.relative_to(home))
        data = path.read_bytes()
        stored[where] = data.decode(errors="replace")
        if data.startswith(b"SQLite format 3\0"):
            with closing(sqlite3.connect(path)) as con:
                tables = con.execute("select name from sqlite_master where type = 'table'")
                for (table,) in tables.fetchall():
                    # The table names come from SQLite itself.
                    rows = con.execute(f'select * from "{table}"')
                    cells = (_text(value) for row in rows for value in row)
                    stored[f"{where}: {table}"] = "\n".join(cells)
    return stored


def database_text(url: str) -> dict[str, str]:
    """Every table of a PostgreSQL database as text, by table."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            stored = {}
            for table in sa.inspect(connection).get_table_names():
                rows = connection.execute(
                    sa.select(sa.Table(table, sa.MetaData(), autoload_with=connection))
                )
                stored[f"database: {table}"] = "\n".join(_text(v) for row in rows for v in row)
            return stored
    finally:
        engine.dispose()


@pytest.fixture(params=["make dev", "make dev INSTANCE=sqlite"])
def instance(request):
    """The instance on PostgreSQL (`make dev`), and on SQLite."""
    kind = "dagster_instance" if request.param == "make dev" else "sqlite_instance"
    return request.getfixturevalue(kind)


def test_no_secret_shows_in_run_config_events_or_logs(
    data_dir, instance, tmp_path, monkeypatch, capfd
):
    carrier = Carrier(tmp_path / "carrier", token=CARRIER_TOKEN)
    mail = Collector()
    try:
        with (
            smtp_server(
                mail, authenticator=authenticator, auth_required=True, auth_require_tls=False
            ) as smtp_port,
            webhook(200) as (hook_url, alerts),
        ):
            for name, value in {
                "ORDERFLOW_DATA_DIR": str(data_dir),
                "ORDERFLOW_CARRIER_URL": carrier.base_url,
                "ORDERFLOW_CARRIER_TOKEN": CARRIER_TOKEN,
                "ORDERFLOW_SMTP_HOST": "127.0.0.1",
                "ORDERFLOW_SMTP_PORT": str(smtp_port),
                "ORDERFLOW_SMTP_USER": "orders",
                "ORDERFLOW_SMTP_PASSWORD": SMTP_PASSWORD,
                "ORDERFLOW_SMTP_STARTTLS": "0",
                "ORDERFLOW_ALERT_WEBHOOK": f"{hook_url}/{WEBHOOK_TOKEN}",
            }.items():
                monkeypatch.setenv(name, value)
            # What the code server builds from its environment when it loads the location.
            resources = build_resources()
            wired = dg.Definitions(
                assets=defs.assets,
                asset_checks=defs.asset_checks,
                jobs=defs.jobs,
                resources=resources,
                executor=defs.executor,
            )
            context = dg.build_sensor_context(instance=instance, resources=resources)
            run_failure_alert_sensor.evaluate_tick(context)  # starts watching
            result = wired.resolve_job_def("order_to_cash_job").execute_in_process(
                partition_key=DAY,
                instance=instance,
                run_config={"resources": {"accounting": {"config": {"faults": {"down": True}}}}},
                raise_on_error=False,
            )
            context = dg.build_sensor_context(
                instance=instance, cursor=context.cursor, resources=resources
            )
            run_failure_alert_sensor.evaluate_tick(context)
    finally:
        carrier.stop()

    # Every secret was in use: mail went through the login, shipments through the token.
    assert not result.success
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed == {"fulfillment__ledger_postings"}
    assert mail.envelopes
    assert carrier.row_counts()[0] > 0
    assert [a["subject"] for a in alerts] == [f"Run failed: order_to_cash_job {DAY}"]

    run = instance.get_run_by_id(result.run_id)
    stored = {
        "run config": str(run.run_config),
        "console": "".join(capfd.readouterr()),
        **stored_text(Path(instance.root_directory)),
    }
    postgres_url = getattr(instance.event_log_storage, "postgres_url", None)
    if postgres_url is not None:
        stored.update(database_text(postgres_url))
    for secret in SECRETS:
        assert [where for where, text in stored.items() if secret in text] == [], secret
    # The scan read what it should: the run's events, and the job snapshot naming the variables.
    everything = "\n".join(stored.values())
    assert result.run_id in everything and "fulfillment__shipments" in everything
    for name in ("ORDERFLOW_ALERT_WEBHOOK", "ORDERFLOW_SMTP_PASSWORD", "ORDERFLOW_CARRIER_TOKEN"):
        assert name in everything, name
