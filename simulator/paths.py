"""Layout of the data dir shared by the simulator and the pipeline.

DATA/landing/catalog/<table>.parquet, DATA/landing/orders/<YYYY-MM-DD>/batch-NNN.jsonl.gz (the
export) and DATA/simulator/ (store.json, defect manifests, scratch space). Names starting with
"." are temporary files that readers must ignore.
"""

from datetime import date
from pathlib import Path

CATALOG_TABLES = ("customer", "part", "supplier", "partsupp", "nation", "region")
BATCH_SUFFIX = ".jsonl.gz"


def landing_dir(data_dir: Path) -> Path:
    """Return the landing zone root (DATA/landing)."""
    return Path(data_dir) / "landing"


def catalog_dir(data_dir: Path) -> Path:
    """Return the directory of the catalog parquet files."""
    return landing_dir(data_dir) / "catalog"


def catalog_path(data_dir: Path, table: str) -> Path:
    """Return the landing path of one catalog table."""
    return catalog_dir(data_dir) / f"{table}.parquet"


def orders_dir(data_dir: Path) -> Path:
    """Return the root of the daily order batches."""
    return landing_dir(data_dir) / "orders"


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
