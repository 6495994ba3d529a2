"""Injected defects: corrupted records and duplicate deliveries, recorded in a manifest.

Each record is corrupted with probability `corrupt_rate`; the corrupted kinds cycle through
CORRUPTION_KINDS from a random start, so every kind shows up once a day has enough defects. Each
record left intact is, with probability `duplicate_rate`, re-sent unchanged at the end of the next
batch (an extra batch after the last one). A corrupted record always stays on one line. Every
injected defect is listed (file, 1-based line, kind, o_orderkey) so tests can check the pipeline
rejected or de-duplicated exactly those.
"""

import random
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from simulator.records import CENT, parse_record, to_json_text


class DefectKind(StrEnum):
    """Kinds of injected defects (values are what the manifest records)."""

    MALFORMED_JSON = "malformed_json"
    MISSING_FIELD = "missing_field"
    MISTYPED_FIELD = "mistyped_field"
    NEGATIVE_QUANTITY = "negative_quantity"
    UNKNOWN_CUSTOMER = "unknown_customer"
    UNKNOWN_PART = "unknown_part"
    TOTAL_MISMATCH = "total_mismatch"
    NON_UTF8 = "non_utf8"
    DUPLICATE = "duplicate"


# Defects that make a record invalid (the pipeline must reject it).
CORRUPTION_KINDS = tuple(kind for kind in DefectKind if kind is not DefectKind.DUPLICATE)
# Every kind, duplicates included (a duplicate is valid but already delivered).
DEFECT_KINDS = tuple(DefectKind)


@dataclass(frozen=True)
class Defect:
    """One injected defect, as listed in DATA/simulator/defects/<day>.json."""

    file: str
    line: int
    kind: str
    o_orderkey: int | None

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest entry."""
        return asdict(self)


@dataclass(frozen=True)
class KeyLimits:
    """Largest valid keys, so that unknown_* defects point just beyond them."""

    customer_count: int
    part_count: int


def inject_defects(
    batches: list[list[bytes]],
    batch_names: list[str],
    *,
    rng: random.Random,
    limits: KeyLimits,
    corrupt_rate: float,
    duplicate_rate: float,
) -> tuple[list[list[bytes]], list[Defect]]:
    """Return the batches with defects applied (maybe one batch more) and the defects list."""
    if corrupt_rate <= 0 and duplicate_rate <= 0:
        return batches, []
    out: list[list[bytes]] = [list(batch) for batch in batches]
    resent: list[list[bytes]] = [[] for _ in range(len(batches) + 1)]
    defects: list[Defect] = []
    cycle_start = rng.randrange(len(CORRUPTION_KINDS))
    corrupted = 0
    for b, batch in enumerate(batches):
        for i, record in enumerate(batch):
            if corrupt_rate > 0 and rng.random() < corrupt_rate:
                kind = CORRUPTION_KINDS[(cycle_start + corrupted) % len(CORRUPTION_KINDS)]
                corrupted += 1
                out[b][i] = corrupt_record(record, kind, rng, limits)
                defects.append(Defect(batch_names[b], i + 1, kind, _orderkey(record)))
            elif duplicate_rate > 0 and rng.random() < duplicate_rate:
                resent[b + 1].append(record)
    if resent[-1]:
        out.append([])
    for b in range(1, len(out)):
        for record in resent[b]:
            out[b].append(record)
            defects.append(
                Defect(batch_names[b], len(out[b]), DefectKind.DUPLICATE, _orderkey(record))
            )
    defects.sort(key=lambda d: (d.file, d.line))
    return out, defects


def corrupt_record(record: bytes, kind: DefectKind, rng: random.Random, limits: KeyLimits) -> bytes:
    """Return a corrupted copy of one valid record (a single line without its newline)."""
    order = parse_record(record)
    lines = order["lines"]
    line = rng.choice(lines)
    if kind is DefectKind.MALFORMED_JSON:
        text = to_json_text(order)
        # Any proper prefix of a JSON object is invalid JSON.
        return text[: rng.randrange(1, len(text) - 1)].encode()
    if kind is DefectKind.MISSING_FIELD:
        target = rng.choice(["o_custkey", "o_totalprice", "o_orderdate", "l_quantity", "l_partkey"])
        del (line if target.startswith("l_") else order)[target]
    elif kind is DefectKind.MISTYPED_FIELD:
        choice = rng.randrange(3)
        if choice == 0:
            order["o_totalprice"] = "12a.5"
        elif choice == 1:
            line["l_quantity"] = "ten"
        else:
            order["lines"] = "x"
    elif kind is DefectKind.NEGATIVE_QUANTITY:
        line["l_quantity"] = -line["l_quantity"]
    elif kind is DefectKind.UNKNOWN_CUSTOMER:
        order["o_custkey"] = limits.customer_count + rng.randint(1, 1000)
    elif kind is DefectKind.UNKNOWN_PART:
        line["l_partkey"] = limits.part_count + rng.randint(1, 1000)
    elif kind is DefectKind.TOTAL_MISMATCH:
        delta = Decimal(rng.randint(1, 500)) * CENT
        order["o_totalprice"] = (order["o_totalprice"] + delta).quantize(CENT)
    elif kind is DefectKind.NON_UTF8:
        return _with_invalid_utf8_comment(order, rng)
    else:
        raise ValueError(f"not a corruption kind: {kind!r}")
    return to_json_text(order).encode()


def _with_invalid_utf8_comment(order: dict[str, Any], rng: random.Random) -> bytes:
    """Splice two invalid UTF-8 bytes into o_comment; the line stays valid JSON apart from the bytes."""
    comment = order["o_comment"]
    order["o_comment"] = "\x00SPLICE\x00"
    marker = to_json_text("\x00SPLICE\x00").encode()
    prefix, suffix = to_json_text(order).encode().split(marker, 1)
    escaped = to_json_text(comment).encode()[1:-1]
    # Only split where no escape sequence can be cut in two.
    at = rng.randint(0, len(escaped)) if b"\\" not in escaped else 0
    return prefix + b'"' + escaped[:at] + b"\xff\xfe" + escaped[at:] + b'"' + suffix


def _orderkey(record: bytes) -> int | None:
    try:
        return int(parse_record(record)["o_orderkey"])
    except (ValueError, KeyError, TypeError):
        return None
