"""The notifier: e-mails to customers (back-order notices, shipments, refunds) and admin alerts.

Local default `MaildirNotifier`: a Maildir outbox under the data dir, one Maildir++ folder per
order day (`.2026-11-24/new/...`) and one for admin alerts (`.admin`), readable by any mail client.
`OutboxNotifier` (resources/notifier_outbox.py) keeps the same messages in one SQL table instead,
for stores too large for a file per message. `SmtpNotifier` (resources/notifier_smtp.py) sends
them through an SMTP server.
Admin alerts can also go to a webhook (`webhook_url`). Every message has an idempotency key (e.g.
`shipped:<order key>`); its file name and Message-ID derive from it, so sending again is a no-op.
The local outboxes keep a key once per folder (its day; one folder for admin alerts): every key
the pipeline makes belongs to one day, its order's.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import dagster as dg

from foundation import layout, settings
from resources import maildir
from resources.faults import FaultInjection, SystemRefused, SystemUnavailable
from simulator.outages import inject

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd

SYSTEM = "notifier"
SENT, REJECTED = "sent", "rejected"
ADMIN_FOLDER = "admin"


class Message(NamedTuple):
    """An e-mail to send; `key` is its idempotency key and `day` the business day it belongs to."""

    # A tuple, like Delivery; a Maildir item is its fields after the file name and digest.

    key: str
    day: str
    kind: str
    to: str
    subject: str
    body: str


class Delivery(NamedTuple):
    """What happened to a message: sent (now or before) or rejected, with its Message-ID."""

    # A tuple, not a dataclass: cheaper to build, and a backfill makes 1.7 M of them
    # (bench/RESULTS.md, issue 17).

    key: str
    message_id: str
    status: str
    detail: str | None = None


def _digest(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def message_id(key: str) -> str:
    """The Message-ID of the message with this idempotency key (stable across re-sends)."""
    return _message_id_of(_digest(key))


def file_name(key: str) -> str:
    """The Maildir file name of the message with this idempotency key."""
    return _file_name_of(_digest(key))


def _message_id_of(digest: str) -> str:
    return f"<{digest}@orderflow>"


def _file_name_of(digest: str) -> str:
    return f"{digest}.orderflow"


def render(message: Message, sender: str, digest: str | None = None) -> bytes:
    """The RFC 5322 text of a message (plain ASCII text; the date is the business day)."""
    return maildir.render(sender, _item("", digest or _digest(message.key), message))


def _item(name: str, digest: str, message: Message) -> maildir.Item:
    return (name, digest, *message)


def post_webhook(url: str, subject: str, body: str, key: str, timeout: float = 10.0) -> None:
    """POST an admin alert as JSON to a webhook (Slack-style `text` plus structured fields)."""
    import requests

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
    """Admin alerts are also POSTed here as JSON when set (e.g. a chat webhook). Its URL carries
    its token: set it with dg.EnvVar("ORDERFLOW_ALERT_WEBHOOK") so it stays out of config."""

    @abstractmethod
    def send(self, messages: Sequence[Message]) -> list[Delivery]:
        """Send each message not sent before; return a delivery per message, in order."""

    def send_frame(self, messages: pd.DataFrame) -> pd.DataFrame:
        """The bulk form of `send`: Message's fields as columns in, Delivery's fields out."""
        columns = [messages[field].tolist() for field in Message._fields]
        deliveries = self.send(list(map(Message._make, zip(*columns, strict=True))))
        return deliveries_frame(deliveries)

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
        return self._send_alert(message)

    def _send_alert(self, message: Message) -> Delivery:
        """Send an admin alert past the notifier's injected faults (outage state or config).

        Those faults stand for the customers' mail being down; the admins' channel must still
        carry the alert that says so (a run failing on the notifier's outage is reported).
        """
        return self.send([message])[0]


class LocalNotifier(NotifierResource, ABC):
    """A notifier keeping the messages itself, in an outbox: Message's fields go in as columns."""

    faults: FaultInjection = FaultInjection()

    def send(self, messages: Sequence[Message]) -> list[Delivery]:
        """Send each message not sent before; return a delivery per message, in order."""
        columns = [list(column) for column in zip(*messages, strict=True)]
        if not columns:  # still a call: an injected outage fails it
            columns = [[] for _ in Message._fields]
        return list(map(Delivery._make, zip(*self._deliver(columns), strict=True)))

    def _send_alert(self, message: Message) -> Delivery:
        columns = [[field] for field in message]
        return Delivery._make(next(zip(*self._deliver(columns, faults=False), strict=True)))

    def send_frame(self, messages: pd.DataFrame) -> pd.DataFrame:
        """The bulk form of `send`: Message's fields as columns in, Delivery's fields out."""
        import pandas as pd

        columns = [messages[field].tolist() for field in Message._fields]
        return pd.DataFrame(dict(zip(Delivery._fields, self._deliver(columns), strict=True)))

    def _deliver(self, columns: list[list], faults: bool = True) -> tuple[list, list, list, list]:
        """Deliver the messages given as columns (past injected faults if not `faults`)."""
        # Columns, not objects: a backfill sends 1.7 M messages, and objects built and taken apart
        # per message cost a large share of a Maildir file creation's time (bench/RESULTS.md,
        # issue 17).
        keys, tos = columns[0], columns[3]
        refused = (
            set(inject(SYSTEM, self.faults, self._fault_state()).reject_keys) if faults else set()
        )
        digests = [_digest(key) for key in keys]
        message_ids = [_message_id_of(digest) for digest in digests]
        statuses = [SENT] * len(keys)
        details: list[str | None] = [None] * len(keys)
        for index, key in enumerate(keys if refused else ()):
            if key in refused:
                statuses[index] = REJECTED
                details[index] = f"recipient {tos[index]} rejected the message (injected bounce)"
        if keys:
            self._store(digests, columns, statuses)
        return keys, message_ids, statuses, details

    @abstractmethod
    def _fault_state(self) -> Path:
        """Where the count of injected failing calls (`faults.outage_calls`) is kept."""

    @abstractmethod
    def _store(self, digests: list[str], columns: list[list], statuses: list[str]) -> None:
        """Keep each message whose status is SENT, once per key; `columns` are Message's fields."""


class MaildirNotifier(LocalNotifier):
    """Messages written to a Maildir outbox under the data dir: one folder per day, one for admins."""

    outbox_dir: str = ""
    """The Maildir root; empty: outbox/ in the data dir."""
    writers: int = 1
    """Threads writing message files, a day folder each (when more than one helps: maildir.deliver)."""

    def _folder(self, message: Message) -> Path:
        return self._root() / f".{folder_name(message.kind, message.day)}"

    def _root(self) -> Path:
        return Path(self.outbox_dir) if self.outbox_dir else layout.outbox_dir(settings.data_dir())

    def _fault_state(self) -> Path:
        return self._root() / ".faults"

    def sent_before(self, message: Message) -> bool:
        """Whether a message with this key was already sent."""
        return file_name(message.key) in _delivered(self._folder(message))

    def _store(self, digests: list[str], columns: list[list], statuses: list[str]) -> None:
        root = self._root()
        # Folder paths as plain strings, each listed once per call.
        folders: dict[str, tuple[str, set[str], list[maildir.Item]]] = {}
        pending: dict[str, list[maildir.Item]] = {}
        items = zip(digests, *columns, statuses, strict=True)
        for digest, key, day, kind, to, subject, body, status in items:
            if status == REJECTED:
                continue
            where = folder_name(kind, day)
            folder = folders.get(where)
            if folder is None:
                path = root / f".{where}"
                folder = folders[where] = (str(path), _delivered(path), [])
                pending[folder[0]] = folder[2]
            name = _file_name_of(digest)
            if name not in folder[1]:
                folder[1].add(name)
                folder[2].append((name, digest, key, day, kind, to, subject, body))
        maildir.deliver(
            {path: todo for path, todo in pending.items() if todo}, self.sender, self.writers
        )


def deliveries_frame(deliveries: Sequence[Delivery]) -> pd.DataFrame:
    """Deliveries as a frame with Delivery's fields as columns."""
    import pandas as pd

    return pd.DataFrame.from_records(list(deliveries), columns=list(Delivery._fields))


def folder_name(kind: str, day: str) -> str:
    """The Maildir++ folder of a message: its business day, or the admins' folder."""
    return ADMIN_FOLDER if kind == "admin_alert" else day


def _delivered(folder: Path) -> set[str]:
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # os.listdir: a folder can hold thousands of names, and Path objects cost more than the read.
    names = set(os.listdir(folder / "new"))  # noqa: PTH208
    # A mail client moves read messages to cur/ and appends ":2,<flags>" to the name.
    names.update(name.split(":", 1)[0] for name in os.listdir(folder / "cur"))  # noqa: PTH208
    return names
