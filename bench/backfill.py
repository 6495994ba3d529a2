"""Benchmark: a full-history backfill of the whole order-to-cash graph against its floors.

    python bench/backfill.py --scale 1 [--work-dir bench/out] [--data-dir existing/store]
    python bench/backfill.py --scale 1 --clean    # delete the runs' outputs, when done measuring

Phases, each in its own process so that its peak RSS is its own:
1. `empty`    — Dagster's bookkeeping: an empty-bodied copy of every daily asset of the graph
                (bench/empty.py: same keys, partitions, deps, checks and pool, single-run
                backfill) materialised over the whole history in one run.
2. `duckdb`   — the staging floor: plain DuckDB read_json over the same landing files.
3. `backfill` — the real graph over the whole history in one run (catalog and stock seeded first,
                untimed), with the time split into staging (reading and validation), outside-system
                calls (inventory, carrier, notifier, accounting) and the fulfillment steps' own SQL.
4. `maildir`  — the local outbox's file-system floor: as many Maildir deliveries as the backfill
                made (same day folders, same message sizes), with plain os calls and nothing else.
The figure of merit is backfill / (empty + duckdb); machines here are noisy, so only ratios from
one invocation are compared (the notifier's calls against the `maildir` floor).

    python bench/backfill.py --bookkeeping [--days N]

runs only the `empty` phase, once per instance kind, over the whole history or its first N days:
SQLite (dagster.yaml); Dagster's own PostgreSQL storage on deploy/local_postgres.py's server
without event batching, and with the batch size `make dev` sets; and `make dev`'s instance itself
(dagster.postgres.yaml: that batch size, and planned events in batches too). It reports Dagster's
bookkeeping per asset-partition for each. It reads no store, so the scale factor does not matter.

Each invocation leaves its outputs (millions of files at SF 1) under the work dir: deleting them
makes this disk discard the freed blocks for many minutes, and file creation meanwhile ran up to
10 x slower (bench/RESULTS.md), which would skew whatever is measured next. `--clean` deletes
them once measuring is over.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from foundation import layout  # noqa: E402

HISTORY = ("2020-01-01", "2026-08-02")
# What an invocation leaves under the work dir, by name prefix; `--clean` deletes these.
INSTANCE, RUN, FLOOR = "dagster_home_", "run-", "maildir-"
PARTITIONS = (dt.date.fromisoformat(HISTORY[1]) - dt.date.fromisoformat(HISTORY[0])).days + 1
RANGE_TAGS = {
    "dagster/asset_partition_range_start": HISTORY[0],
    "dagster/asset_partition_range_end": HISTORY[1],
}


def _instance(work: Path):
    """The instance in BENCH_INSTANCE_HOME, else a SQLite one with Dagster's defaults."""
    import dagster as dg

    if os.environ.get("BENCH_INSTANCE_HOME"):
        return dg.DagsterInstance.from_config(os.environ["BENCH_INSTANCE_HOME"])
    home = Path(tempfile.mkdtemp(dir=work, prefix=INSTANCE))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def _daily_assets():
    from assets.staging.orders import staging_orders
    from orchestration_defs.definitions import ANALYTICS_ASSETS, FULFILLMENT_ASSETS

    return [
        staging_orders,
        *(a for a in (*FULFILLMENT_ASSETS, *ANALYTICS_ASSETS) if a.partitions_def is not None),
    ]


def _step_seconds(result) -> dict[str, float]:
    """Each successful step's duration in a run, by step key."""
    return {
        event.step_key: event.event_specific_data.duration_ms / 1000
        for event in result.all_events
        if event.event_type_value == "STEP_SUCCESS"
    }


def range_tags(days: int) -> dict[str, str]:
    """A single-run backfill's tags for the first `days` days of the history."""
    end = dt.date.fromisoformat(HISTORY[0]) + dt.timedelta(days=days - 1)
    return {**RANGE_TAGS, "dagster/asset_partition_range_end": end.isoformat()}


def phase_empty(data: Path, work: Path) -> dict:
    import dagster as dg

    from bench.empty import empty_copy

    copies = [empty_copy(real) for real in _daily_assets()]
    instance = _instance(work)
    started = time.perf_counter()
    tags = range_tags(int(os.environ.get("BENCH_DAYS", PARTITIONS)))
    result = dg.materialize(copies, instance=instance, tags=tags)
    seconds = time.perf_counter() - started
    assert result.success
    events = Counter(
        entry.dagster_event_type.value
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event_type
    )
    return {
        "seconds": seconds,
        "events": dict(events),
        "assets": sum(len(c.keys) for c in copies),
        "steps": {
            key.removeprefix("empty_"): value for key, value in _step_seconds(result).items()
        },
    }


def phase_duckdb(data: Path, work: Path) -> dict:
    import duckdb

    database = work / "plain.duckdb"
    database.unlink(missing_ok=True)
    pattern = str(layout.orders_dir(data) / "*" / "*.jsonl.gz")
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

    from assets.fulfillment.allocations import inventory_stock
    from assets.staging.catalog import staging_catalog
    from orchestration_defs.definitions import ANALYTICS_ASSETS
    from tests.helpers import resources_for

    # A new folder per run: deleting a previous run's 1.5 M outbox files here would slow this
    # run's own file creation (the disk is still discarding the freed blocks); `--clean` does it
    # when measuring is over.
    root = work / f"{RUN}{time.time_ns()}"
    root.mkdir(parents=True)
    layout.landing_dir(root).symlink_to(
        layout.landing_dir(data).resolve(), target_is_directory=True
    )
    resources = resources_for(root)
    instance = _instance(work)
    daily = _daily_assets()
    whole_history = [a for a in ANALYTICS_ASSETS if a.partitions_def is None]
    everything = [staging_catalog, inventory_stock, *daily, *whole_history]
    started = time.perf_counter()
    assert dg.materialize(
        everything, selection=[staging_catalog], resources=resources, instance=instance
    ).success
    assert dg.materialize(
        everything, selection=[inventory_stock], resources=resources, instance=instance
    ).success
    seeding = time.perf_counter() - started
    started = time.perf_counter()
    result = dg.materialize(
        everything, selection=daily, resources=resources, instance=instance, tags=RANGE_TAGS
    )
    seconds = time.perf_counter() - started
    assert result.success
    started = time.perf_counter()
    marts = dg.materialize(
        everything, selection=whole_history, resources=resources, instance=instance
    )
    marts_seconds = time.perf_counter() - started
    assert marts.success
    steps = _step_seconds(result)
    calls = {}
    for asset in daily[1:]:
        if not asset.node_def.name.startswith("fulfillment"):
            continue
        metadata = result.asset_materializations_for_node(asset.node_def.name)[0].metadata
        calls[asset.node_def.name] = sum(
            value.value for name, value in metadata.items() if name.endswith("_call_s")
        )
    staged = result.asset_materializations_for_node("staging_orders")[0].metadata
    fulfillment_steps = sum(v for k, v in steps.items() if k.startswith("fulfillment"))
    analytics_steps = sum(
        v for k, v in steps.items() if k.startswith(("analytics", "order_timeline"))
    )
    mart_steps = _step_seconds(marts)
    return {
        "seconds": seconds,
        "run_dir": str(root),
        "orders": staged["records_staged"].value,
        "catalog_and_stock_seconds": seeding,
        "staging_step_seconds": staged["duration_s"].value,
        "fulfillment_steps_seconds": fulfillment_steps,
        "analytics_daily_steps_seconds": analytics_steps,
        "analytics_history_seconds": marts_seconds,
        "mart_steps": mart_steps,
        "outside_calls_seconds": sum(calls.values()),
        "calls": calls,
        "steps": steps,
    }


def peak_rss_mb() -> float:
    """This process's peak resident set since exec (VmHWM; ru_maxrss would include the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_maildir(data: Path, work: Path) -> dict:
    """Deliver as many files as the last backfill's outbox holds, per day folder, with os calls."""
    outbox = layout.outbox_dir(data)  # here `data` is the backfill's run dir
    folders = sorted(p for p in outbox.iterdir() if p.name.startswith(".") and p.is_dir())
    plan = []
    for folder in folders:
        names = os.listdir(folder / "new")  # noqa: PTH208
        size = (folder / "new" / names[0]).stat().st_size if names else 0
        plan.append((folder.name, len(names), size))
    root = work / f"{FLOOR}{time.time_ns()}"
    started = time.perf_counter()
    files = 0
    for name, count, size in plan:
        folder = f"{root}/{name}"
        for sub in ("tmp", "new", "cur"):
            os.makedirs(f"{folder}/{sub}", exist_ok=True)  # noqa: PTH103
        body = b"x" * size
        # The notifier's own calls: create in tmp/, write, close, rename into new/ (relative
        # to the open directories).
        tmp = os.open(f"{folder}/tmp", os.O_RDONLY | os.O_DIRECTORY)
        new = os.open(f"{folder}/new", os.O_RDONLY | os.O_DIRECTORY)
        for number in range(count):
            name = f"{number}.floor"
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=tmp)
            os.write(fd, body)
            os.close(fd)
            os.rename(name, name, src_dir_fd=tmp, dst_dir_fd=new)
        os.close(tmp)
        os.close(new)
        files += count
    return {"seconds": time.perf_counter() - started, "files": files}


def outputs_of(work: Path) -> list[Path]:
    """What invocations leave under the work dir: instances, backfill runs and Maildir floors."""
    return sorted(p for prefix in (INSTANCE, RUN, FLOOR) for p in work.glob(f"{prefix}*"))


PHASES = {
    "empty": phase_empty,
    "duckdb": phase_duckdb,
    "backfill": phase_backfill,
    "maildir": phase_maildir,
}


def run_phase(name: str, data: Path, work: Path, environment: dict | None = None) -> dict:
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
        env={**os.environ, "DAGSTER_HOME": str(work), **(environment or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# `--bookkeeping`: each instance kind, and the DAGSTER_EVENT_BATCH_SIZE its run gets ("0": off).
# "make dev" is dagster.postgres.yaml as it is; the other PostgreSQL kinds replace its storage
# with Dagster's own (`storage: postgres`).
BOOKKEEPING_KINDS = ("sqlite", "postgres", "postgres batched", "make dev")


def bookkeeping(work: Path, days: int, kinds: Sequence[str]) -> dict[str, dict]:
    """The empty copy on SQLite, Dagster's PostgreSQL storage (batched or not) and `make dev`'s."""
    import yaml

    from deploy import local_postgres

    batched = local_postgres.EVENT_BATCH_SIZE
    batch_sizes = {"sqlite": "0", "postgres": "0", "postgres batched": batched, "make dev": batched}
    stock = {
        key: value
        for key, value in yaml.safe_load(local_postgres.TEMPLATE.read_text()).items()
        if key not in ("run_storage", "event_log_storage", "schedule_storage")
    }
    stock["storage"] = {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    results = {}
    for kind in kinds:
        batch_size = batch_sizes[kind]
        home = Path(tempfile.mkdtemp(dir=work, prefix=INSTANCE))
        home.chmod(0o755)  # as root, the PostgreSQL server runs as another user
        environment = {
            "BENCH_INSTANCE_HOME": str(home),
            "DAGSTER_EVENT_BATCH_SIZE": batch_size,
            "BENCH_DAYS": str(days),
        }
        if kind == "sqlite":
            shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
            results[kind] = run_phase("empty", work, work, environment)
        else:
            with local_postgres.running(home) as server:
                if kind != "make dev":
                    (home / "dagster.yaml").write_text(yaml.safe_dump(stock))
                environment = {**server.environment(), **environment}
                results[kind] = run_phase("empty", work, work, environment)
        results[kind]["load_average"] = os.getloadavg()
    return results


def report_bookkeeping(results: dict[str, dict], days: int) -> None:
    first = next(iter(results))
    assets = results[first]["assets"]
    cells = assets * days
    tags = range_tags(days)
    print(
        f"bookkeeping: the empty copy of {assets} daily assets over"
        f" {tags['dagster/asset_partition_range_start']} .. {tags['dagster/asset_partition_range_end']}"
        f" ({days:,} days, {cells:,} asset-partitions), one run per instance kind"
    )
    print(
        f"{'instance':<18} {'seconds':>9} {'ms/asset-partition':>19} {'x ' + first:>18} {'steps s':>8}"
        f" {'events':>8} {'load after':>11}"
    )
    for kind, figures in results.items():
        load = figures["load_average"]
        print(
            f"{kind:<18} {figures['seconds']:>9.1f} {figures['seconds'] / cells * 1000:>19.2f}"
            f" {figures['seconds'] / results[first]['seconds']:>18.2f}"
            f" {sum(figures['steps'].values()):>8.1f} {sum(figures['events'].values()):>8,}"
            f" {' '.join(f'{x:.1f}' for x in load):>11}"
        )
    print("events of the run by type:", json.dumps(results[first]["events"], sort_keys=True))
    print(
        json.dumps(
            {kind: {k: v for k, v in f.items() if k != "steps"} for kind, f in results.items()}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument(
        "--data-dir", type=Path, help="an existing store to use instead of generating one"
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="delete the outputs earlier invocations left under the work dir, and measure nothing",
    )
    parser.add_argument(
        "--bookkeeping",
        action="store_true",
        help="measure only the empty copy, on SQLite, PostgreSQL, PostgreSQL batched and make dev's",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=PARTITIONS,
        help=f"with --bookkeeping: the first DAYS days of the history (default all {PARTITIONS:,})",
    )
    parser.add_argument(
        "--kinds",
        default=",".join(BOOKKEEPING_KINDS),
        help="with --bookkeeping: which instance kinds, comma-separated (default all: %(default)s)",
    )
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        figures = PHASES[args.phase](args.data_dir, args.work_dir)
        figures["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(figures))
        return

    work = args.work_dir / f"sf{args.scale:g}"
    if args.clean:
        outputs = outputs_of(work)
        for done in outputs:
            shutil.rmtree(done, ignore_errors=True)
        print(f"deleted {len(outputs)} outputs under {work}")
        return
    work.mkdir(parents=True, exist_ok=True)
    if args.bookkeeping:
        if not 1 <= args.days <= PARTITIONS:
            parser.error(f"--days must be between 1 and {PARTITIONS}")
        kinds = [kind.strip() for kind in args.kinds.split(",")]
        if not kinds or set(kinds) - set(BOOKKEEPING_KINDS):
            parser.error(f"--kinds: choose from {', '.join(BOOKKEEPING_KINDS)}")
        report_bookkeeping(bookkeeping(work, args.days, kinds), args.days)
        return
    data = args.data_dir or work / "data"
    if not layout.catalog_dir(data).is_dir():
        from simulator.history import generate_store

        started = time.perf_counter()
        generate_store(data, args.scale)
        print(
            f"generated SF {args.scale:g} store in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )

    results = {name: run_phase(name, data, work) for name in ("empty", "duckdb", "backfill")}
    floor = run_phase("maildir", Path(results["backfill"]["run_dir"]), work)
    orders = results["backfill"]["orders"]
    floors = results["empty"]["seconds"] + results["duckdb"]["seconds"]
    print(f"SF {args.scale:g}: {orders:,} orders over {HISTORY[0]} .. {HISTORY[1]}")
    print(f"{'phase':<10} {'seconds':>9} {'orders/s':>10} {'peak RSS MB':>12}")
    for name, figures in results.items():
        rate = orders / figures["seconds"] if figures["seconds"] else 0
        print(
            f"{name:<10} {figures['seconds']:>9.1f} {rate:>10,.0f} {figures['peak_rss_mb']:>12,.0f}"
        )
    backfill = results["backfill"]
    print(f"daily assets in the empty copy: {results['empty']['assets']}")
    print(
        f"catalog + stock seeding (untimed in backfill): {backfill['catalog_and_stock_seconds']:.1f} s"
    )
    # A step's own work is its time here less the same step's time in the empty copy.
    empty_steps = results["empty"]["steps"]

    def step_line(name: str, seconds: float, width: int, calls: float | None = None) -> str:
        empty = empty_steps.get(name, 0.0)
        line = f"  {name:<{width}} step {seconds:>7.1f} s   empty {empty:>6.1f} s"
        if calls is not None:
            line += f"   calls {calls:>6.1f} s"
        return line + f"   own {seconds - empty - (calls or 0):>6.1f} s"

    print(f"staging step (reading and validation): {backfill['staging_step_seconds']:.1f} s")
    print(step_line("staging_orders", backfill["steps"].get("staging_orders", 0), 34))
    print(
        f"fulfillment steps: {backfill['fulfillment_steps_seconds']:.1f} s, of which outside-system calls {backfill['outside_calls_seconds']:.1f} s"
    )
    for name, call in backfill["calls"].items():
        print(step_line(name, backfill["steps"].get(name, 0), 34, call))
    # Dagster's work between the steps: run start, planning, the events of each step's outputs.
    rest = backfill["seconds"] - sum(backfill["steps"].values())
    empty_rest = results["empty"]["seconds"] - sum(empty_steps.values())
    print(f"daily marts' steps: {backfill['analytics_daily_steps_seconds']:.1f} s")
    for name, seconds in backfill["steps"].items():
        if name.startswith(("analytics", "order_timeline")):
            print(step_line(name, seconds, 34))
    print(
        f"whole-history marts and report, after the backfill: {backfill['analytics_history_seconds']:.1f} s"
    )
    for name, seconds in backfill["mart_steps"].items():
        print(f"  {name:<34} step {seconds:>7.1f} s")
    print(f"sum of the empty copy's steps: {sum(empty_steps.values()):.1f} s")
    print(f"outside the steps: backfill {rest:.1f} s, empty copy {empty_rest:.1f} s")
    notifier = sum(v for k, v in backfill["calls"].items() if "notice" in k or "notification" in k)
    print(
        f"maildir floor: {floor['files']:,} files in {floor['seconds']:.1f} s; notifier calls "
        f"{notifier:.1f} s = {notifier / floor['seconds']:.2f} x the floor"
    )
    print(
        f"outside-system calls without the notifier: {backfill['outside_calls_seconds'] - notifier:.1f} s"
    )
    print(f"ratio backfill / (empty + duckdb) = {backfill['seconds'] / floors:.2f}")
    outputs = outputs_of(work)
    print(
        f"left {len(outputs)} outputs under {work} (delete them with --clean when done measuring)"
    )


if __name__ == "__main__":
    main()
