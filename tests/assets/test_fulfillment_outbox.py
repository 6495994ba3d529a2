"""The order-to-cash chain on the SQL outbox: the same deliveries, tables and e-mails as on a Maildir."""

from __future__ import annotations

import shutil

from tests.helpers import WEEKS_END, WEEKS_START, check_outcomes, fulfill, make_data_dir, query
from tests.resources.test_notifier import stored

# Every table the notifier's deliveries go into, and the one reading them.
TABLES = ("backorder_notices", "compensations", "shipment_notifications")


def notified(data) -> dict[str, list]:
    return {
        table: query(data, f"select * exclude (processed_at) from fulfillment.{table} order by all")
        for table in TABLES
    }


def test_the_chain_sends_the_same_mail_through_either_outbox(copy_of_staged, tmp_path, monkeypatch):
    store = (copy_of_staged / "landing").resolve().parent
    data = {"sql": copy_of_staged, "maildir": make_data_dir(tmp_path / "maildir", store)}
    shutil.copy(copy_of_staged / "warehouse.duckdb", data["maildir"] / "warehouse.duckdb")
    for kind, where in data.items():
        monkeypatch.setenv("ORDERFLOW_OUTBOX", kind)
        result = fulfill(where, WEEKS_START, WEEKS_END)
        assert result.success
        assert all(check_outcomes(result).values()), check_outcomes(result)
    assert not list((data["sql"] / "outbox").glob(".*/new"))  # no Maildir folder: the table
    sql, maildir = (
        stored("sql", data["sql"] / "outbox"),
        stored("maildir", data["maildir"] / "outbox"),
    )
    assert sql == maildir
    assert sum(key.startswith("shipped:") for key, _ in sql) > 100
    assert notified(data["sql"]) == notified(data["maildir"])
    assert query(
        data["sql"], "select count(*) from fulfillment.reconciliation where not matches"
    ) == [(0,)]
