"""Maildir delivery: message text and files, with nothing but the standard library.

The Maildir notifier's file side, apart from its Dagster resource: a backfill delivers millions
of files, so every per-message step here is the cheapest the standard library offers.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime

# (file name, Message-ID digest, key, day, kind, to, subject, body) of one message.
Item = tuple[str, str, str, str, str, str, str, str]
# Below this many messages a call writes them in its own thread: a pool would cost more.
THREAD_THRESHOLD = 1_000


def header(value: str) -> str:
    """A header value on one line: no line break may smuggle another header in."""
    # A printable value holds no whitespace but plain spaces: it is already clean unless it has
    # a run of them or one at an end (the common case skips the split).
    if value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " ":
        return value
    return " ".join(value.split())


@functools.lru_cache(maxsize=64)
def _fixed_header(value: str) -> str:
    # The sender and the message kinds: a handful of values, each cleaned once.
    return header(value)


@functools.lru_cache(maxsize=4096)
def _date_header(day: str) -> str:
    return format_datetime(datetime.fromisoformat(day).replace(tzinfo=UTC))


def _crlf(body: str) -> str:
    """Line ends as CRLF, whatever the body used."""
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    return body.replace("\n", "\r\n")


def render(sender: str, item: Item) -> bytes:
    """The RFC 5322 text of a message (plain text; the date is the business day)."""
    _name, digest, key, day, kind, to, subject, body = item
    text = (
        f"From: {_fixed_header(sender)}\r\n"
        f"To: {header(to)}\r\n"
        f"Subject: {header(subject)}\r\n"
        f"Date: {_date_header(day)}\r\n"
        f"Message-ID: <{digest}@orderflow>\r\n"
        f"X-Orderflow-Key: {header(key)}\r\n"
        f"X-Orderflow-Kind: {_fixed_header(kind)}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n" + _crlf(body) + "\r\n"
    )
    return text.encode("utf-8")


@contextmanager
def _open_folder(folder: str) -> Iterator[tuple[int, int]]:
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


def deliver_folder(folder: str, sender: str, items: Sequence[Item]) -> None:
    """Deliver messages into one Maildir folder: each written whole in tmp/, renamed into new/."""
    # A tmp/ name of this writer's own: overlapping runs writing the same message would otherwise
    # share a file, one truncating it under the other or finding it already renamed away.
    writer = f".{os.getpid()}.{threading.get_ident()}"
    with _open_folder(folder) as (tmp, new):
        for item in items:
            name = item[0]
            draft = name + writer
            # Plain os calls relative to the open directories: creating a file is the cost of a
            # message, and neither pathlib nor the kernel's walk of the whole path should add.
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=tmp)
            try:
                os.write(fd, render(sender, item))
            finally:
                os.close(fd)
            os.rename(draft, name, src_dir_fd=tmp, dst_dir_fd=new)


def deliver(pending: dict[str, list[Item]], sender: str, writers: int = 1) -> None:
    """Deliver every folder's messages; `writers` threads, a folder per task, when there are many.

    One writer is the fastest on a local disk, where threads contend for the interpreter and the
    file system's locks (bench/RESULTS.md, issue #3); more can help where a file creation waits on
    a network.
    """
    if writers <= 1 or sum(len(items) for items in pending.values()) < THREAD_THRESHOLD:
        for folder, items in pending.items():
            deliver_folder(folder, sender, items)
        return
    with ThreadPoolExecutor(writers) as pool:
        tasks = [pool.submit(deliver_folder, f, sender, items) for f, items in pending.items()]
        for task in tasks:
            task.result()
