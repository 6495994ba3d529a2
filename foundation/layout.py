"""The data dir's layout, the one description the simulator, the systems and the pipeline share.

DATA/landing/catalog/<table>.parquet and DATA/landing/orders/<YYYY-MM-DD>/batch-NNN.jsonl.gz (the
order system's export), DATA/simulator/ (store.json, defect manifests, scratch space),
DATA/systems/ (the local outside systems' databases and outage state), DATA/outbox/ (e-mails),
DATA/reports/, DATA/warehouse.duckdb and DATA/duckdb_tmp/ (what DuckDB spills to disk). Names
starting with "." are temporary files that readers must ignore.
"""

from datetime import date
from pathlib import Path

# In the order their keys reference each other.
CATALOG_TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp")
BATCH_SUFFIX = ".jsonl.gz"


def landing_dir(data_dir: Path) -> Path:
    """Return the landing zone root (DATA/landing)."""
    return Path(data_dir) / "landing"


def catalog_dir(data_dir: Path) -> Path:
    """Return the directory of the catalog parquet files."""
    return landing_dir(data_dir) / "catalog"


def catalog_path(data_dir: Path, table: str) -> Path:
    """Return the landing path of one catalog table."""
    return zone_catalog_path(landing_dir(data_dir), table)


def zone_catalog_path(landing: Path, table: str) -> Path:
    """Return the path of one catalog table in a landing zone (wherever it is mounted)."""
    return Path(landing) / "catalog" / f"{table}.parquet"


def orders_dir(data_dir: Path) -> Path:
    """Return the root of the daily order batches."""
    return zone_orders_dir(landing_dir(data_dir))


def zone_orders_dir(landing: Path) -> Path:
    """Return the root of the daily order batches in a landing zone."""
    return Path(landing) / "orders"


def day_dir(data_dir: Path, day: date) -> Path:
    """Return the directory of one order date's batches."""
    return orders_dir(data_dir) / day.isoformat()


def batch_name(number: int) -> str:
    """Return the file name of batch `number` (1-based), e.g. batch-001.jsonl.gz."""
    return f"batch-{number:03d}{BATCH_SUFFIX}"


def batch_files(directory: Path) -> list[Path]:
    """Return the visible batch files of a day directory, sorted by name."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.name.startswith("batch-") and p.name.endswith(BATCH_SUFFIX) and p.is_file()
    )


def simulator_dir(data_dir: Path) -> Path:
    """Return the simulator's own state directory (never read by the pipeline's assets)."""
    return Path(data_dir) / "simulator"


def store_path(data_dir: Path) -> Path:
    """Return the path of store.json, the description of the generated store."""
    return simulator_dir(data_dir) / "store.json"


def manifest_path(data_dir: Path, day: date) -> Path:
    """Return the path of the defect manifest of one order date."""
    return simulator_dir(data_dir) / "defects" / f"{day.isoformat()}.json"


def systems_dir(data_dir: Path) -> Path:
    """Return where the local outside systems keep their databases and outage state."""
    return Path(data_dir) / "systems"


def outbox_dir(data_dir: Path) -> Path:
    """Return the local mail drop of the customer e-mails."""
    return Path(data_dir) / "outbox"


def reports_dir(data_dir: Path) -> Path:
    """Return where the daily reports are written."""
    return Path(data_dir) / "reports"


def duckdb_temp_dir(data_dir: Path) -> Path:
    """Return where DuckDB spills what does not fit in its memory limit (emptied by DuckDB)."""
    return Path(data_dir) / "duckdb_tmp"


def warehouse_path(data_dir: Path) -> Path:
    """Return the DuckDB warehouse file."""
    return Path(data_dir) / "warehouse.duckdb"
