"""The notifier: e-mails to customers (back-order notices, shipments, refunds) and admin alerts.

Local default `MaildirNotifier`: a Maildir outbox under the data dir, one Maildir++ folder per
order day (`.2026-11-24/new/...`) and one for admin alerts (`.admin`), readable by any mail client.
`SmtpNotifier` (resources/notifier_smtp.py) sends the same messages through an SMTP server.
Admin alerts can also go to a webhook (`webhook_url`). Every message has an idempotency key (e.g.
`shipped:<order key>`); its file name and Message-ID derive from it, so sending again is a no-op.
"""

from __future__ import annotations

import functools
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import dagster as dg
import requests

from resources.faults import FaultInjection, SystemRefused, SystemUnavailable, inject

SYSTEM = "notifier"
SENT, REJECTED = "sent", "rejected"
ADMIN_FOLDER = "admin"


@dataclass(frozen=True)
class Message:
    """An e-mail to send; `key` is its idempotency key and `day` the business day it belongs to."""

    key: str
    day: str
    kind: str
    to: str
    subject: str
    body: str


@dataclass(frozen=True)
class Delivery:
    """What happened to a message: sent (now or before) or rejected, with its Message-ID."""

    key: str
    message_id: str
    status: str
    detail: str | None = None


def _digest(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def message_id(key: str) -> str:
    """The Message-ID of the message with this idempotency key (stable across re-sends)."""
    return f"<{_digest(key)}@orderflow>"


def file_name(key: str) -> str:
    """The Maildir file name of the message with this idempotency key."""
    return f"{_digest(key)}.orderflow"


@functools.lru_cache(maxsize=4096)
def _date_header(day: str) -> str:
    return format_datetime(datetime.fromisoformat(day).replace(tzinfo=UTC))


def _header(value: str) -> str:
    # Header values come from templates and catalog text; no line breaks may smuggle headers in.
    return " ".join(value.split())


@functools.lru_cache(maxsize=64)
def _fixed_header(value: str) -> str:
    # The sender and the message kinds: a handful of values, each cleaned once.
    return _header(value)


def render(message: Message, sender: str, digest: str | None = None) -> bytes:
    """The RFC 5322 text of a message (plain ASCII text; the date is the business day)."""
    text = (
        f"From: {_fixed_header(sender)}\r\n"
        f"To: {_header(message.to)}\r\n"
        f"Subject: {_header(message.subject)}\r\n"
        f"Date: {_date_header(message.day)}\r\n"
        f"Message-ID: <{digest or _digest(message.key)}@orderflow>\r\n"
        f"X-Orderflow-Key: {_header(message.key)}\r\n"
        f"X-Orderflow-Kind: {_fixed_header(message.kind)}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        + message.body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
        + "\r\n"
    )
    return text.encode("utf-8")


def post_webhook(url: str, subject: str, body: str, key: str, timeout: float = 10.0) -> None:
    """POST an admin alert as JSON to a webhook (Slack-style `text` plus structured fields)."""
    # Chat webhook URLs carry their secret: no message below may include the URL.
    try:
        response = requests.post(
            url,
            json={"text": f"{subject}\n{body}", "subject": subject, "body": body, "key": key},
            timeout=timeout,
        )
    except requests.RequestException as error:
        raise SystemUnavailable(f"alert webhook unreachable: {type(error).__name__}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise SystemUnavailable(f"alert webhook answered HTTP {response.status_code}")
    if response.status_code >= 400:
        raise SystemRefused(
            f"alert webhook refused the alert: HTTP {response.status_code}; "
            "check ORDERFLOW_ALERT_WEBHOOK"
        )


class NotifierResource(dg.ConfigurableResource, ABC):
    """Customer e-mail and admin alerts; sending is batched and idempotent by message key."""

    admin_address: str = "ops@orderflow.example"
    """Where admin alerts go."""
    sender: str = "Orderflow <orders@orderflow.example>"
    """The From: of every message."""
    webhook_url: str | None = None
    """Admin alerts are also POSTed here as JSON when set (e.g. a chat webhook)."""

    @abstractmethod
    def send(self, messages: Sequence[Message]) -> list[Delivery]:
        """Send each message not sent before; return a delivery per message, in order."""

    @abstractmethod
    def sent_before(self, message: Message) -> bool:
        """Whether a message with this key was already sent."""

    def alert(self, key: str, day: str, subject: str, body: str) -> Delivery:
        """Send an admin alert (and POST it to the webhook when one is configured), once per key.

        The webhook is posted before the e-mail is recorded, and only while the e-mail is unsent:
        a retry after a failed POST posts again, a re-run after success posts nothing.
        """
        message = Message(
            key, day, "admin_alert", self.admin_address, f"[orderflow] {subject}", body
        )
        if self.webhook_url and not self.sent_before(message):
            post_webhook(self.webhook_url, subject, body, key)
        return self.send([message])[0]


class MaildirNotifier(NotifierResource):
    """Messages written to a Maildir outbox under the data dir: one folder per day, one for admins."""

    outbox_dir: str = ""
    """The Maildir root; empty: outbox/ in the data dir."""
    writers: int = 1
    """Threads writing message files. One is fastest on a local disk (measured: threads contend
    for the interpreter and the file system's locks); more can help on a high-latency one."""
    faults: FaultInjection = FaultInjection()

    def _folder(self, message: Message) -> Path:
        name = ADMIN_FOLDER if message.kind == "admin_alert" else message.day
        return self._root() / f".{name}"

    def _root(self) -> Path:
        from orchestration_defs import settings

        return Path(self.outbox_dir) if self.outbox_dir else settings.data_dir() / "outbox"

    def sent_before(self, message: Message) -> bool:
        """Whether a message with this key was already sent."""
        return file_name(message.key) in _delivered(self._folder(message))

    def send(self, messages: Sequence[Message]) -> list[Delivery]:
        """Send each message not sent before; return a delivery per message, in order."""
        root = self._root()
        inject(SYSTEM, self.faults, root / ".faults")
        refused = set(self.faults.reject_keys)
        # Folder paths as plain strings, each listed once per call: a backfill sends millions.
        folders: dict[str, tuple[str, set[str]]] = {}
        pending: dict[str, list[tuple[str, str, Message]]] = {}
        deliveries = []
        for message in messages:
            digest = _digest(message.key)
            if message.key in refused:
                deliveries.append(
                    Delivery(
                        message.key,
                        f"<{digest}@orderflow>",
                        REJECTED,
                        f"recipient {message.to} rejected the message (injected bounce)",
                    )
                )
                continue
            folder_name = ADMIN_FOLDER if message.kind == "admin_alert" else message.day
            folder = folders.get(folder_name)
            if folder is None:
                path = root / f".{folder_name}"
                folder = folders[folder_name] = (str(path), _delivered(path))
            name = f"{digest}.orderflow"
            if name not in folder[1]:
                folder[1].add(name)
                pending.setdefault(folder[0], []).append((name, digest, message))
            deliveries.append(Delivery(message.key, f"<{digest}@orderflow>", SENT))
        self._write(pending)
        return deliveries

    def _write(self, pending: dict[str, list[tuple[str, str, Message]]]) -> None:
        """Deliver the new messages, a folder per task; several threads when there are many."""
        sender = self.sender

        def write(folder: str, items: list[tuple[str, str, Message]]) -> None:
            with _maildir(folder) as (tmp, new):
                for name, digest, message in items:
                    _deliver(tmp, new, name, render(message, sender, digest))

        if self.writers <= 1 or sum(len(items) for items in pending.values()) < 1_000:
            for folder, items in pending.items():
                write(folder, items)
            return
        # Threads keep several file creations in flight, for file systems where one mostly waits
        # on the network or the disk. Every task is a whole folder.
        with ThreadPoolExecutor(self.writers) as pool:
            for task in [pool.submit(write, f, items) for f, items in pending.items()]:
                task.result()


@contextmanager
def _maildir(folder: str) -> Iterator[tuple[int, int]]:
    """The folder's tmp/ and new/ directories, open: files are created relative to them."""
    tmp = os.open(f"{folder}/tmp", os.O_RDONLY | os.O_DIRECTORY)
    try:
        new = os.open(f"{folder}/new", os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield tmp, new
        finally:
            os.close(new)
    finally:
        os.close(tmp)


def _deliver(tmp: int, new: int, name: str, data: bytes) -> None:
    """Maildir delivery: write the whole file in tmp/, then rename it atomically into new/."""
    # Plain os calls relative to the open directories: creating a file is the cost of a
    # message, and neither pathlib nor the kernel's walk of the whole path should add to it.
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=tmp)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(name, name, src_dir_fd=tmp, dst_dir_fd=new)


def _delivered(folder: Path) -> set[str]:
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # os.listdir: a folder can hold thousands of names, and Path objects cost more than the read.
    names = set(os.listdir(folder / "new"))  # noqa: PTH208
    # A mail client moves read messages to cur/ and appends ":2,<flags>" to the name.
    names.update(name.split(":", 1)[0] for name in os.listdir(folder / "cur"))  # noqa: PTH208
    return names
