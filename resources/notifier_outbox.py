"""The notifier's SQL outbox: each message stored once, whole, as one row of `outbox_messages`.

The local outbox for large stores (`ORDERFLOW_OUTBOX=sql`): a SQLite file beside the Maildir
folders (outbox/outbox.sqlite in the data dir) by default, PostgreSQL by URL. A row is the message
exactly as `MaildirNotifier` writes it (the same RFC 5322 bytes) with its key, day, kind, recipient
and Message-ID: the transactional-outbox pattern, a table from which a relay hands messages to a
mail server. A call is one transaction, so a killed run leaves each message whole or absent, and
`on conflict do nothing` on the key stores a message once over re-sends and overlapping runs.

Why a table (bench/RESULTS.md, issue 18: 20,000-message calls, one invocation, shared machine):
a Maildir costs a file creation, an inode and a 4 KB block per message, and SF 10's 16.7 M
messages need more inodes than the disk has (deleting them also stalls it for minutes); the
table takes about 0.8 KB per message (text, columns, key index) and stores them several times
faster. Compressing the text (zlib, readable by sqlite3's `sqlar_uncompress`) saved 28 % of the
space and halved the rate, so the text is stored as it is. An mbox per day would append as fast,
but would need a key index, locks between overlapping runs and repair of a message cut by a
kill: what the database already does.

Read a message (on PostgreSQL, `convert_from(message, 'UTF8')`):
    sqlite3 data/outbox/outbox.sqlite "select message from outbox_messages where message_key = 'shipped:7'"
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from foundation import settings
from foundation.sqldb.bulk import fetch_all, insert_many
from foundation.sqldb.connections import read_connection, write_transaction
from foundation.sqldb.schema import engine_with_schema
from resources import maildir
from resources.notifier import REJECTED, SYSTEM, LocalNotifier, Message
from simulator.outages import fault_state_file

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import sqlalchemy as sa

# Its own name in schema_versions: the SMTP notifier's sent log may share the database.
SCHEMA_NAME = "outbox"
WHERE = f"{SYSTEM} outbox"
# A row table with a key index: the rows (0.6 KB of text each) are appended in the order sent,
# and only the key index takes random inserts. SQLite keeps the bytes of `bytea` as a BLOB.
SCHEMA = (
    """create table if not exists outbox_messages (
        message_key varchar primary key, day varchar(10) not null, kind varchar(32) not null,
        recipient varchar not null, message_id varchar not null, message bytea not null)""",
)
COLUMNS = ("message_key", "day", "kind", "recipient", "message_id", "message")


class OutboxNotifier(LocalNotifier):
    """Messages stored in a SQL outbox table, once per key: SQLite by default, PostgreSQL by URL."""

    url: str = ""
    """SQLAlchemy URL; empty: $ORDERFLOW_OUTBOX_URL, else outbox/outbox.sqlite in the data dir."""

    def _engine(self) -> sa.Engine:
        return engine_with_schema(settings.outbox_url(self.url), SCHEMA, SCHEMA_NAME)

    def _fault_state(self) -> Path:
        return fault_state_file(settings.outbox_url(self.url), SYSTEM)

    def sent_before(self, message: Message) -> bool:
        """Whether a message with this key was already sent."""
        with read_connection(self._engine(), WHERE) as conn:
            return bool(
                fetch_all(
                    conn, "select 1 from outbox_messages where message_key = ?", (message.key,)
                )
            )

    def _store(self, digests: list[str], columns: list[list], statuses: list[str]) -> None:
        keys, days, kinds, tos, subjects, bodies = columns
        sender = self.sender
        # In key order, consecutive inserts land beside each other in the key index.
        order = sorted(range(len(keys)), key=keys.__getitem__)

        def rows():
            # Rendered as they are inserted: a call holds its frame, not also its texts.
            for i in order:
                if statuses[i] != REJECTED:
                    digest, key, day, kind, to = digests[i], keys[i], days[i], kinds[i], tos[i]
                    item = ("", digest, key, day, kind, to, subjects[i], bodies[i])
                    message = maildir.render(sender, item)
                    yield key, day, kind, to, f"<{digest}@orderflow>", message

        with write_transaction(self._engine(), WHERE) as conn:
            insert_many(conn, "outbox_messages", COLUMNS, rows(), "on conflict do nothing")
