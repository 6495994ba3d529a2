"""Where reports are published: a folder under the data dir (local), any mounted path in production."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg


class ReportStore(dg.ConfigurableResource):
    """A folder of Markdown reports and their images, written atomically."""

    directory: str
    """e.g. $ORDERFLOW_DATA_DIR/reports."""

    def write(self, name: str, data: bytes) -> Path:
        """Write one file (temporary name, then rename) and return its path."""
        folder = Path(self.directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)  # noqa: PTH105 - atomic rename onto an existing report
        return path
