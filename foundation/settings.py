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


def retry_delay_seconds() -> float:
    """First retry delay of outside-system steps (`$ORDERFLOW_RETRY_DELAY_S`, default 2 s)."""
    return float(os.environ.get("ORDERFLOW_RETRY_DELAY_S", "2"))


def retry_max() -> int:
    """Retries of an outside-system step before the run fails (`$ORDERFLOW_RETRY_MAX`, default 3)."""
    return int(os.environ.get("ORDERFLOW_RETRY_MAX", "3"))


def chunk_months() -> int:
    """Calendar months per chunk of a step's window (`$ORDERFLOW_CHUNK_MONTHS`, default 1).

    0 works through the whole window at once (the memory a backfill needs grows with its range).
    """
    text = os.environ.get("ORDERFLOW_CHUNK_MONTHS", "1")
    if not text.strip().isdigit():
        raise ValueError(
            f"ORDERFLOW_CHUNK_MONTHS={text!r}: give a whole number of months (0: no chunks)"
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
