"""Settings from environment variables, with defaults that work on a laptop, resolved here only."""

from __future__ import annotations

import os
from pathlib import Path

from foundation import layout
from foundation.sqldb.connections import sqlite_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """`$ORDERFLOW_DATA_DIR`, else `data/` in the project (never the current directory)."""
    configured = os.environ.get("ORDERFLOW_DATA_DIR")
    return Path(configured).expanduser().resolve() if configured else PROJECT_ROOT / "data"


RULES_ENV = "ORDERFLOW_RULES"


def rules_file() -> Path:
    """The business rules: `$ORDERFLOW_RULES`, else `rules.yaml` in the project."""
    configured = os.environ.get(RULES_ENV)
    return Path(configured).expanduser().resolve() if configured else PROJECT_ROOT / "rules.yaml"


def warehouse_database() -> str:
    """`$ORDERFLOW_WAREHOUSE` (any DuckDB path, `md:` too), else `warehouse.duckdb` in the data dir."""
    return os.environ.get("ORDERFLOW_WAREHOUSE") or str(layout.warehouse_path(data_dir()))


def system_url(configured: str, env_var: str, file_name: str) -> str:
    """A system's database URL: the configured one, else `$<env_var>`, else a SQLite file.

    Read when the system is called, not when definitions load: a URL may carry a password, so it
    never becomes config, and a run's config may set only `faults` (e.g. in the launchpad).
    """
    default = sqlite_url(layout.systems_dir(data_dir()) / file_name)
    return configured or os.environ.get(env_var) or default


OUTBOX_KINDS = ("maildir", "sql")


def outbox_kind() -> str:
    """The local outbox of the notifier: `$ORDERFLOW_OUTBOX`, `maildir` or `sql`.

    Default `maildir` (a file per message, read by any mail client), or `sql` when
    `$ORDERFLOW_OUTBOX_URL` is set (one table: resources/notifier_outbox.py, for large stores).
    """
    default = "sql" if os.environ.get("ORDERFLOW_OUTBOX_URL") else "maildir"
    kind = os.environ.get("ORDERFLOW_OUTBOX", "").strip().lower() or default
    if kind not in OUTBOX_KINDS:
        raise ValueError(
            f"ORDERFLOW_OUTBOX={kind!r} is not an outbox: set it to {' or '.join(OUTBOX_KINDS)}"
        )
    return kind


def outbox_url(configured: str = "") -> str:
    """The SQL outbox's URL: the configured one, else `$ORDERFLOW_OUTBOX_URL`, else a SQLite file.

    The file is outbox/outbox.sqlite in the data dir, beside the Maildir folders.
    """
    default = sqlite_url(layout.outbox_dir(data_dir()) / "outbox.sqlite")
    return configured or os.environ.get("ORDERFLOW_OUTBOX_URL") or default


def retry_delay_seconds() -> float:
    """First retry delay of outside-system steps (`$ORDERFLOW_RETRY_DELAY_S`, default 2 s)."""
    return float(os.environ.get("ORDERFLOW_RETRY_DELAY_S", "2"))


def retry_max() -> int:
    """Retries of an outside-system step before the run fails (`$ORDERFLOW_RETRY_MAX`, default 3)."""
    return int(os.environ.get("ORDERFLOW_RETRY_MAX", "3"))


def chunk_months() -> int | None:
    """Calendar months per chunk of a step's window (`$ORDERFLOW_CHUNK_MONTHS`), None for `auto`.

    `auto` (the default) sizes chunks to the store: as many months as hold about 30,000 orders
    (`foundation.partitions.months_for`), so a small store pays the fixed cost per chunk a few
    times and a large one keeps a month's memory. 0 works through the whole window at once (the
    memory a backfill needs grows with its range).
    """
    text = os.environ.get("ORDERFLOW_CHUNK_MONTHS", "auto").strip()
    if text == "auto":
        return None
    if not text.isdigit():
        raise ValueError(
            f"ORDERFLOW_CHUNK_MONTHS={text!r}: give auto (sized to the store) or a whole number "
            "of months (0: no chunks)"
        )
    return int(text)


def duckdb_config(data: Path | None = None) -> dict[str, str]:
    """The warehouse connection's DuckDB settings: its memory limit, and where it spills beyond it.

    `$ORDERFLOW_DUCKDB_MEMORY_LIMIT` (default 1GB; DuckDB's own would be 80 % of the machine) and
    `$ORDERFLOW_DUCKDB_TEMP_DIR` (default DATA/duckdb_tmp; DuckDB's own is the working directory
    for the in-memory instance the warehouse file is attached to).
    """
    return {
        "memory_limit": os.environ.get("ORDERFLOW_DUCKDB_MEMORY_LIMIT") or "1GB",
        "temp_directory": os.environ.get("ORDERFLOW_DUCKDB_TEMP_DIR")
        or str(layout.duckdb_temp_dir(data or data_dir())),
    }


def ui_url() -> str:
    """The Dagster UI's address, for links in alerts (`$ORDERFLOW_UI_URL`)."""
    return os.environ.get("ORDERFLOW_UI_URL", "http://127.0.0.1:3000").rstrip("/")


def max_concurrent_steps() -> int:
    """Steps of a multi-day run that run at once (`$ORDERFLOW_MAX_CONCURRENT`, default 2).

    Each runs in a process of its own; 1 runs every run's steps one after another, in-process.
    """
    return _whole_number("ORDERFLOW_MAX_CONCURRENT", "2", "steps at once (1: one after another)")


def parallel_from_days() -> int:
    """Runs over at least this many days run steps in parallel (`$ORDERFLOW_PARALLEL_FROM_DAYS`).

    Default 366, backfills of more than a year: a process per step costs ~0.5-3 s on 2 cores, more
    than a shorter range's steps gain by overlapping (README, "Which runs run steps in parallel").
    """
    return _whole_number("ORDERFLOW_PARALLEL_FROM_DAYS", "366", "days")


def warehouse_pool() -> str | None:
    """One pool for every warehouse step (`$ORDERFLOW_WAREHOUSE_POOL`), else a pool per step.

    For a warehouse file on a network volume that run pods on several machines mount, whose
    file locks are not to be trusted: the pool's one slot then keeps the writers apart.
    """
    return os.environ.get("ORDERFLOW_WAREHOUSE_POOL") or None


def _whole_number(name: str, default: str, unit: str) -> int:
    text = os.environ.get(name, default)
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{name}={text!r}: give a whole number of {unit}, 1 or more")
    return int(text)


PUSHGATEWAY_URL_ENV = "ORDERFLOW_PUSHGATEWAY_URL"


def pushgateway_url() -> str:
    """Prometheus' Pushgateway for the metrics (`$ORDERFLOW_PUSHGATEWAY_URL`); empty: metrics off."""
    return os.environ.get(PUSHGATEWAY_URL_ENV, "").strip().rstrip("/")
