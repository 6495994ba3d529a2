"""Benchmark: a backfill of the whole graph, its steps one at a time against steps in parallel.

    python bench/parallel.py --scale 1 [--days N] [--rounds R] [--max-concurrent K]
                             [--instance postgres|sqlite] [--work-dir bench/out] [--data-dir STORE]
    python bench/parallel.py --scale 1 --clean    # delete the runs' data dirs and instances

Backfills the history's first N days (default: all of it) as users get it, a run of
`order_to_cash_job` over the range (staging, fulfillment) and then the run of `analytics_job`
over it that `analytics_automation_sensor` starts (the daily and whole-history marts, the
report), `--rounds` times in each of two modes, alternating: `sequential` (the project's executor with
max_concurrent 1: every step in the run's process, one after another) and `parallel` (the same
executor with max_concurrent K, default $ORDERFLOW_MAX_CONCURRENT or 2: steps in processes of
their own, K at once, as a backfill runs them). Each run starts from an empty data dir over the
same landing zone and runs in a process of its own, as a run worker does, on `make dev`'s
instance (deploy/local_postgres.py's server, dagster.postgres.yaml, batched event writes) or, with
`--instance sqlite`, on dagster.yaml's (whose event writes, one by one, dominate long ranges).

Reported: each pair of runs' wall time, the median per mode and the speedup sequential / parallel; each
step's median duration per mode (a parallel step's includes its waits for the warehouse); how
much of the parallel runs' step time overlapped; and whether both modes left the same rows in
the warehouse and the same effects in the outside systems. The last line printed is JSON.
The runs' data dirs stay under the work dir.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from foundation import layout  # noqa: E402
from foundation.partitions import RANGE_END_TAG, RANGE_START_TAG  # noqa: E402

HISTORY = ("2020-01-01", "2026-08-02")
DAYS = (dt.date.fromisoformat(HISTORY[1]) - dt.date.fromisoformat(HISTORY[0])).days + 1
MODES = ("sequential", "parallel")
# What a backfill gives: its run of order_to_cash_job, then the analytics run the sensor starts.
JOBS = ("order_to_cash_job", "analytics_job")
RUN_PREFIX, HOME_PREFIX = "parallel-run-", "parallel-home-"
STEP_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE")


def project_job(data_dir: str, name: str):
    """The code location's job `name`, over the local systems in `data_dir`, with its executor.

    The target of the reconstructable job each run executes: step processes rebuild it by name.
    """
    import dagster as dg

    from orchestration_defs import definitions
    from tests.helpers import resources_for

    return dg.Definitions(
        assets=definitions.defs.assets,
        jobs=definitions.defs.jobs,
        resources=resources_for(Path(data_dir)),
        executor=definitions.defs.executor,
    ).resolve_job_def(name)


def run_once(data: Path, days: int, max_concurrent: int) -> dict:
    """The range's backfill run, then its analytics run (in this process): times and steps."""
    import dagster as dg

    end = dt.date.fromisoformat(HISTORY[0]) + dt.timedelta(days=days - 1)
    tags = {RANGE_START_TAG: HISTORY[0], RANGE_END_TAG: end.isoformat()}
    # Parallel whatever the range's length: the two modes differ in nothing else.
    config = {"execution": {"config": {"max_concurrent": max_concurrent, "parallel_from_days": 1}}}
    figures: dict = {"success": True, "run_ids": [], "runs": {}, "steps": {}}
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME's
        for name in JOBS:
            job = dg.build_reconstructable_job(
                "bench.parallel",
                "project_job",
                reconstructable_kwargs={"data_dir": str(data), "name": name},
            )
            started = time.perf_counter()
            with dg.execute_job(job, instance, run_config=config, tags=tags) as result:
                success, run_id = result.success, result.run_id
            figures["runs"][name] = time.perf_counter() - started
            figures["run_ids"].append(run_id)
            for entry in instance.all_logs(run_id):
                kind = entry.dagster_event_type.value if entry.dagster_event_type else None
                if kind in STEP_EVENTS:
                    figures["steps"].setdefault(entry.step_key, []).append(entry.timestamp)
            if not success:
                figures["success"] = False
                break
    figures["seconds"] = sum(figures["runs"].values())
    return figures


def outputs(data: Path) -> dict[str, int]:
    """Row counts of every warehouse table and counts of the outside systems' effects."""
    from resources.warehouse import WarehouseResource

    counts = {}
    with WarehouseResource(database=str(layout.warehouse_path(data))).connect() as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_catalog = current_database() order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            counts[f"{schema}.{table}"] = con.execute(
                f'select count(*) from "{schema}"."{table}"'  # noqa: S608 - names from the catalog
            ).fetchall()[0][0]
    systems = layout.systems_dir(data)
    for name in sorted(p.name for p in systems.glob("*.sqlite")):
        with sqlite3.connect(systems / name) as con:
            for (table,) in con.execute("select name from sqlite_master where type = 'table'"):
                counts[f"{name}:{table}"] = con.execute(
                    f'select count(*) from "{table}"'  # noqa: S608 - names from the catalog
                ).fetchone()[0]
    counts["outbox messages"] = sum(1 for _ in layout.outbox_dir(data).glob(".*/*/*"))
    return counts


def spans(steps: dict[str, list[float]]) -> dict[str, float]:
    """Each step's duration from its start to its end, in seconds."""
    return {key: max(times) - min(times) for key, times in steps.items() if len(times) >= 2}


def overlapped_seconds(steps: dict[str, list[float]]) -> float:
    """How long two or more steps ran at the same time."""
    edges = sorted(
        (t, delta)
        for times in steps.values()
        if len(times) >= 2
        for t, delta in ((min(times), 1), (max(times), -1))
    )
    total, running, since = 0.0, 0, 0.0
    for t, delta in edges:
        if running >= 2:
            total += t - since
        running, since = running + delta, t
    return total


@contextmanager
def instance_environment(work: Path, kind: str) -> Iterator[dict[str, str]]:
    """A new DAGSTER_HOME of `make dev`'s kind (`postgres`, its server running) or `sqlite`."""
    from deploy import local_postgres

    home = Path(tempfile.mkdtemp(dir=work, prefix=HOME_PREFIX))
    if kind == "sqlite":
        shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
        yield {"DAGSTER_HOME": str(home)}
        return
    home.chmod(0o755)  # as root, the PostgreSQL server runs as another user
    with local_postgres.running(home) as server:
        yield server.environment()


def _python_path() -> str:
    """PYTHONPATH with the project first, for processes that import bench/ or tests/ modules."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def measure(
    data: Path, work: Path, days: int, rounds: int, max_concurrent: int, environment: dict
) -> dict:
    """Alternate the two modes, each run in a process of its own over a new data dir."""
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    order = [mode for n in range(rounds) for mode in (MODES if n % 2 == 0 else MODES[::-1])]
    for mode in order:
        root = work / f"{RUN_PREFIX}{mode}-{time.time_ns()}"
        layout.landing_dir(root).parent.mkdir(parents=True, exist_ok=True)
        layout.landing_dir(root).symlink_to(
            layout.landing_dir(data).resolve(), target_is_directory=True
        )
        steps = max_concurrent if mode == "parallel" else 1
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--run",
                str(root),
                "--days",
                str(days),
                "--max-concurrent",
                str(steps),
            ],
            check=True,
            capture_output=True,
            text=True,
            # The run's step processes import bench.parallel, which is not an installed package.
            env={**os.environ, **environment, "PYTHONPATH": _python_path()},
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        if not figures["success"]:
            sys.exit(f"the {mode} runs {figures['run_ids']} failed; their data dir: {root}")
        figures["outputs"] = outputs(root)
        figures["data_dir"] = str(root)
        runs[mode].append(figures)
    return runs


def report(runs: dict[str, list[dict]], days: int, max_concurrent: int) -> dict:
    end = dt.date.fromisoformat(HISTORY[0]) + dt.timedelta(days=days - 1)
    medians = {mode: statistics.median(r["seconds"] for r in runs[mode]) for mode in MODES}
    speedup = medians["sequential"] / medians["parallel"]
    print(
        f"order_to_cash_job then analytics_job over {HISTORY[0]} .. {end} ({days:,} days), "
        f"{len(runs['sequential'])} round(s); parallel: max_concurrent {max_concurrent}, "
        f"{os.cpu_count()} cores"
    )
    for mode in MODES:
        walls = " ".join(
            f"{r['seconds']:.1f} ({' + '.join(f'{s:.1f}' for s in r['runs'].values())})"
            for r in runs[mode]
        )
        print(f"  {mode:<10} wall s (backfill + analytics): {walls}   median {medians[mode]:.1f} s")
    print(f"  speedup sequential / parallel: {speedup:.2f}")
    step_medians = {
        mode: {
            key: statistics.median(spans(r["steps"])[key] for r in runs[mode])
            for key in spans(runs[mode][0]["steps"])
        }
        for mode in MODES
    }
    print(f"  {'step':<40} {'sequential s':>13} {'parallel s':>11}")
    for key in sorted(
        step_medians["sequential"], key=lambda k: min(runs["sequential"][0]["steps"][k])
    ):
        print(
            f"  {key:<40} {step_medians['sequential'][key]:>13.2f}"
            f" {step_medians['parallel'].get(key, float('nan')):>11.2f}"
        )
    sums = {mode: sum(step_medians[mode].values()) for mode in MODES}
    overlap = statistics.median(overlapped_seconds(r["steps"]) for r in runs["parallel"])
    print(
        f"  sum of steps: sequential {sums['sequential']:.1f} s, parallel {sums['parallel']:.1f} s;"
        f" parallel steps overlapped for {overlap:.1f} s of the run"
    )
    first = runs["sequential"][0]["outputs"]
    same = all(r["outputs"] == first for mode in MODES for r in runs[mode])
    print(
        f"  same warehouse rows and outside-system effects in every run: {'yes' if same else 'NO'}"
    )
    if not same:
        for mode in MODES:
            for r in runs[mode]:
                differing = {k: v for k, v in r["outputs"].items() if first.get(k) != v}
                if differing:
                    print(f"    {mode} {r['data_dir']}: {differing}")
    summary = {
        "days": days,
        "max_concurrent": max_concurrent,
        "seconds": {mode: [r["seconds"] for r in runs[mode]] for mode in MODES},
        "speedup": speedup,
        "steps": step_medians,
        "overlap_seconds": overlap,
        "same_outputs": same,
    }
    print(json.dumps(summary))
    return summary


def main() -> None:
    from foundation import settings

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument(
        "--days",
        type=int,
        default=DAYS,
        help=f"the history's first DAYS days (default all {DAYS:,})",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode (default 1)")
    parser.add_argument("--max-concurrent", type=int, default=settings.max_concurrent_steps())
    parser.add_argument("--instance", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument(
        "--data-dir", type=Path, help="an existing store to use instead of generating one"
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="delete the runs' data dirs and instances, and measure nothing",
    )
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run:
        print(json.dumps(run_once(args.run, args.days, args.max_concurrent)))
        return
    work = args.work_dir / f"sf{args.scale:g}"
    if args.clean:
        done = sorted(p for prefix in (RUN_PREFIX, HOME_PREFIX) for p in work.glob(f"{prefix}*"))
        for path in done:
            shutil.rmtree(path, ignore_errors=True)
        print(f"deleted {len(done)} run dirs and instances under {work}")
        return
    if not 1 <= args.days <= DAYS:
        parser.error(f"--days must be between 1 and {DAYS}")
    if args.rounds < 1 or args.max_concurrent < 2:
        parser.error("--rounds must be 1 or more and --max-concurrent 2 or more")
    work.mkdir(parents=True, exist_ok=True)
    data = args.data_dir or work / "data"
    if not layout.catalog_dir(data).is_dir():
        from simulator.history import generate_store

        generate_store(data, args.scale)
    with instance_environment(work, args.instance) as environment:
        runs = measure(data, work, args.days, args.rounds, args.max_concurrent, environment)
    report(runs, args.days, args.max_concurrent)


if __name__ == "__main__":
    main()
