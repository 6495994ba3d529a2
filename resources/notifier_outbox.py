"""The notifier's SQL outbox: each message stored once, whole, as one row of `outbox_messages`.

The local outbox for large stores (`ORDERFLOW_OUTBOX=sql`): a SQLite file beside the Maildir
folders (outbox/outbox.sqlite in the data dir) by default, PostgreSQL by URL. A row is the message
exactly as `MaildirNotifier` writes it (the same RFC 5322 bytes) with its key, day, kind, recipient
and Message-ID: the transactional-outbox pattern, a table from which a relay can hand the messages
to a mail server. A call is one transaction, so a killed run leaves each message whole or absent,
and `on conflict do nothing` stores a message once over re-sends and overlapping runs.

Why a table. Measured on this project's 2-core machine while other work shared it, both notifiers
sending the same 20,000-message frames alternately in one invocation: the Maildir stored 2,300 to
6,600 messages/s (a file, an inode and a 4 KB block each: SF 10's 16.7 M messages need more inodes
than the disk has free, and deleting them stalls the disk for minutes), this table 49,000 to
51,000 messages/s in 860 bytes each (text, columns and index), with a call's Python allocations
peaking at 8 MB. Compressing the text (zlib, readable by sqlite3's `sqlar_uncompress`) saved 28 %
of the space and halved the rate, so the text is stored as it is. An mbox per day would append as
fast, but would need a key index, locks between overlapping runs and the repair of a message cut
by a kill: what the database already does.

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
from resources.notifier import REJECTED, SYSTEM, LocalNotifier, Message, folder_name
from simulator.outages import fault_state_file

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import sqlalchemy as sa

# Its own name in schema_versions: the SMTP notifier's sent log may share the database.
SCHEMA_NAME = "outbox"
OUTBOX = f"{SYSTEM} outbox"
# A row table: rows (0.6 KB of text each) are appended in the order sent. The key is unique
# within its folder, as a Maildir's file names are: every key the pipeline makes belongs to one
# day (its order's), and admin alerts share one folder. Indexed by folder first, a backfill's
# keys land at the end of the index, day after day, rather than all over an index of every key
# (which halved the rate by 1.3 M messages, and falling). SQLite keeps `bytea` bytes as a BLOB.
SCHEMA = (
    """create table if not exists outbox_messages (
        folder varchar not null, message_key varchar not null, day varchar not null,
        kind varchar not null, recipient varchar not null, message_id varchar not null,
        message bytea not null, primary key (folder, message_key))""",
)
COLUMNS = ("folder", "message_key", "day", "kind", "recipient", "message_id", "message")


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
        with read_connection(self._engine(), OUTBOX) as conn:
            found = fetch_all(
                conn,
                "select 1 from outbox_messages where folder = ? and message_key = ?",
                (folder_name(message.kind, message.day), message.key),
            )
        return bool(found)

    def _store(self, digests: list[str], columns: list[list], statuses: list[str]) -> None:
        keys, days, kinds, tos, subjects, bodies = columns
        sender = self.sender
        folders = list(map(folder_name, kinds, days))
        # In index order, consecutive inserts land beside each other.
        order = sorted(range(len(keys)), key=lambda i: (folders[i], keys[i]))

        def rows():
            # Rendered as they are inserted: a call holds its frame, not also its texts.
            for i in order:
                if statuses[i] != REJECTED:
                    digest, key, day, kind, to = digests[i], keys[i], days[i], kinds[i], tos[i]
                    message = maildir.render(
                        sender, ("", digest, key, day, kind, to, subjects[i], bodies[i])
                    )
                    yield folders[i], key, day, kind, to, f"<{digest}@orderflow>", message

        with write_transaction(self._engine(), OUTBOX) as conn:
            insert_many(conn, "outbox_messages", COLUMNS, rows(), "on conflict do nothing")
