import json
from collections import Counter, defaultdict
from datetime import date

import pytest
from sim_helpers import iter_records, parse, read_lines, total_cents

from foundation.layout import manifest_path, simulator_dir
from simulator.days import simulate_day
from simulator.defects import CORRUPTION_KINDS, DEFECT_KINDS, DefectKind
from simulator.store import load_store

REQUIRED_ORDER = ("o_orderkey", "o_custkey", "o_totalprice", "o_orderdate", "lines")
REQUIRED_LINE = ("l_linenumber", "l_partkey", "l_suppkey", "l_quantity", "l_extendedprice")


def problems(raw: bytes, customers: int, parts: int) -> set[str]:
    """The defect kinds a record shows (empty for a valid record)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Only the bytes are wrong: decoded leniently, the record is valid JSON.
        assert parse(raw.decode("latin-1"))["o_comment"]
        return {DefectKind.NON_UTF8}
    try:
        order = parse(text)
    except json.JSONDecodeError:
        return {DefectKind.MALFORMED_JSON}
    found = set()
    if any(k not in order for k in REQUIRED_ORDER) or any(
        k not in line
        for line in order.get("lines", [])
        if isinstance(line, dict)
        for k in REQUIRED_LINE
    ):
        return {DefectKind.MISSING_FIELD}
    if (
        not isinstance(order["lines"], list)
        or isinstance(order["o_totalprice"], str)
        or any(isinstance(line["l_quantity"], str) for line in order["lines"])
    ):
        return {DefectKind.MISTYPED_FIELD}
    if any(line["l_quantity"] < 0 for line in order["lines"]):
        found.add(DefectKind.NEGATIVE_QUANTITY)
    elif total_cents(order) != int(order["o_totalprice"] * 100):
        found.add(DefectKind.TOTAL_MISMATCH)
    if order["o_custkey"] > customers:
        found.add(DefectKind.UNKNOWN_CUSTOMER)
    if any(line["l_partkey"] > parts for line in order["lines"]):
        found.add(DefectKind.UNKNOWN_PART)
    return found


def manifests(data_dir):
    entries = {}
    for path in sorted((simulator_dir(data_dir) / "defects").glob("*.json")):
        for entry in json.loads(path.read_text()):
            entries[(path.stem, entry["file"], entry["line"])] = entry
    return entries


def test_kinds_constant():
    assert len(CORRUPTION_KINDS) == 8
    assert set(DEFECT_KINDS) == {*CORRUPTION_KINDS, DefectKind.DUPLICATE}
    assert "malformed_json" in DEFECT_KINDS


@pytest.mark.xdist_group("defect_store")
def test_every_defect_is_in_the_manifest_and_nothing_else_is_wrong(defect_store):
    info = load_store(defect_store)
    entries = manifests(defect_store)
    kinds = Counter(e["kind"] for e in entries.values())
    assert set(kinds) == set(DEFECT_KINDS), kinds
    valid_keys = Counter()
    records = {}
    for day, file, number, raw in iter_records(defect_store):
        assert b"\n" not in raw
        records[(day.isoformat(), file.name, number)] = raw
        entry = entries.get((day.isoformat(), file.name, number))
        found = problems(raw, info.customer_count, info.part_count)
        if entry is None or entry["kind"] == DefectKind.DUPLICATE:
            assert not found, (day, file.name, number, found)
            if entry is None:
                valid_keys[parse(raw)["o_orderkey"]] += 1
        else:
            assert entry["kind"] in found, (entry, found)
    assert set(entries) <= set(records)
    corrupted = sum(n for k, n in kinds.items() if k != DefectKind.DUPLICATE)
    # Every TPC-H order is landed once, either valid or corrupted (and listed).
    assert len(valid_keys) + corrupted == info.history_orders
    assert set(valid_keys.values()) == {1}
    assert 0.03 < corrupted / info.history_orders < 0.07


@pytest.mark.xdist_group("defect_store")
def test_duplicates_are_resent_unchanged_in_a_later_batch(defect_store):
    entries = manifests(defect_store)
    duplicates = [(k, e) for k, e in entries.items() if e["kind"] == DefectKind.DUPLICATE]
    assert duplicates
    extra_batch = False
    for (day, file, line), entry in duplicates:
        day_path = defect_store / "landing" / "orders" / day
        raw = read_lines(day_path / file)[line - 1]
        assert parse(raw)["o_orderkey"] == entry["o_orderkey"]
        number = int(file[len("batch-") : len("batch-") + 3])
        assert number >= 2
        previous = read_lines(day_path / f"batch-{number - 1:03d}.jsonl.gz")
        assert raw in previous
        extra_batch |= number == 3  # the store has 2 batches per day
    assert extra_batch


def test_simulated_day_defects_and_manifest_rewrite(day_store):
    day = date(2026, 9, 1)
    files = simulate_day(day_store, day, batches=2, corrupt_rate=0.5, duplicate_rate=0.5, seed=4)
    manifest = json.loads(manifest_path(day_store, day).read_text())
    assert manifest
    lines = {f.name: read_lines(f) for f in files}
    info = load_store(day_store)
    by_kind = defaultdict(list)
    for entry in manifest:
        assert set(entry) == {"file", "line", "kind", "o_orderkey"}
        raw = lines[entry["file"]][entry["line"] - 1]
        by_kind[entry["kind"]].append(raw)
        if entry["kind"] != DefectKind.DUPLICATE:
            assert entry["kind"] in problems(raw, info.customer_count, info.part_count)
    assert DefectKind.DUPLICATE in by_kind and set(by_kind) & set(CORRUPTION_KINDS)
    # Same inputs, same defects; regenerating without defects removes the manifest.
    assert (
        simulate_day(day_store, day, batches=2, corrupt_rate=0.5, duplicate_rate=0.5, seed=4)
        == files
    )
    assert json.loads(manifest_path(day_store, day).read_text()) == manifest
    simulate_day(day_store, day, batches=2)
    assert not manifest_path(day_store, day).exists()
