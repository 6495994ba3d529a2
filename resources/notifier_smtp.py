"""The notifier's SMTP backend: the messages `MaildirNotifier` would write, sent through a server.

A sent log (SQL table `sent_messages`, SQLite by default) makes sending idempotent: keys it holds are
answered from it, the others go out over one connection per call and are recorded as the server
accepts (or permanently refuses) them, committed every `RECORD_EVERY` messages. SMTP is therefore
at-least-once: a crash between the server's acceptance and that commit sends those messages again on
the next run, with the same Message-ID (derived from the key), so receivers can drop the duplicate.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Sequence
from email.utils import parseaddr
from typing import TYPE_CHECKING

from foundation.batches import chunks
from foundation.sqldb.connections import read_connection, write_transaction
from foundation.sqldb.schema import engine_with_schema
from resources.faults import FaultInjection, SystemRefused, SystemUnavailable
from resources.notifier import (
    REJECTED,
    SENT,
    SYSTEM,
    Delivery,
    Message,
    NotifierResource,
    message_id,
    render,
)
from simulator.outages import fault_state_file, inject

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import sqlalchemy as sa

PASSWORD_VARIABLE = "ORDERFLOW_SMTP_PASSWORD"
RECORD_EVERY = 100
"""Accepted messages recorded per commit: what a crash can send twice."""
_LOOKUP_CHUNK = 500

# sent_day is the business day the message belongs to (its Date: header), not the wall clock.
SCHEMA = (
    """create table if not exists sent_messages (
        message_key varchar primary key, message_id varchar not null, sent_day varchar not null,
        recipient varchar not null, status varchar not null, detail varchar)""",
)


class SmtpNotifier(NotifierResource):
    """Messages sent through an SMTP server (e.g. the company's relay), once per key."""

    host: str
    """The SMTP server, e.g. smtp.example.com."""
    port: int = 587
    """587 for submission (with `starttls`), 25 for a relay inside the network."""
    username: str | None = None
    """Log in as this user when set."""
    password: str | None = None
    """The user's password: dg.EnvVar("ORDERFLOW_SMTP_PASSWORD"), never written in config."""
    starttls: bool = False
    """Upgrade the connection to TLS (verifying the server's certificate) before logging in."""
    timeout_seconds: float = 30.0
    """Socket timeout for connecting and for each SMTP command."""
    sent_log_url: str
    """SQLAlchemy URL of the sent log, e.g. sqlite:////data/systems/notifier.sqlite."""
    faults: FaultInjection = FaultInjection()

    def sent_before(self, message: Message) -> bool:
        """Whether a message with this key was already sent (or refused for good)."""
        engine = engine_with_schema(self.sent_log_url, SCHEMA, SYSTEM)
        return message.key in _sent_before(engine, [message.key])

    def send(self, messages: Sequence[Message]) -> list[Delivery]:
        """Send each message not sent before; return a delivery per message, in order.

        A transient reply (4xx) to one message does not stop the others: they are sent and recorded,
        then `SystemUnavailable` is raised so that a retry sends the deferred ones.
        """
        faults = inject(SYSTEM, self.faults, fault_state_file(self.sent_log_url, SYSTEM))
        return self._send(messages, set(faults.reject_keys))

    def _send_alert(self, message: Message) -> Delivery:
        return self._send([message], set())[0]

    def _send(self, messages: Sequence[Message], refused: set[str]) -> list[Delivery]:
        engine = engine_with_schema(self.sent_log_url, SCHEMA, SYSTEM)
        known = _sent_before(engine, [m.key for m in messages if m.key not in refused])
        sender_address = parseaddr(self.sender)[1]
        deliveries: list[Delivery] = []
        pending: list[dict[str, str | None]] = []
        deferred: list[str] = []
        smtp: smtplib.SMTP | None = None
        try:
            for message in messages:
                if message.key in refused:
                    deliveries.append(
                        Delivery(
                            message.key,
                            message_id(message.key),
                            REJECTED,
                            f"recipient {message.to} rejected the message (injected bounce)",
                        )
                    )
                    continue
                delivery = known.get(message.key)
                if delivery is None:
                    if smtp is None:
                        # Connect only when there is something to send: a retry after a complete
                        # batch succeeds even while the server is down.
                        smtp = self._connect()
                    outcome = self._deliver(smtp, sender_address, message)
                    if isinstance(outcome, str):
                        deferred.append(f"{message.key}: {outcome}")
                        continue
                    delivery = known[message.key] = outcome
                    pending.append(_sent_row(message, delivery))
                    if len(pending) >= RECORD_EVERY:
                        _record(engine, pending)
                        pending.clear()
                deliveries.append(delivery)
        except smtplib.SMTPAuthenticationError as error:
            # Not chained: the server's reply is quoted (redacted) and nothing else may leak.
            raise self._login_fault(error) from None
        except OSError as error:  # smtplib's errors are OSErrors too
            raise self._fault(error) from error
        finally:
            try:
                if pending:
                    _record(engine, pending)
            finally:
                if smtp is not None:
                    _close(smtp)
        if deferred:
            raise SystemUnavailable(
                f"{self._server()} deferred {len(deferred)} message(s) with a transient reply "
                f"(first {self._redacted(deferred[0])}); the others are sent, a retry sends these"
            )
        return deliveries

    def _server(self) -> str:
        return f"{SYSTEM} (SMTP {self.host}:{self.port})"

    def _redacted(self, text: str) -> str:
        return text.replace(self.password, "[password]") if self.password else text

    def _connect(self) -> smtplib.SMTP:
        if self.username and not self.password:
            raise SystemRefused(
                f"{self._server()}: a username is configured but no password; "
                f"set {PASSWORD_VARIABLE}"
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds)
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username and self.password:
                smtp.login(self.username, self.password)
        except BaseException:
            _close(smtp)
            raise
        return smtp

    def _deliver(self, smtp: smtplib.SMTP, sender_address: str, message: Message) -> Delivery | str:
        """The server's decision on one message, or the reason it deferred it (a 4xx reply)."""
        key, mid = message.key, message_id(message.key)
        recipient = parseaddr(message.to)[1]
        if "@" not in recipient or not recipient.isascii():
            return Delivery(key, mid, REJECTED, f"recipient {message.to!r} is not a valid address")
        text = render(message, self.sender)
        # An 8-bit body must be announced (RFC 6152) where the server can take it.
        options = ["BODY=8BITMIME"] if not text.isascii() and smtp.has_extn("8bitmime") else []
        try:
            smtp.sendmail(sender_address, [recipient], text, mail_options=options)
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = error.recipients[recipient]
            detail = f"recipient {recipient} refused: {code} {_text(reply)}"
        except smtplib.SMTPDataError as error:
            code, detail = error.smtp_code, f"message refused: {error.smtp_code} {_text(error)}"
            if code != 421:
                # smtplib leaves the transaction open when DATA itself is refused.
                with contextlib.suppress(smtplib.SMTPServerDisconnected):
                    smtp.rset()
        else:
            return Delivery(key, mid, SENT)
        if 500 <= code < 600:
            return Delivery(key, mid, REJECTED, detail)
        if 400 <= code < 500 and code != 421:  # 421: the server is closing the connection
            return detail
        raise SystemUnavailable(f"{self._server()} {self._redacted(detail)}")

    def _login_fault(self, error: smtplib.SMTPAuthenticationError) -> Exception:
        reply = self._redacted(f"{error.smtp_code} {_text(error)}")
        if 400 <= error.smtp_code < 500:
            return SystemUnavailable(f"{self._server()} could not log in for now: {reply}")
        return SystemRefused(
            f"{self._server()} refused the login of {self.username!r} ({reply}): "
            f"check {PASSWORD_VARIABLE} and the username"
        )

    def _fault(self, error: OSError) -> Exception:
        server = self._server()
        if isinstance(error, smtplib.SMTPNotSupportedError):
            return SystemRefused(f"{server}: {error} Check `starttls`, `username` and the port.")
        if isinstance(error, smtplib.SMTPServerDisconnected):
            return SystemUnavailable(f"{server} closed the connection: {error}")
        if isinstance(error, smtplib.SMTPResponseException):
            code = error.smtp_code
            what = "answered"
            if isinstance(error, smtplib.SMTPSenderRefused):
                what = f"refused the sender {error.sender!r}:"
            text = self._redacted(f"{server} {what} {code} {_text(error)}")
            return SystemRefused(text) if 500 <= code < 600 else SystemUnavailable(text)
        if isinstance(error, smtplib.SMTPException):
            return SystemRefused(self._redacted(f"{server}: {error}"))
        if isinstance(error, ssl.SSLCertVerificationError):
            return SystemRefused(
                f"{server}: TLS certificate not trusted ({error.verify_message}); check `host`"
            )
        return SystemUnavailable(f"{server} unreachable: {type(error).__name__}: {error}")


def _text(reply: bytes | str | smtplib.SMTPResponseException) -> str:
    if isinstance(reply, smtplib.SMTPResponseException):
        reply = reply.smtp_error
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())


def _sent_row(message: Message, delivery: Delivery) -> dict[str, str | None]:
    return {
        "k": message.key,
        "m": delivery.message_id,
        "d": message.day,
        "r": parseaddr(message.to)[1] or message.to,
        "s": delivery.status,
        "x": delivery.detail,
    }


def _sent_before(engine: sa.Engine, keys: Sequence[str]) -> dict[str, Delivery]:
    """The recorded delivery of each of these keys that the sent log holds."""
    import sqlalchemy as sa

    query = sa.text(
        "select message_key, message_id, status, detail from sent_messages"
        " where message_key in :keys"
    ).bindparams(sa.bindparam("keys", expanding=True))
    found: dict[str, Delivery] = {}
    with read_connection(engine, SYSTEM) as conn:
        for chunk in chunks(sorted(set(keys)), _LOOKUP_CHUNK):
            found.update(
                (row[0], Delivery(*row)) for row in conn.execute(query, {"keys": list(chunk)})
            )
    return found


def _record(engine: sa.Engine, rows: Sequence[dict[str, str | None]]) -> None:
    import sqlalchemy as sa

    with write_transaction(engine, SYSTEM) as conn:
        conn.execute(
            sa.text(
                "insert into sent_messages (message_key, message_id, sent_day, recipient, status,"
                " detail) values (:k, :m, :d, :r, :s, :x) on conflict do nothing"
            ),
            list(rows),
        )


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
