"""Benchmark: a full-history staging backfill against its two floors, in one invocation.

    python bench/backfill.py --scale 1 [--work-dir bench/out]

Phases, each in its own process so that its peak RSS is its own:
1. `empty`    — Dagster's bookkeeping: an empty-bodied copy of the daily staging assets (same
                partitions, same checks, single-run backfill) materialised over the whole history.
2. `duckdb`   — plain DuckDB: read_json over the same landing files into orders and lineitem tables.
3. `backfill` — the real staging backfill over the whole history, as one run.
The figure of merit is backfill / (empty + duckdb); machines here are noisy, so only ratios from
one invocation are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HISTORY = ("2020-01-01", "2026-08-02")
RANGE_TAGS = {
    "dagster/asset_partition_range_start": HISTORY[0],
    "dagster/asset_partition_range_end": HISTORY[1],
}


def _instance(work: Path):
    """A SQLite-backed instance in a fresh folder: the storage `dagster dev` uses by default."""
    import dagster as dg

    home = Path(tempfile.mkdtemp(dir=work, prefix="dagster_home_"))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def phase_empty(data: Path, work: Path) -> dict:
    import dagster as dg

    from assets.staging.orders import CHECKS, staging_orders
    from orchestration_defs.partitions import daily_partitions

    specs = [spec for spec in staging_orders.specs]
    checks = list(CHECKS)

    @dg.multi_asset(
        specs=specs,
        check_specs=checks,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        name="empty_staging_orders",
    )
    def empty_staging_orders(context):
        context.partition_time_window  # noqa: B018 - the real asset reads it too
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key)
        for check in checks:
            yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    started = time.perf_counter()
    result = dg.materialize([empty_staging_orders], instance=_instance(work), tags=RANGE_TAGS)
    assert result.success
    return {"seconds": time.perf_counter() - started}


def phase_duckdb(data: Path, work: Path) -> dict:
    import duckdb

    database = work / "plain.duckdb"
    database.unlink(missing_ok=True)
    pattern = str(data / "landing" / "orders" / "*" / "*.jsonl.gz")
    started = time.perf_counter()
    with duckdb.connect(str(database)) as con:
        con.execute(
            "create table raw as select * from read_json(?, format = 'newline_delimited')",
            [pattern],
        )
        con.execute("create table orders as select * exclude (lines) from raw")
        con.execute(
            "create table lineitem as select o_orderkey as l_orderkey, o_orderdate as l_orderdate,"
            " unnest(lines, recursive := true) from raw"
        )
        orders = con.execute("select count(*) from orders").fetchall()[0][0]
    return {"seconds": time.perf_counter() - started, "orders": orders}


def phase_backfill(data: Path, work: Path) -> dict:
    import dagster as dg

    from assets.staging.catalog import staging_catalog
    from assets.staging.orders import staging_orders
    from resources.order_system import LandingZoneOrderSystem
    from resources.warehouse import WarehouseResource

    database = work / "warehouse.duckdb"
    database.unlink(missing_ok=True)
    resources = {
        "warehouse": WarehouseResource(database=str(database)),
        "order_system": LandingZoneOrderSystem(landing_dir=str(data / "landing")),
    }
    instance = _instance(work)
    assert dg.materialize([staging_catalog], resources=resources, instance=instance).success
    started = time.perf_counter()
    result = dg.materialize(
        [staging_orders, staging_catalog],
        selection=[staging_orders],
        resources=resources,
        instance=instance,
        tags=RANGE_TAGS,
    )
    seconds = time.perf_counter() - started
    assert result.success
    metadata = result.asset_materializations_for_node("staging_orders")[0].metadata
    return {
        "seconds": seconds,
        "orders": metadata["records_staged"].value,
        "step_seconds": metadata["duration_s"].value,
    }


def peak_rss_mb() -> float:
    """This process's peak resident set since exec (VmHWM; ru_maxrss would include the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PHASES = {"empty": phase_empty, "duckdb": phase_duckdb, "backfill": phase_backfill}


def run_phase(name: str, data: Path, work: Path) -> dict:
    """Run one phase in a child process and return its figures with its peak RSS."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            name,
            "--data-dir",
            str(data),
            "--work-dir",
            str(work),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(work)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument(
        "--data-dir", type=Path, help="an existing store to use instead of generating one"
    )
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        figures = PHASES[args.phase](args.data_dir, args.work_dir)
        figures["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(figures))
        return

    work = args.work_dir / f"sf{args.scale:g}"
    work.mkdir(parents=True, exist_ok=True)
    data = args.data_dir or work / "data"
    if not (data / "landing" / "catalog").is_dir():
        from simulator.history import generate_store

        started = time.perf_counter()
        generate_store(data, args.scale)
        print(
            f"generated SF {args.scale:g} store in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )

    results = {name: run_phase(name, data, work) for name in ("empty", "duckdb", "backfill")}
    orders = results["backfill"]["orders"]
    floors = results["empty"]["seconds"] + results["duckdb"]["seconds"]
    print(f"SF {args.scale:g}: {orders:,} orders over {HISTORY[0]} .. {HISTORY[1]}")
    print(f"{'phase':<10} {'seconds':>9} {'orders/s':>10} {'peak RSS MB':>12}")
    for name, figures in results.items():
        rate = orders / figures["seconds"] if figures["seconds"] else 0
        print(
            f"{name:<10} {figures['seconds']:>9.1f} {rate:>10,.0f} {figures['peak_rss_mb']:>12,.0f}"
        )
    print(f"staging step alone: {results['backfill']['step_seconds']:.1f} s")
    print(f"ratio backfill / (empty + duckdb) = {results['backfill']['seconds'] / floors:.2f}")
    shutil.rmtree(work / "dagster_home", ignore_errors=True)


if __name__ == "__main__":
    main()
