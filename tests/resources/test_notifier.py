"""The notifier: the Maildir outbox, SMTP against a local server, the alert webhook."""

from __future__ import annotations

import email
import json
import mailbox
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from deploy.dagster_dev import free_port
from foundation import settings
from foundation.sqldb.connections import sqlite_url
from resources import maildir
from resources.faults import FaultInjection, SystemRefused, SystemUnavailable
from resources.notifier import (
    REJECTED,
    SENT,
    Delivery,
    LocalNotifier,
    MaildirNotifier,
    Message,
    deliveries_frame,
    file_name,
    message_id,
    render,
)
from resources.notifier_outbox import OutboxNotifier
from resources.notifier_smtp import SmtpNotifier
from tests.postgres import new_database

DAY = "2026-11-24"
SENDER = "Orderflow <orders@orderflow.example>"
ROOT = Path(__file__).resolve().parents[2]
BATCH = [
    Message(
        "shipped:101", DAY, "shipment", "Ann <ann@example.com>", "Order 101 shipped", "Line 1\nL2"
    ),
    Message("backorder:102", DAY, "back_order", "bob@example.com", "Order 102 delayed", "Sorry."),
    Message("refund:103", DAY, "refund", "cy@example.com", "Refund for order 103", "Refunded."),
]


def files(folder: Path) -> list[Path]:
    return sorted(path for sub in ("new", "cur") for path in (folder / sub).iterdir())


# The local outboxes, Maildir and SQL: the contract


@pytest.fixture(params=["maildir", "sql"])
def kind(request) -> str:
    return request.param


def local_notifier(kind: str, where: Path, **kwargs) -> LocalNotifier:
    """The outbox of this kind in the folder `where` (the SQL one in its outbox.sqlite)."""
    if kind == "maildir":
        return MaildirNotifier(outbox_dir=str(where), **kwargs)
    return OutboxNotifier(url=sqlite_url(where / "outbox.sqlite"), **kwargs)


def stored(kind: str, where: Path) -> list[tuple[str, bytes]]:
    """Every message the outbox keeps, as (key, text), in key order."""
    if kind == "maildir":
        texts = [path.read_bytes() for path in [*where.glob(".*/new/*"), *where.glob(".*/cur/*")]]
        return sorted((email.message_from_bytes(t)["X-Orderflow-Key"], t) for t in texts)
    with sqlite3.connect(where / "outbox.sqlite") as con:
        return con.execute("select message_key, message from outbox_messages order by 1").fetchall()


def mails(first: int, count: int) -> list[Message]:
    return [
        Message(
            f"shipped:{n}", DAY, "shipment", f"c{n}@example.com", f"Order {n}", f"Dear c{n},\nok"
        )
        for n in range(first, first + count)
    ]


def texts(messages: list[Message]) -> list[tuple[str, bytes]]:
    """The messages as an outbox should keep them: each key once, rendered."""
    unique = {m.key: render(m, SENDER) for m in messages}
    return sorted(unique.items())


def test_sending_again_is_a_no_op(kind, tmp_path):
    for _ in range(3):
        deliveries = local_notifier(kind, tmp_path).send([*BATCH, BATCH[0]])
        assert deliveries == [Delivery(m.key, message_id(m.key), SENT) for m in [*BATCH, BATCH[0]]]
    assert stored(kind, tmp_path) == texts(BATCH)


def test_sent_before(kind, tmp_path):
    notifier = local_notifier(kind, tmp_path)
    assert not notifier.sent_before(BATCH[0])
    notifier.send(BATCH[:1])
    assert notifier.sent_before(BATCH[0]) and not notifier.sent_before(BATCH[1])


def test_rejected_key_stores_nothing(kind, tmp_path):
    faults = FaultInjection(reject_keys=["backorder:102"])
    deliveries = local_notifier(kind, tmp_path, faults=faults).send(BATCH)
    assert [d.status for d in deliveries] == [SENT, REJECTED, SENT]
    assert "injected bounce" in deliveries[1].detail
    assert stored(kind, tmp_path) == texts([BATCH[0], BATCH[2]])


def test_frame_of_messages_is_sent_like_the_list(kind, tmp_path):
    """send_frame: the same messages and deliveries as send, rejections and repeats included."""
    faults = FaultInjection(reject_keys=["backorder:102"])
    by_list = local_notifier(kind, tmp_path / "list", faults=faults)
    by_frame = local_notifier(kind, tmp_path / "frame", faults=faults)
    batch = [*BATCH, BATCH[0]]
    frame = pd.DataFrame(batch, columns=list(Message._fields))
    expected = deliveries_frame(by_list.send(batch))
    for _ in range(2):
        pd.testing.assert_frame_equal(by_frame.send_frame(frame), expected)
    assert expected["status"].tolist() == [SENT, REJECTED, SENT, SENT]
    assert stored(kind, tmp_path / "frame") == stored(kind, tmp_path / "list")
    assert len(stored(kind, tmp_path / "frame")) == 2
    assert by_frame.send_frame(frame.iloc[:0]).columns.tolist() == list(Delivery._fields)


def test_down_is_unavailable(kind, tmp_path):
    notifier = local_notifier(kind, tmp_path, faults=FaultInjection(down=True))
    with pytest.raises(SystemUnavailable, match="notifier is down"):
        notifier.send(BATCH)
    assert not (tmp_path / f".{DAY}").exists() and not (tmp_path / "outbox.sqlite").exists()


def test_outage_spans_resource_instances(kind, tmp_path):
    faults = FaultInjection(outage_calls=2)
    for _ in range(2):
        with pytest.raises(SystemUnavailable, match="injected outage"):
            local_notifier(kind, tmp_path, faults=faults).send(BATCH)
    deliveries = local_notifier(kind, tmp_path, faults=faults).send(BATCH)
    assert [d.status for d in deliveries] == [SENT] * 3


def test_admin_alert_is_sent_once_past_an_outage(kind, tmp_path):
    notifier = local_notifier(kind, tmp_path, faults=FaultInjection(down=True))
    # Admin alerts share one folder: an alert raised again on another day is not sent again.
    for day in (DAY, "2026-11-25"):
        delivery = notifier.alert("alert:stock:2026-11-24", day, "Stock low", "Part 7 below 10.")
        assert delivery == Delivery("alert:stock:2026-11-24", message_id(delivery.key), SENT)
    [(_, text)] = stored(kind, tmp_path)
    msg = email.message_from_bytes(text)
    assert (msg["To"], msg["Subject"]) == ("ops@orderflow.example", "[orderflow] Stock low")
    assert msg["X-Orderflow-Kind"] == "admin_alert"


CHILD = """
import os, signal, sys
from pathlib import Path
from resources import maildir
from tests.resources.test_notifier import local_notifier, mails

kind, where, calls, kill_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
render, rendered = maildir.render, 0


def render_then_die(*args):
    global rendered
    rendered += 1
    if rendered == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` would, in the middle of a call
    return render(*args)


maildir.render = render_then_die
for call in range(calls):
    local_notifier(kind, where).send(mails(call * 2_000, 2_000))
"""


def send_in_process(kind: str, where: Path, calls: int, kill_at: int = 0) -> subprocess.Popen:
    """A Python process sending `calls` calls of 2,000 new messages; SIGKILLed at render `kill_at`."""
    command = [sys.executable, "-c", CHILD, kind, str(where), str(calls), str(kill_at)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def test_processes_sending_the_same_messages_at_once_store_each_once(kind, tmp_path):
    children = [send_in_process(kind, tmp_path, 3) for _ in range(2)]
    for child in children:
        assert child.wait(timeout=120) == 0, child.stderr.read()
    deliveries = local_notifier(kind, tmp_path).send(mails(0, 6_000))
    assert {d.status for d in deliveries} == {SENT}
    assert stored(kind, tmp_path) == texts(mails(0, 6_000))


def test_a_process_killed_mid_send_leaves_whole_messages_and_a_resend_completes(kind, tmp_path):
    """Killed in the middle of its second call: nothing half-written; sending again completes."""
    child = send_in_process(kind, tmp_path, 3, kill_at=3_000)
    assert child.wait(timeout=120) == -signal.SIGKILL, child.stderr.read()
    expected = dict(texts(mails(0, 6_000)))
    left = stored(kind, tmp_path)
    # The first call is kept; of the second, the SQL outbox keeps nothing (a call is one
    # transaction) and the Maildir the files it had finished.
    assert {m.key for m in mails(0, 2_000)} <= {key for key, _ in left}
    assert len(left) == 2_000 if kind == "sql" else 2_000 <= len(left) < 3_000
    assert all(text == expected[key] for key, text in left)
    deliveries = local_notifier(kind, tmp_path).send(mails(0, 6_000))
    assert {d.status for d in deliveries} == {SENT}
    assert stored(kind, tmp_path) == sorted(expected.items())


def test_the_sql_outbox_keeps_the_maildir_text(tmp_path):
    """Byte for byte the Maildir file: headers cleaned, 8-bit body, line ends made CRLF."""
    batch = [
        *BATCH,
        Message("k:1", DAY, "shipment", "ann@example.com\r\nCc: z@y", "Hi\r\nBcc: x@y", "b"),
        Message(
            "shipped:104", DAY, "shipment", "Zoë <zoe@example.com>", "Grüße", "Grüße,\rZoë\r\n"
        ),
        Message("alert:1", "2026-11-25", "admin_alert", "ops@example.com", "Alert", "Down."),
    ]
    for kind in ("maildir", "sql"):
        local_notifier(kind, tmp_path / kind).send(batch)
    assert stored("sql", tmp_path / "sql") == stored("maildir", tmp_path / "maildir")
    assert len(stored("sql", tmp_path / "sql")) == len(batch)


def test_the_sql_outbox_stores_one_row_per_message_with_its_columns(tmp_path):
    OutboxNotifier(url=sqlite_url(tmp_path / "outbox.sqlite")).send([*BATCH, BATCH[0]])
    with sqlite3.connect(tmp_path / "outbox.sqlite") as con:
        rows = con.execute(
            "select folder, message_key, day, kind, recipient, message_id from outbox_messages"
            " order by 2"
        ).fetchall()
    assert rows == sorted((m.day, m.key, m.day, m.kind, m.to, message_id(m.key)) for m in BATCH)
    # The documented way to read one message.
    command = [
        "sqlite3",
        str(tmp_path / "outbox.sqlite"),
        "select message from outbox_messages where message_key = 'shipped:101'",
    ]
    if shutil.which("sqlite3"):
        shown = subprocess.run(command, capture_output=True, check=True).stdout
        assert shown == render(BATCH[0], SENDER) + b"\n"


def test_the_sql_outbox_in_the_data_dir_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ORDERFLOW_OUTBOX_URL", raising=False)
    OutboxNotifier().send(BATCH)
    assert stored("sql", tmp_path / "outbox") == texts(BATCH)


def test_the_sql_outbox_on_postgres(postgres_server):
    name = new_database(postgres_server, "outbox")
    notifier = OutboxNotifier(
        url=postgres_server.url(name), faults=FaultInjection(reject_keys=["refund:103"])
    )
    batch = [*BATCH, BATCH[0], *mails(1_000, 300)]
    frame = pd.DataFrame(batch, columns=list(Message._fields))
    first = notifier.send_frame(frame)
    assert first["status"].tolist() == [SENT, SENT, REJECTED, SENT] + [SENT] * 300
    pd.testing.assert_frame_equal(notifier.send_frame(frame), first)
    assert notifier.sent_before(BATCH[0]) and not notifier.sent_before(BATCH[2])
    rows = postgres_server.query(
        name, "select message_key, message from outbox_messages order by message_key"
    )
    assert [(key, bytes(text)) for key, text in rows] == texts([*BATCH[:2], *mails(1_000, 300)])


def test_the_outbox_setting(monkeypatch):
    monkeypatch.delenv("ORDERFLOW_OUTBOX_URL", raising=False)
    monkeypatch.delenv("ORDERFLOW_OUTBOX", raising=False)
    assert settings.outbox_kind() == "maildir"
    monkeypatch.setenv("ORDERFLOW_OUTBOX_URL", "postgresql+psycopg2://h/outbox")
    assert (settings.outbox_kind(), settings.outbox_url()) == (
        "sql",
        "postgresql+psycopg2://h/outbox",
    )
    monkeypatch.setenv("ORDERFLOW_OUTBOX", "Maildir")
    assert settings.outbox_kind() == "maildir"
    monkeypatch.setenv("ORDERFLOW_OUTBOX", "mbox")
    with pytest.raises(ValueError, match=r"ORDERFLOW_OUTBOX='mbox'.*maildir or sql"):
        settings.outbox_kind()


def test_the_code_location_picks_the_outbox_from_the_environment(tmp_path, monkeypatch):
    # Here, not at the top: the processes some tests start import this module, not the assets.
    from orchestration_defs.definitions import build_resources

    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(tmp_path))
    for name in ("ORDERFLOW_SMTP_HOST", "ORDERFLOW_OUTBOX_URL", "ORDERFLOW_OUTBOX"):
        monkeypatch.delenv(name, raising=False)
    assert type(build_resources()["notifier"]) is MaildirNotifier
    monkeypatch.setenv("ORDERFLOW_OUTBOX", "sql")
    notifier = build_resources()["notifier"]
    assert type(notifier) is OutboxNotifier
    notifier.alert("run-failure:1", DAY, "Run failed", "Step x failed.")
    assert [key for key, _ in stored("sql", tmp_path / "outbox")] == ["run-failure:1"]


# Maildir


def test_maildir_writes_one_parsable_file_per_message(tmp_path):
    outbox = tmp_path / "outbox"
    notifier = MaildirNotifier(outbox_dir=str(outbox))
    deliveries = notifier.send(BATCH)
    assert [(d.key, d.status, d.message_id) for d in deliveries] == [
        (m.key, SENT, message_id(m.key)) for m in BATCH
    ]
    assert sorted(p.name for p in (outbox / f".{DAY}" / "new").iterdir()) == sorted(
        file_name(m.key) for m in BATCH
    )
    folder = mailbox.Maildir(outbox, factory=None).get_folder(DAY)
    parsed = {msg["X-Orderflow-Key"]: msg for msg in folder}
    assert set(parsed) == {m.key for m in BATCH}
    for sent in BATCH:
        msg = parsed[sent.key]
        assert (msg["To"], msg["Subject"], msg["Message-ID"]) == (
            sent.to,
            sent.subject,
            message_id(sent.key),
        )
        assert msg["From"] == "Orderflow <orders@orderflow.example>"
        assert msg.get_payload(decode=True).decode().replace("\r\n", "\n") == sent.body + "\n"


def test_maildir_large_batch_written_by_threads_once_each(tmp_path):
    """Enough messages for the writer threads: every one lands once, whole, in its day folder."""
    assert maildir.THREAD_THRESHOLD < 3_000
    outbox = tmp_path / "outbox"
    days = [f"2026-10-{day:02d}" for day in range(1, 31)]
    batch = [
        Message(
            f"shipped:{n}", days[n % 30], "shipment", f"c{n}@example.com", f"Order {n}", "x" * n
        )
        for n in range(3_000)
    ]
    # a key repeated in the batch is written once
    deliveries = MaildirNotifier(outbox_dir=str(outbox), writers=4).send([*batch, batch[7]])
    assert [d.key for d in deliveries] == [m.key for m in [*batch, batch[7]]]
    assert {d.status for d in deliveries} == {SENT}
    box = mailbox.Maildir(outbox, factory=None)
    for day in days:
        keys = sorted(msg["X-Orderflow-Key"] for msg in box.get_folder(day))
        expected = sorted(m.key for m in batch if m.day == day)
        assert keys == expected
    sizes = {path.name: path.stat().st_size for day in days for path in files(outbox / f".{day}")}
    assert len(sizes) == len(batch)
    assert all(not list((outbox / f".{day}" / "tmp").iterdir()) for day in days)
    # sent again, by a serial writer: nothing is rewritten
    before = {
        name: (outbox / f".{m.day}" / "new" / name).stat().st_mtime_ns
        for m in batch
        for name in [file_name(m.key)]
    }
    MaildirNotifier(outbox_dir=str(outbox), writers=1).send(batch)
    after = {
        name: (outbox / f".{m.day}" / "new" / name).stat().st_mtime_ns
        for m in batch
        for name in [file_name(m.key)]
    }
    assert after == before


def test_maildir_admin_alert_goes_to_the_admin_folder(tmp_path):
    outbox = tmp_path / "outbox"
    notifier = MaildirNotifier(outbox_dir=str(outbox))
    delivery = notifier.alert("alert:stock:2026-11-24", DAY, "Stock low", "Part 7 below 10.")
    assert delivery.status == SENT
    [path] = files(outbox / ".admin")
    msg = email.message_from_bytes(path.read_bytes())
    assert (msg["To"], msg["Subject"]) == ("ops@orderflow.example", "[orderflow] Stock low")
    assert not (outbox / f".{DAY}").exists()


def test_maildir_message_read_by_a_client_is_not_sent_again(tmp_path):
    outbox = tmp_path / "outbox"
    notifier = MaildirNotifier(outbox_dir=str(outbox))
    notifier.send(BATCH[:1])
    name = file_name(BATCH[0].key)
    folder = outbox / f".{DAY}"
    (folder / "new" / name).rename(folder / "cur" / f"{name}:2,S")
    assert notifier.send(BATCH[:1])[0].status == SENT
    assert [p.name for p in files(folder)] == [f"{name}:2,S"]


def test_maildir_header_injection_adds_no_header(tmp_path):
    sneaky = Message("k:1", DAY, "shipment", "ann@example.com\r\nCc: z@y", "Hi\r\nBcc: x@y", "b")
    MaildirNotifier(outbox_dir=str(tmp_path)).send([sneaky])
    [path] = files(tmp_path / f".{DAY}")
    msg = email.message_from_bytes(path.read_bytes())
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert msg["Subject"] == "Hi Bcc: x@y"
    assert msg.get_payload() == "b\r\n"


# SMTP


class Collector:
    """An aiosmtpd handler keeping every accepted envelope; answers chosen RCPTs with an error."""

    def __init__(self, replies: dict[str, str] | None = None):
        self.replies = dict(replies or {})
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.bodies: list[list[str]] = []  # the BODY= option of each MAIL FROM

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.replies:
            return self.replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        self.bodies.append([o for o in envelope.mail_options if o.upper().startswith("BODY=")])
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [email.message_from_bytes(content)["Message-ID"] for _, _, content in self.envelopes]


@contextmanager
def smtp_server(handler: Collector, **kwargs) -> Iterator[int]:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def smtp_notifier(tmp_path: Path, port: int, **kwargs) -> SmtpNotifier:
    return SmtpNotifier(
        host="127.0.0.1",
        port=port,
        timeout_seconds=5.0,
        sent_log_url=sqlite_url(tmp_path / "systems" / "notifier.sqlite"),
        **kwargs,
    )


def test_smtp_sends_each_message_once(tmp_path):
    handler = Collector()
    with smtp_server(handler) as port:
        deliveries = smtp_notifier(tmp_path, port).send(BATCH)
        assert [(d.key, d.status) for d in deliveries] == [(m.key, SENT) for m in BATCH]
        assert [(sender, rcpts) for sender, rcpts, _ in handler.envelopes] == [
            ("orders@orderflow.example", [parseaddr(m.to)[1]]) for m in BATCH
        ]
        assert handler.message_ids() == [message_id(m.key) for m in BATCH]
        assert handler.bodies == [[]] * len(BATCH)  # ASCII: nothing to announce
        first = email.message_from_bytes(handler.envelopes[0][2])
        assert (first["To"], first["Subject"]) == (BATCH[0].to, BATCH[0].subject)

        again = smtp_notifier(tmp_path, port).send([*BATCH, BATCH[0]])
        assert [d.status for d in again] == [SENT] * 4
        assert len(handler.envelopes) == len(BATCH)
        # The bulk form (a frame per batch) goes through the same sends.
        frame = pd.DataFrame([*BATCH, BATCH[0]], columns=list(Message._fields))
        pd.testing.assert_frame_equal(
            smtp_notifier(tmp_path, port).send_frame(frame), deliveries_frame(again)
        )
        assert len(handler.envelopes) == len(BATCH)


def test_smtp_eight_bit_body_arrives_intact(tmp_path):
    handler = Collector()
    greeting = Message("shipped:104", DAY, "shipment", "zoe@example.com", "Shipped", "Grüße, Zoë")
    with smtp_server(handler) as port:
        assert smtp_notifier(tmp_path, port).send([greeting])[0].status == SENT
    [(_, _, content)] = handler.envelopes
    assert handler.bodies == [["BODY=8BITMIME"]]
    body = email.message_from_bytes(content).get_payload(decode=True).decode()
    assert body == "Grüße, Zoë\r\n"


def test_smtp_recipient_refused_is_rejected_and_recorded(tmp_path):
    handler = Collector({"bob@example.com": "550 no such user"})
    with smtp_server(handler) as port:
        deliveries = smtp_notifier(tmp_path, port).send(BATCH)
        assert [d.status for d in deliveries] == [SENT, REJECTED, SENT]
        assert "550 no such user" in deliveries[1].detail
        assert handler.message_ids() == [message_id(BATCH[0].key), message_id(BATCH[2].key)]
        # The refusal is the answer for good: the message is not offered again.
        again = smtp_notifier(tmp_path, port).send(BATCH)
        assert again == deliveries
        assert len(handler.envelopes) == 2


def test_smtp_transient_refusal_defers_only_that_message(tmp_path):
    handler = Collector({"bob@example.com": "451 try again later"})
    with smtp_server(handler) as port:
        with pytest.raises(SystemUnavailable, match=r"deferred 1 message.*451 try again later"):
            smtp_notifier(tmp_path, port).send(BATCH)
        assert len(handler.envelopes) == 2
        handler.replies.clear()
        deliveries = smtp_notifier(tmp_path, port).send(BATCH)
        assert [d.status for d in deliveries] == [SENT] * 3
        assert handler.message_ids()[2:] == [message_id("backorder:102")]


def test_smtp_disconnect_mid_batch_keeps_what_was_accepted(tmp_path):
    handler = Collector({"bob@example.com": "421 shutting down"})
    with smtp_server(handler) as port:
        with pytest.raises(SystemUnavailable, match="421 shutting down"):
            smtp_notifier(tmp_path, port).send(BATCH)
        handler.replies.clear()
        deliveries = smtp_notifier(tmp_path, port).send(BATCH)
        assert [d.status for d in deliveries] == [SENT] * 3
        # The first message was recorded before the failure: it went out once.
        assert handler.message_ids() == [message_id(m.key) for m in BATCH]


def test_smtp_nothing_listening_is_unavailable(tmp_path):
    port = free_port()
    with pytest.raises(SystemUnavailable, match=rf"notifier \(SMTP 127\.0\.0\.1:{port}\)"):
        smtp_notifier(tmp_path, port).send(BATCH)


def test_smtp_injected_faults(tmp_path):
    handler = Collector()
    with smtp_server(handler) as port:
        with pytest.raises(SystemUnavailable, match="injected outage"):
            smtp_notifier(tmp_path, port, faults=FaultInjection(down=True)).send(BATCH)
        faults = FaultInjection(reject_keys=["refund:103"])
        deliveries = smtp_notifier(tmp_path, port, faults=faults).send(BATCH)
        assert [d.status for d in deliveries] == [SENT, SENT, REJECTED]
        assert len(handler.envelopes) == 2


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"orders", b"right-horse-battery")
    # handled=False: aiosmtpd itself answers 535 to a failed login.
    return AuthResult(success=ok, handled=False)


def test_smtp_login_with_the_password_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ORDERFLOW_SMTP_PASSWORD", "right-horse-battery")
    handler = Collector()
    with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
        resource = smtp_notifier(
            tmp_path, port, username="orders", password=dg.EnvVar("ORDERFLOW_SMTP_PASSWORD")
        )
        with dg.build_resources({"notifier": resource}) as resources:
            assert [d.status for d in resources.notifier.send(BATCH[:1])] == [SENT]
    assert len(handler.envelopes) == 1


def test_smtp_wrong_password_is_refused_without_showing_it(tmp_path):
    handler = Collector()
    with smtp_server(handler, authenticator=authenticator, auth_require_tls=False) as port:
        notifier = smtp_notifier(tmp_path, port, username="orders", password="wrong-secret-42")
        with pytest.raises(SystemRefused, match="ORDERFLOW_SMTP_PASSWORD") as caught:
            notifier.send(BATCH)
    error = caught.value
    chain = [error, error.__cause__, error.__context__ if not error.__suppress_context__ else None]
    assert not any("wrong-secret-42" in f"{e} {e!r}" for e in chain if e is not None)
    assert handler.envelopes == []


# Webhook


@contextmanager
def webhook(status: int) -> Iterator[tuple[str, list[dict]]]:
    bodies: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_alert_posts_to_the_webhook_and_mails_the_admins(tmp_path):
    with webhook(200) as (url, bodies):
        notifier = MaildirNotifier(outbox_dir=str(tmp_path), webhook_url=url)
        delivery = notifier.alert("alert:ledger:1", DAY, "Ledger off", "Off by 3.")
    assert delivery.status == SENT
    assert [(b["subject"], b["body"], b["key"]) for b in bodies] == [
        ("Ledger off", "Off by 3.", "alert:ledger:1")
    ]
    assert len(files(tmp_path / ".admin")) == 1


def test_alert_webhook_server_error_is_unavailable(tmp_path):
    with webhook(500) as (url, bodies):
        notifier = MaildirNotifier(outbox_dir=str(tmp_path), webhook_url=url)
        with pytest.raises(SystemUnavailable, match="HTTP 500"):
            notifier.alert("alert:ledger:1", DAY, "Ledger off", "Off by 3.")
    assert len(bodies) == 1
