"""Benchmark: a full-history backfill of the whole order-to-cash graph against its floors.

    python bench/backfill.py --scale 1 [--work-dir bench/out] [--data-dir existing/store]
        [--instance make-dev|sqlite] [--systems sqlite|postgres] [--days N] [--json FILE]
    python bench/backfill.py --table sf0.1.json sf1.json sf10.json   # cost per order by scale
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

`empty` and `backfill` run on a new instance each, by default of `make dev`'s kind (`--instance
make-dev`: deploy/local_postgres.py's server, dagster.postgres.yaml, events in batches), whose
bookkeeping is ~2 ms per asset-partition against ~50 ms on SQLite (`--instance sqlite`, Dagster's
defaults, as the earlier results in bench/RESULTS.md): the step time less the empty copy's is then
not a small difference of two large, noisy figures. `--systems postgres` puts the inventory,
carrier and ledger on a PostgreSQL server of their own (the same module; URLs through
ORDERFLOW_INVENTORY_URL, ORDERFLOW_CARRIER_DB, ORDERFLOW_ACCOUNTING_URL). Each phase's peak memory
is its process tree's summed RSS and PSS, sampled, beside the servers' (and its own VmHWM); the
data dir's and the instance's disk use are taken after the run. The phases run in-process
(`dg.materialize`), which keeps every event of the run in memory to return them (~1 GB for the
whole history's 36 K materializations with their metadata): the memory of a user's backfill, whose
run worker keeps none, is `python bench/ui.py backfill --store DIR`'s. The figures, with each step's data
work per order (its time less the empty copy's, in µs per order), go to a JSON file that
`--table` sets side by side for several scale factors (linear cost: a ratio of 1.0).

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
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from foundation import layout, settings  # noqa: E402

HISTORY = ("2020-01-01", "2026-08-02")
# What an invocation leaves under the work dir, by name prefix; `--clean` deletes these.
INSTANCE, RUN, FLOOR, SYSTEMS_SERVER = "dagster_home_", "run-", "maildir-", "systems_pg_"
# Where the SQL systems read their database's URL when their resource's `url` is empty.
SYSTEM_URLS = {
    "inventory": "ORDERFLOW_INVENTORY_URL",
    "carrier": "ORDERFLOW_CARRIER_DB",
    "accounting": "ORDERFLOW_ACCOUNTING_URL",
}
MEMORY_SAMPLE_S = 0.5
MB = 1024 * 1024
PARTITIONS = (dt.date.fromisoformat(HISTORY[1]) - dt.date.fromisoformat(HISTORY[0])).days + 1
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
RANGE_TAGS = {RANGE_START: HISTORY[0], RANGE_END: HISTORY[1]}
INSTANCE_KINDS = ("make-dev", "sqlite")


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
    return {**RANGE_TAGS, RANGE_END: end.isoformat()}


def bench_tags() -> dict[str, str]:
    """The range this invocation measures: the whole history, or its first $BENCH_DAYS days."""
    return range_tags(int(os.environ.get("BENCH_DAYS", PARTITIONS)))


def phase_empty(data: Path, work: Path) -> dict:
    import dagster as dg

    from bench.empty import empty_copy

    copies = [empty_copy(real) for real in _daily_assets()]
    instance = _instance(work)
    started = time.perf_counter()
    result = dg.materialize(copies, instance=instance, tags=bench_tags())
    seconds = time.perf_counter() - started
    assert result.success
    events = Counter(
        entry.dagster_event_type.value
        for entry in instance.all_logs(result.run_id)
        if entry.dagster_event_type
    )
    return {
        "seconds": seconds,
        "instance_dir": instance.root_directory,
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
    last = bench_tags()[RANGE_END]
    files = [
        str(path)
        for day in sorted(layout.orders_dir(data).iterdir())
        if day.name <= last
        for path in layout.batch_files(day)
    ]
    started = time.perf_counter()
    with duckdb.connect(str(database)) as con:
        con.execute(
            "create table raw as select * from read_json(?, format = 'newline_delimited')",
            [files],
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
    if os.environ.get("BENCH_SYSTEMS") == "postgres":
        # An empty `url` makes a system read its URL from the environment, as a deployment does.
        for name in SYSTEM_URLS:
            resources[name] = type(resources[name])()
    os.environ["ORDERFLOW_DATA_DIR"] = str(root)  # the systems' outage states are this run's
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
        everything, selection=daily, resources=resources, instance=instance, tags=bench_tags()
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
        "instance_dir": instance.root_directory,
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
    """What invocations leave under the work dir: instances, runs, Maildir floors, systems' servers."""
    prefixes = (INSTANCE, RUN, FLOOR, SYSTEMS_SERVER)
    return sorted(p for prefix in prefixes for p in work.glob(f"{prefix}*"))


PHASES = {
    "empty": phase_empty,
    "duckdb": phase_duckdb,
    "backfill": phase_backfill,
    "maildir": phase_maildir,
}


class PeakMemory(threading.Thread):
    """The largest summed RSS and PSS, in MB, of some processes with all their descendants.

    Sampled every MEMORY_SAMPLE_S, so a spike shorter than that can be missed (a phase's own VmHWM
    is exact for its main process). RSS counts a page shared by several processes once in each;
    PSS splits it between them, so the PSS sum is what the tree costs the machine.
    """

    def __init__(self, roots: Sequence[int]):
        super().__init__(daemon=True)
        self.roots = roots
        self.rss_mb = self.pss_mb = 0.0
        self.done = threading.Event()

    def sample(self) -> None:
        import psutil

        rss = pss = 0
        for root in self.roots:
            try:
                top = psutil.Process(root)
                tree = [top, *top.children(recursive=True)]
            except psutil.Error:
                continue
            for process in tree:
                try:
                    memory = process.memory_full_info()
                except psutil.Error:  # ended between the listing and the reading
                    continue
                rss, pss = rss + memory.rss, pss + memory.pss
        self.rss_mb, self.pss_mb = max(self.rss_mb, rss / MB), max(self.pss_mb, pss / MB)

    def run(self) -> None:
        self.sample()
        while not self.done.wait(MEMORY_SAMPLE_S):
            self.sample()

    def stop(self) -> None:
        """Stop sampling (the peaks stay)."""
        self.done.set()
        self.join()


def run_phase(
    name: str,
    data: Path,
    work: Path,
    environment: dict | None = None,
    servers: dict[str, int] | None = None,
) -> dict:
    """Run one phase in a child process; its figures, with the peak memory of its process tree
    and of the PostgreSQL `servers` it used (postmasters' pids by role)."""
    child = subprocess.Popen(
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(work), **(environment or {})},
    )
    samplers = {
        role: PeakMemory([pid]) for role, pid in {"tree": child.pid, **(servers or {})}.items()
    }
    for sampler in samplers.values():
        sampler.start()
    out, err = child.communicate()
    for sampler in samplers.values():
        sampler.stop()
    if child.returncode != 0:
        raise SystemExit(f"phase {name} failed ({child.returncode}):\n{err[-8000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    figures["peak_mb"] = {
        role: {"rss": sampler.rss_mb, "pss": sampler.pss_mb} for role, sampler in samplers.items()
    }
    # The sampling can miss a short spike; the main process's own high-water mark cannot.
    figures["peak_mb"]["tree"]["rss"] = max(
        figures["peak_mb"]["tree"]["rss"], figures["peak_rss_mb"]
    )
    return figures


def disk_mb(path: Path) -> float:
    """The disk space a file or folder takes (`du`: blocks allocated, symlinks not followed)."""
    if not path.exists():
        return 0.0
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0]) / 1024


def _new_home(work: Path, prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(dir=work, prefix=prefix))
    home.chmod(0o755)  # as root, the PostgreSQL server runs as another user
    return home


@contextmanager
def instance_of(kind: str, work: Path) -> Iterator[tuple[dict, dict[str, int], Path | None]]:
    """A new instance of `kind` for one phase: the phase's environment, the server's pid, and the
    instance's home (None for `sqlite`: the phase makes its own and reports it)."""
    if kind == "sqlite":
        yield {}, {}, None
        return
    from deploy import local_postgres

    home = _new_home(work, INSTANCE)
    with local_postgres.running(home) as server:
        yield (
            {**server.environment(), "BENCH_INSTANCE_HOME": str(home)},
            {"instance server": server.running_pid()},
            home,
        )


@contextmanager
def systems_on(kind: str, work: Path) -> Iterator[tuple[dict, dict[str, int], Path | None]]:
    """The SQL systems' databases: the backfill phase's environment, the server's pid and home.

    `sqlite`: the files in the run's systems/ (nothing to start). `postgres`: a PostgreSQL server
    of their own (deploy/local_postgres.py: Unix socket, `synchronous_commit=off`), one database
    per system.
    """
    if kind == "sqlite":
        yield {}, {}, None
        return
    from deploy import local_postgres

    home = _new_home(work, SYSTEMS_SERVER)
    with local_postgres.running(home) as server:
        connection = server.connect("postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            for name in SYSTEM_URLS:
                cursor.execute(f"create database {name}")  # names from code
        connection.close()
        urls = {variable: server.database_url(name) for name, variable in SYSTEM_URLS.items()}
        yield {"BENCH_SYSTEMS": "postgres", **urls}, {"systems server": server.running_pid()}, home


# Within 20 % of linear (issue 18): a step's cost per order at a larger scale over the smallest's.
LINEAR_SLACK = 1.2
# A step with less work than this at the smallest scale gets no ratio: the empty copy's noise
# (about ±0.5 s a step on make dev's instance) would make it up.
COMPARABLE_S = 1.0


def _peaks(run: dict) -> str:
    peaks = run["phases"]["backfill"]["peak_mb"]
    return ", ".join(f"{role} {p['rss']:,.0f} / {p['pss']:,.0f}" for role, p in peaks.items())


SUMMARY = (
    ("orders", lambda run: f"{run['phases']['backfill']['orders']:,}"),
    ("instance, systems", lambda run: f"{run['instance']}, {run['systems']}"),
    (
        "backfill / empty / duckdb s",
        lambda run: " / ".join(
            f"{run['phases'][phase]['seconds']:,.1f}" for phase in ("backfill", "empty", "duckdb")
        ),
    ),
    ("backfill's peak MB, RSS / PSS", _peaks),
    (
        "disk MB after the run",
        lambda run: ", ".join(f"{part} {mb:,.0f}" for part, mb in run["disk_mb"].items()),
    ),
)


def per_order_us(results: dict) -> dict[str, float]:
    """Data work per order, in µs: each step's time less the same step's in the empty copy."""
    backfill, empty = results["backfill"], results["empty"]
    orders = backfill["orders"]
    empty_steps = empty["steps"]
    work = {
        name: (seconds - empty_steps.get(name, 0.0)) / orders * 1e6
        for name, seconds in backfill["steps"].items()
    }
    # The whole-history marts run after the backfill, and have no empty copy.
    work.update(
        {
            f"{name} (after)": seconds / orders * 1e6
            for name, seconds in backfill["mart_steps"].items()
        }
    )
    work["all steps"] = sum(work.values())
    work["of which outside-system calls"] = backfill["outside_calls_seconds"] / orders * 1e6
    work["whole run less the empty copy"] = (backfill["seconds"] - empty["seconds"]) / orders * 1e6
    return work


def table(paths: Sequence[Path]) -> str:
    """A Markdown table of several invocations' data work per order, smallest scale first."""
    runs = sorted(
        (json.loads(Path(path).read_text()) for path in paths),
        key=lambda run: (run["scale"], run["systems"] != "sqlite", run["instance"]),
    )
    base = runs[0]
    # The systems and the instance are named where they are not the defaults.
    names = [
        f"SF {run['scale']:g}"
        + ("" if run["systems"] == "sqlite" else f", systems on {run['systems']}")
        + ("" if run["instance"] == "make-dev" else f", {run['instance']} instance")
        for run in runs
    ]
    ratios = [f"{name} ÷ {names[0]}" for name in names[1:]]
    base_orders = base["phases"]["backfill"]["orders"]
    lines = [
        f"Data work per order, µs (a step's time less the empty copy's); ratio to {names[0]}: "
        f"1.00 is linear, above {LINEAR_SLACK:.2f} flagged (!), none where the step did under "
        f"{COMPARABLE_S:g} s of work at {names[0]}",
        "",
        "| step | " + " | ".join(names + ratios) + " |",
        "|---" * (1 + len(names) + len(ratios)) + "|",
    ]
    for step in base["per_order_us"]:
        values = [run["per_order_us"].get(step) for run in runs]
        cells = [f"{v:,.1f}" if v is not None else "—" for v in values]
        first = values[0]
        for value in values[1:]:
            if value is None or first is None or first * base_orders / 1e6 < COMPARABLE_S:
                cells.append("—")
            else:
                ratio = value / first
                cells.append(f"{ratio:.2f}{' (!)' if ratio > LINEAR_SLACK else ''}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += ["", "| figure | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    for label, figure in SUMMARY:
        lines.append(f"| {label} | " + " | ".join(figure(run) for run in runs) + " |")
    return "\n".join(lines)


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
        help=f"the first DAYS days of the history (default all {PARTITIONS:,})",
    )
    parser.add_argument(
        "--instance",
        choices=INSTANCE_KINDS,
        default="make-dev",
        help="the instance of the empty copy and the backfill (default: %(default)s, "
        "PostgreSQL with events in batches; sqlite: Dagster's defaults, as earlier results)",
    )
    parser.add_argument(
        "--systems",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="where the inventory, carrier and ledger keep their data (default: %(default)s)",
    )
    parser.add_argument(
        "--no-maildir-floor",
        action="store_true",
        help="skip the `maildir` phase (it writes as many files as the outbox holds, again)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the figures (default: result-<time>.json in the work dir)",
    )
    parser.add_argument(
        "--table",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="print the data work per order of these results side by side, and measure nothing",
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

    if args.table:
        print(table(args.table))
        return
    if not 1 <= args.days <= PARTITIONS:
        parser.error(f"--days must be between 1 and {PARTITIONS}")
    work = args.work_dir / f"sf{args.scale:g}"
    if args.clean:
        outputs = outputs_of(work)
        for done in outputs:
            shutil.rmtree(done, ignore_errors=True)
        print(f"deleted {len(outputs)} outputs under {work}")
        return
    work.mkdir(parents=True, exist_ok=True)
    if args.bookkeeping:
        kinds = [kind.strip() for kind in args.kinds.split(",")]
        if not kinds or set(kinds) - set(BOOKKEEPING_KINDS):
            parser.error(f"--kinds: choose from {', '.join(BOOKKEEPING_KINDS)}")
        report_bookkeeping(bookkeeping(work, args.days, kinds), args.days)
        return
    data = args.data_dir or work / "data"
    if not layout.catalog_dir(data).is_dir():
        from simulator.history import generate_store

        started = time.perf_counter()
        generate_store(data, args.scale, progress=lambda line: print(line, file=sys.stderr))
        print(
            f"generated SF {args.scale:g} store in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )

    days = {"BENCH_DAYS": str(args.days)}
    results = {}
    with instance_of(args.instance, work) as (environment, servers, _home):
        results["empty"] = run_phase("empty", data, work, {**days, **environment}, servers)
    results["duckdb"] = run_phase("duckdb", data, work, days)
    with (
        instance_of(args.instance, work) as (environment, servers, instance_home),
        systems_on(args.systems, work) as (systems, systems_servers, systems_home),
    ):
        results["backfill"] = run_phase(
            "backfill",
            data,
            work,
            {**days, **environment, **systems},
            {**servers, **systems_servers},
        )
    run_dir = Path(results["backfill"]["run_dir"])
    # After the servers stopped (their last checkpoint written); before the Maildir floor.
    disk = {
        "landing": disk_mb(layout.landing_dir(run_dir).resolve()),
        "warehouse": sum(disk_mb(path) for path in run_dir.glob("warehouse.duckdb*")),
        "systems": disk_mb(layout.systems_dir(run_dir))
        + (disk_mb(systems_home) if systems_home else 0),
        "outbox": disk_mb(layout.outbox_dir(run_dir)),
        "instance": disk_mb(instance_home or Path(results["backfill"]["instance_dir"])),
    }
    disk["data dir"] = disk_mb(run_dir) + disk["landing"]
    # The SQL outbox writes no files, so a file-system floor says nothing about it.
    maildir = settings.outbox_kind() == "maildir"
    floor = run_phase("maildir", run_dir, work) if maildir and not args.no_maildir_floor else None
    orders = results["backfill"]["orders"]
    tags = range_tags(args.days)
    figures_file = args.json or work / f"result-{time.time_ns()}.json"
    figures_file.write_text(
        json.dumps(
            {
                "scale": args.scale,
                "range": [tags[RANGE_START], tags[RANGE_END]],
                "instance": args.instance,
                "systems": args.systems,
                "load_average_after": os.getloadavg(),
                "per_order_us": per_order_us(results),
                "disk_mb": disk,
                "phases": {**results, "maildir": floor},
            },
            indent=1,
        )
    )
    floors = results["empty"]["seconds"] + results["duckdb"]["seconds"]
    print(f"SF {args.scale:g}: {orders:,} orders over {tags[RANGE_START]} .. {tags[RANGE_END]}")
    print(f"instance {args.instance}, systems on {args.systems}")
    print(
        f"{'phase':<10} {'seconds':>9} {'orders/s':>10} {'peak RSS MB':>12}"
        f" {'tree RSS MB':>12} {'tree PSS MB':>12}"
    )
    for name, figures in results.items():
        rate = orders / figures["seconds"] if figures["seconds"] else 0
        tree = figures["peak_mb"]["tree"]
        print(
            f"{name:<10} {figures['seconds']:>9.1f} {rate:>10,.0f} {figures['peak_rss_mb']:>12,.0f}"
            f" {tree['rss']:>12,.0f} {tree['pss']:>12,.0f}"
        )
    for role, peak in results["backfill"]["peak_mb"].items():
        if role != "tree":
            print(f"backfill's {role}: peak RSS {peak['rss']:,.0f} MB, PSS {peak['pss']:,.0f} MB")
    print("disk after the backfill, MB: " + ", ".join(f"{k} {v:,.0f}" for k, v in disk.items()))
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
    if floor:
        print(
            f"maildir floor: {floor['files']:,} files in {floor['seconds']:.1f} s; notifier calls "
            f"{notifier:.1f} s = {notifier / floor['seconds']:.2f} x the floor"
        )
    print(
        f"outside-system calls without the notifier: {backfill['outside_calls_seconds'] - notifier:.1f} s"
    )
    print(f"ratio backfill / (empty + duckdb) = {backfill['seconds'] / floors:.2f}")
    print("data work per order, µs (step less the empty copy's):")
    for name, value in per_order_us(results).items():
        print(f"  {name:<40} {value:>10,.1f}")
    print(f"figures: {figures_file} (side by side: --table FILE FILE ...)")
    outputs = outputs_of(work)
    print(
        f"left {len(outputs)} outputs under {work} (delete them with --clean when done measuring)"
    )


if __name__ == "__main__":
    main()
