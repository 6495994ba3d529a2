"""Outages set with `orderflow-sim outage`, read by the local backends at every call.

Each test keeps one resource instance (as a running `dagster dev` keeps its code) and switches the
outside system's state from the command line between calls: no restart, no run config.
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from foundation.sqldb.connections import sqlite_url
from resources.accounting import JournalEntry, JournalLine, SqlAccounting, entries_to_frame
from resources.carrier import LocalCarrier, ShipmentLine, ShipmentRequest
from resources.faults import FaultInjection, SystemRefused, SystemUnavailable
from resources.inventory import ReservationRequest, SqlInventory, StockItem
from resources.notifier import REJECTED, SENT, MaildirNotifier, Message
from resources.notifier_smtp import SmtpNotifier
from simulator import outages as faults_module
from simulator.cli import main

DAY = "2021-03-10"


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """The pipeline's data dir, as `dagster dev` and `orderflow-sim outage` both resolve it."""
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(tmp_path))
    return tmp_path


def outage(*args: str) -> None:
    # No --data-dir: the command finds the pipeline's data dir ($ORDERFLOW_DATA_DIR) itself.
    assert main(["outage", *args]) == 0


def entry(order_key: int) -> JournalEntry:
    return JournalEntry(
        key=f"invoice:{order_key}",
        day=DAY,
        kind="invoice",
        order_key=order_key,
        lines=(JournalLine("receivable", 1000, 0), JournalLine("revenue", 0, 1000)),
    )


def reservation(order_key: int) -> list[ReservationRequest]:
    return [ReservationRequest(order_key, 1, DAY, 101, 7, 1)]


def reserve(inventory: SqlInventory, order_key: int) -> list[str]:
    return [r.status for r in inventory.reserve(reservation(order_key))]


def shipment(order_key: int) -> ShipmentRequest:
    return ShipmentRequest(order_key, DAY, "FRANCE", (ShipmentLine(1, 2, "AIR"),))


def mail(key: str) -> Message:
    return Message(key, DAY, "shipment", "ann@example.com", "Shipped", "On its way.")


def test_inventory_fails_while_down_and_works_after_up(data):
    inventory = SqlInventory(url=sqlite_url(data / "systems" / "inventory.sqlite"))
    inventory.seed_stock([StockItem(101, 7, 120)])
    outage("inventory", "--down")
    with pytest.raises(SystemUnavailable, match=r"inventory is down.*orderflow-sim outage"):
        inventory.reserve(reservation(1))
    outage("inventory", "--up")
    assert reserve(inventory, 1) == ["reserved"]
    # A refused key is permanent: no retry can change the answer.
    outage("inventory", "--reject", "2:1")
    with pytest.raises(SystemRefused, match="2:1"):
        inventory.reserve(reservation(2))
    outage("inventory", "--clear")
    assert reserve(inventory, 2) == ["reserved"]


def test_local_carrier_fails_while_down_and_works_after_up(data):
    carrier = LocalCarrier(url=sqlite_url(data / "systems" / "carrier.sqlite"))
    outage("carrier", "--down")
    with pytest.raises(SystemUnavailable, match="carrier is down"):
        carrier.create_shipments([shipment(1)])
    with pytest.raises(SystemUnavailable, match="carrier is down"):
        carrier.shipments_by_day(DAY, "2021-03-11")
    outage("carrier", "--up", "--reject", "2")
    shipped, refused = carrier.create_shipments([shipment(1), shipment(2)])
    assert (shipped.status, refused.status) == ("shipped", "refused")
    assert "refused" in refused.reason


def test_notifier_fails_while_down_and_works_after_up_but_admin_alerts_always_go_out(data):
    notifier = MaildirNotifier(outbox_dir=str(data / "outbox"))
    outage("notifier", "--down")
    with pytest.raises(SystemUnavailable, match="notifier is down"):
        notifier.send([mail("shipped:1")])
    # The admins must hear about the outage of the very system that would tell them.
    alert = notifier.alert("run-failure:1", DAY, "Run failed", "notifier is down")
    assert alert.status == SENT
    assert len(list((data / "outbox" / ".admin" / "new").iterdir())) == 1
    outage("notifier", "--up", "--reject", "shipped:2")
    sent, bounced = notifier.send([mail("shipped:1"), mail("shipped:2")])
    assert (sent.status, bounced.status) == (SENT, REJECTED)


class Accepted:
    """An aiosmtpd handler that accepts every message and keeps the recipients."""

    def __init__(self):
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


def test_smtp_notifier_outage_holds_back_customer_mail_not_admin_alerts(data):
    handler = Accepted()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        notifier = SmtpNotifier(
            host="127.0.0.1",
            port=port,
            timeout_seconds=5.0,
            sent_log_url=sqlite_url(data / "systems" / "notifier.sqlite"),
            admin_address="ops@orderflow.example",
        )
        outage("notifier", "--down")
        with pytest.raises(SystemUnavailable, match="notifier is down"):
            notifier.send([mail("shipped:1")])
        assert notifier.alert("run-failure:1", DAY, "Run failed", "notifier is down").status == SENT
        assert handler.recipients == [["ops@orderflow.example"]]
        outage("notifier", "--up")
        assert notifier.send([mail("shipped:1")])[0].status == SENT
        assert handler.recipients[1:] == [["ann@example.com"]]
    finally:
        controller.stop()


def test_accounting_fails_while_down_and_works_after_up(data):
    ledger = SqlAccounting(url=sqlite_url(data / "systems" / "accounting.sqlite"))
    outage("accounting", "--down")
    with pytest.raises(SystemUnavailable, match="accounting is down"):
        ledger.post_frame(entries_to_frame([entry(1)]))
    outage("accounting", "--up")
    assert ledger.post_frame(entries_to_frame([entry(1)])) == 1
    outage("accounting", "--reject", "invoice:2")
    with pytest.raises(SystemRefused, match="invoice:2"):
        ledger.post_frame(entries_to_frame([entry(2)]))
    outage("accounting", "--clear")
    assert ledger.post_frame(entries_to_frame([entry(1), entry(2)])) == 1
    with sqlite3.connect(data / "systems" / "accounting.sqlite") as con:
        assert con.execute("select count(*) from journal_entries").fetchone()[0] == 2


def test_error_rate_and_slowness_apply_at_each_call(data, monkeypatch):
    ledger = SqlAccounting(url=sqlite_url(data / "systems" / "accounting.sqlite"))
    outage("accounting", "--error-rate", "1")
    with pytest.raises(SystemUnavailable, match="error rate 1"):
        ledger.day_totals(DAY, "2021-03-11")
    outage("accounting", "--error-rate", "0", "--slow", "1.5")
    waits: list[float] = []
    monkeypatch.setattr(faults_module.time, "sleep", waits.append)
    assert ledger.day_totals(DAY, "2021-03-11") == {}
    assert waits == [1.5]


def test_run_config_faults_still_work_beside_the_outage_state(data):
    # One-off demos keep their run-config faults; the outage state adds to them.
    inventory = SqlInventory(
        url=sqlite_url(data / "systems" / "inventory.sqlite"),
        faults=FaultInjection(reject_keys=["3:1"]),
    )
    inventory.seed_stock([StockItem(101, 7, 120)])
    outage("inventory", "--reject", "4:1")
    for refused in (3, 4):
        with pytest.raises(SystemRefused, match=f"{refused}:1"):
            inventory.reserve(reservation(refused))
    assert reserve(inventory, 5) == ["reserved"]


def test_a_damaged_state_file_names_the_file_and_the_fix(data):
    path = data / "systems" / "faults" / "carrier.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    carrier = LocalCarrier(url=sqlite_url(data / "systems" / "carrier.sqlite"))
    with pytest.raises(SystemUnavailable, match=r"carrier\.json.*--clear"):
        carrier.create_shipments([shipment(1)])
    outage("carrier", "--clear")
    assert carrier.create_shipments([shipment(1)])[0].status == "shipped"
