"""Writing one order date of the export: split into batches, inject defects, land atomically.

A day's records (already in o_orderkey order) are split into N contiguous batches like SQL's
ntile(N) (fewer than N when the day has fewer orders), defects are applied, and each batch is
gzipped with mtime=0 (deterministic bytes) and written atomically; a file already holding the same
bytes is left alone, and batch files of an earlier version of the day that no longer exist are
removed. The day's defect manifest is rewritten (or removed when there is none).
"""

import gzip
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from foundation.layout import batch_files, batch_name, day_dir, manifest_path
from simulator.atomic import atomic_write_bytes, write_if_changed
from simulator.defects import Defect, KeyLimits, inject_defects
from simulator.errors import SimulatorError
from simulator.seeding import day_rng

GZIP_LEVEL = 6


@dataclass(frozen=True)
class DefectOptions:
    """How many defects to inject, and the seed of their random stream."""

    corrupt_rate: float = 0.0
    duplicate_rate: float = 0.0
    seed: int = 0


@dataclass
class DayResult:
    """What writing one day produced."""

    day: date
    files: list[Path] = field(default_factory=list)
    written: int = 0
    defects: list[Defect] = field(default_factory=list)


def validate_options(batches: int, corrupt_rate: float, duplicate_rate: float) -> None:
    """Raise SimulatorError for a batch count below 1 or a rate outside [0, 1]."""
    if batches < 1:
        raise SimulatorError(f"batches must be at least 1, got {batches}")
    for name, rate in (("corrupt rate", corrupt_rate), ("duplicate rate", duplicate_rate)):
        if not 0 <= rate <= 1:
            raise SimulatorError(f"{name} must be between 0 and 1, got {rate}")


def split_batches(records: list[bytes], batches: int) -> list[list[bytes]]:
    """Split records into `batches` contiguous chunks, the first ones one longer (SQL ntile)."""
    count = min(batches, len(records))
    size, extra = divmod(len(records), count) if count else (0, 0)
    chunks, start = [], 0
    for b in range(count):
        end = start + size + (1 if b < extra else 0)
        chunks.append(records[start:end])
        start = end
    return chunks


def encode_batch(records: list[bytes]) -> bytes:
    """Return the gzipped JSONL bytes of a batch (one record per line, newline-terminated)."""
    return gzip.compress(b"".join(r + b"\n" for r in records), GZIP_LEVEL, mtime=0)


def write_day(
    data_dir: Path,
    day: date,
    records: list[bytes],
    *,
    batches: int,
    scale: float,
    limits: KeyLimits,
    options: DefectOptions,
) -> DayResult:
    """Land one day's records as batch files plus its defect manifest."""
    chunks = split_batches(records, batches)
    names = [batch_name(n) for n in range(1, len(chunks) + 2)]
    defects: list[Defect] = []
    if options.corrupt_rate > 0 or options.duplicate_rate > 0:
        chunks, defects = inject_defects(
            chunks,
            names,
            rng=day_rng("defects", day, scale, options.seed),
            limits=limits,
            corrupt_rate=options.corrupt_rate,
            duplicate_rate=options.duplicate_rate,
        )
    directory = day_dir(data_dir, day)
    directory.mkdir(parents=True, exist_ok=True)
    result = DayResult(day=day, defects=defects)
    for name, chunk in zip(names, chunks, strict=False):
        path = directory / name
        result.written += write_if_changed(path, encode_batch(chunk))
        result.files.append(path)
    for stale in set(batch_files(directory)) - set(result.files):
        stale.unlink()
    _write_manifest(data_dir, day, defects)
    return result


def _write_manifest(data_dir: Path, day: date, defects: list[Defect]) -> None:
    path = manifest_path(data_dir, day)
    if not defects:
        path.unlink(missing_ok=True)
        return
    body = [d.to_dict() for d in defects]
    atomic_write_bytes(path, (json.dumps(body, indent=1) + "\n").encode())
