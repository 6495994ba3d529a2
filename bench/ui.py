"""Benchmarks through `dagster dev`, launched with the GraphQL calls the Dagster UI makes.

    python bench/ui.py backfill [--days N]
    python bench/ui.py latency [-n N] [--variant KEY=VALUE[,KEY=VALUE...]]...

Each invocation starts `dagster dev` as `make dev` does (deploy/local_postgres.py's server and
dagster.postgres.yaml in a new DAGSTER_HOME, DAGSTER_EVENT_BATCH_SIZE set; `--instance sqlite`:
dagster.yaml) on a free loopback port, over a new data dir (warehouse, systems, outbox) whose
landing zone is a store generated at SF 0.01 and caught up to yesterday as `make store` does it,
once per invocation, or the landing zone of `--store DIR` as it is.

`backfill` — the newcomer's first backfill: *Jobs* → `order_to_cash_job` → *Materialize all…* →
every partition → *Launch backfill*, i.e. `launchPartitionBackfill` with the job's partition set,
its assets and every partition name (`--days N`: the first N). Timed from the launch to the
backfill's COMPLETED_SUCCESS, with the backfill's run (picked up by the backfill daemon, queued,
started, succeeded) on the way. `analytics_automation_sensor` stays on, as `make dev` has it, and
the time until the analytics runs it starts for the backfilled days have succeeded is reported
too: that is when the whole graph is up to date.

`latency` — one day of `order_to_cash_job` launched as *Materialize all…* → one partition →
*Launch 1 run* does, alternating with the same job of the `empty` code location (bench/empty.py:
the same assets, checks and pools with empty bodies; bench/workspace.yaml serves both), one day
further each round, N rounds after a first, unreported round of each. The analytics sensor is
switched off first (it would start an analytics run after every real run). Reported: medians of
launch→start (the run's RUN_START) and start→success, and their ratio real / empty. Each
`--variant` reruns the same rounds on a new `dagster dev` whose DAGSTER_HOME/dagster.yaml has the
given settings changed (dotted keys, YAML values), e.g.
`--variant run_queue.dequeue_use_threads=true`.

Outputs stay under `--work-dir` (default bench/out/ui); the last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.dagster_dev import free_port, graphql, start, stop, wait_until_loaded  # noqa: E402
from foundation import layout  # noqa: E402

BIN = Path(sys.executable).parent
REPOSITORY = "__repository__"
JOB = "order_to_cash_job"
SENSOR = "analytics_automation_sensor"
FROM_UI = {"key": "dagster/from_ui", "value": "true"}  # what the UI adds to what it launches
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
MB = 1024 * 1024
MEMORY_SAMPLE_S = 0.5
BACKFILL_DONE = {"COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
LATENCY_FIRST_DAY = date(2026, 7, 1)  # inside every store's history

JOB_ASSETS = """
query JobAssets($pipeline: PipelineSelector!) {
  assetNodes(pipeline: $pipeline) { assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name jobNames } } } }
}
"""
PARTITIONS = """
query Partitions($repositorySelector: RepositorySelector!, $partitionSetName: String!) {
  partitionSetOrError(repositorySelector: $repositorySelector, partitionSetName: $partitionSetName) {
    __typename ... on PartitionSet { partitionsOrError { __typename
      ... on Partitions { results { name } } ... on PythonError { message } } } }
}
"""
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) { __typename
    ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
    ... on PartitionSetNotFoundError { message } ... on PartitionKeysNotFoundError { message } }
}
"""
BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) { __typename
    ... on PartitionBackfill { status endTimestamp } ... on PythonError { message } }
}
"""
RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) { ... on Runs { results {
    runId status creationTime startTime endTime tags { key value }
    stepStats { stepKey startTime endTime } } } }
}
"""
SENSOR_STATE = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename
    ... on Sensor { id sensorState { status ticks(limit: 1) { status } } } }
}
"""
STOP_SENSOR = """
mutation Stop($id: String!) {
  stopSensor(id: $id) { __typename ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message } }
}
"""
PARTITION_TAGS = """
query Tags($repositoryName: String!, $repositoryLocationName: String!, $jobName: String!,
           $partitionName: String!, $assetKeys: [AssetKeyInput!]!) {
  pipelineOrError(params: {pipelineName: $jobName, repositoryName: $repositoryName,
                           repositoryLocationName: $repositoryLocationName}) {
    ... on Pipeline { partition(partitionName: $partitionName, selectedAssetKeys: $assetKeys) {
      runConfigOrError { ... on PartitionRunConfig { yaml } }
      tagsOrError { ... on PartitionTags { results { key value } } } } } }
}
"""
LAUNCH_RUN = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) { __typename
    ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
    ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } }
}
"""
RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status creationTime startTime endTime
    stepStats { stepKey startTime endTime }
    eventConnection(limit: 100000) { events { __typename ... on MessageEvent { timestamp } } } } }
}
"""
# Where a run's time goes, by the event that ends each stretch.
MARKS = {
    "RunEnqueuedEvent": "enqueued",
    "RunStartingEvent": "starting",
    "RunStartEvent": "started",
    "ExecutionStepStartEvent": "first step",
    "RunSuccessEvent": "succeeded",
}


def new_store(root: Path) -> Path:
    """A new SF 0.01 store caught up to yesterday, as `make store` makes it."""
    store = root / "store"
    started = time.perf_counter()
    for step in (["generate", "--scale", "0.01"], ["catch-up"]):
        subprocess.run(
            [str(BIN / "orderflow-sim"), *step, "--data-dir", str(store)],
            check=True,
            capture_output=True,
        )
    print(f"generated the SF 0.01 store in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return store


def new_data_dir(root: Path, store: Path) -> Path:
    """A data dir with a new warehouse and systems over `store`'s landing zone."""
    data = Path(tempfile.mkdtemp(dir=root, prefix="data_"))
    layout.landing_dir(data).symlink_to(
        layout.landing_dir(store).resolve(), target_is_directory=True
    )
    return data


def with_settings(config: dict, settings: dict[str, object]) -> dict:
    """`config` with each dotted key set to its value."""
    for dotted, value in settings.items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


@contextmanager
def dagster_dev(
    root: Path, data: Path, workspace: Path, instance: str, settings: dict[str, object]
) -> Iterator[str]:
    """`dagster dev` over `data`, in a new DAGSTER_HOME under `root`; its URL once code is loaded."""
    from deploy import local_postgres

    home = Path(tempfile.mkdtemp(dir=root, prefix="home_"))
    home.chmod(0o755)  # as root, the PostgreSQL server runs as another user
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "ORDERFLOW_DATA_DIR": str(data), "ORDERFLOW_UI_URL": url}
    with ExitStack() as stack:
        if instance == "postgres":
            # What `python -m deploy.local_postgres --home HOME -- dagster dev ...` does.
            env.update(stack.enter_context(local_postgres.running(home)).environment())
        else:
            shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
            env["DAGSTER_HOME"] = str(home)
        config = yaml.safe_load((home / "dagster.yaml").read_text())
        (home / "dagster.yaml").write_text(yaml.safe_dump(with_settings(config, settings)))
        process = start(workspace, url, env, root / f"{home.name}.log")
        stack.callback(stop, process)
        wait_until_loaded(url, process, root / f"{home.name}.log")
        yield url


def job_assets(url: str, location: str) -> tuple[list[dict], list[dict]]:
    """The job's asset keys and its checks, as the UI selects them for *Materialize all…*."""
    pipeline = {"repositoryLocationName": location, "repositoryName": REPOSITORY}
    nodes = graphql(url, JOB_ASSETS, {"pipeline": {**pipeline, "pipelineName": JOB}})
    keys, checks = [], []
    for node in nodes["assetNodes"]:
        keys.append({"path": node["assetKey"]["path"]})
        for check in node["assetChecksOrError"].get("checks", []):
            if not check["jobNames"] or JOB in check["jobNames"]:
                checks.append({"assetKey": keys[-1], "name": check["name"]})
    return keys, checks


def sensor(url: str) -> dict:
    selector = {
        "repositoryLocationName": "orderflow",
        "repositoryName": REPOSITORY,
        "sensorName": SENSOR,
    }
    return graphql(url, SENSOR_STATE, {"selector": selector})["sensorOrError"]


def runs(url: str, key: str, value: str) -> list[dict]:
    found = graphql(url, RUNS, {"filter": {"tags": [{"key": key, "value": value}]}})
    return found["runsOrError"]["results"]


def _is_run_worker(process) -> bool:
    """A run's own process: the code server spawns one per run (multiprocessing's `spawn_main`;
    `dagster api execute_run` where runs are launched as commands)."""
    command = " ".join(process.cmdline())
    if "execute_run" in command:
        return True
    parent = process.parent()
    return (
        "spawn_main" in command and parent is not None and "api grpc" in " ".join(parent.cmdline())
    )


class RunMemory(threading.Thread):
    """Peak memory of the runs' processes: each run worker with its
    descendants (the forkserver and step processes of a parallel range), not `dagster dev` itself.

    Sampled every MEMORY_SAMPLE_S among this process's descendants. RSS counts a page that
    forked processes share once in each; PSS splits it, so the PSS sum is what the runs cost.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.peaks: dict[str, dict[str, float]] = {}

    def _keep(self, role: str, rss: float, pss: float) -> None:
        peak = self.peaks.setdefault(role, {"rss": 0.0, "pss": 0.0})
        peak["rss"], peak["pss"] = max(peak["rss"], rss / MB), max(peak["pss"], pss / MB)

    def sample(self) -> None:
        import psutil

        sums = {"runs": [0, 0], "run worker": [0, 0], "step processes": [0, 0]}
        for process in psutil.Process().children(recursive=True):
            try:
                if not _is_run_worker(process):
                    continue
                tree = [(process, "run worker")]
                tree += [(child, "step processes") for child in process.children(recursive=True)]
            except psutil.Error:
                continue
            for member, role in tree:
                try:
                    memory = member.memory_full_info()
                except psutil.Error:  # ended between the listing and the reading
                    continue
                for key in ("runs", role):
                    sums[key][0] += memory.rss
                    sums[key][1] += memory.pss
                self._keep("largest process", memory.rss, memory.pss)
        for role, (rss, pss) in sums.items():
            self._keep(role, rss, pss)

    def run(self) -> None:
        while not self.done.wait(MEMORY_SAMPLE_S):
            self.sample()

    def stop(self) -> dict[str, dict[str, float]]:
        """Stop sampling; the peaks, MB by role."""
        self.done.set()
        self.join()
        return self.peaks


def newcomer_backfill(url: str, days: int | None, timeout: float) -> dict:
    """Launch `order_to_cash_job` over every partition as the UI does; time it to completion."""
    # The sensor's first tick takes stock of what is there: a newcomer's clicks take longer.
    deadline = time.monotonic() + 120
    while not sensor(url)["sensorState"]["ticks"]:
        if time.monotonic() > deadline:
            raise SystemExit(f"{SENSOR} did not tick within 120 s")
        time.sleep(1)
    repository = {"repositoryLocationName": "orderflow", "repositoryName": REPOSITORY}
    partition_set = f"{JOB}_partition_set"
    found = graphql(
        url, PARTITIONS, {"repositorySelector": repository, "partitionSetName": partition_set}
    )
    names = [p["name"] for p in found["partitionSetOrError"]["partitionsOrError"]["results"]]
    names = names[:days] if days else names
    keys, _ = job_assets(url, "orderflow")
    # LaunchAssetChoosePartitionsDialog's parameters for a job that is not the hidden asset job.
    params = {
        "tags": [FROM_UI],
        "assetSelection": keys,
        "partitionNames": names,
        "fromFailure": False,
        "selector": {"partitionSetName": partition_set, "repositorySelector": repository},
    }
    memory = RunMemory()
    memory.start()
    launched_at = time.time()
    launched = graphql(url, LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"launchPartitionBackfill failed: {launched}")
    backfill_id = launched["backfillId"]
    figures: dict = {"partitions": len(names), "first": names[0], "last": names[-1]}
    deadline = time.monotonic() + timeout
    backfill_runs: list[dict] = []
    while time.monotonic() < deadline:
        state = graphql(url, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if state["status"] in BACKFILL_DONE:
            figures["backfill_status"] = state["status"]
            figures["backfill_completed_s"] = state["endTimestamp"] - launched_at
            figures["backfill_seen_completed_s"] = time.time() - launched_at
            backfill_runs = runs(url, "dagster/backfill", backfill_id)
            figures["peak_mb"] = memory.stop()
            break
        time.sleep(1)
    else:
        memory.stop()
        raise SystemExit(f"backfill {backfill_id} not complete after {timeout:.0f} s")
    figures["runs"] = [_run_figures(run, launched_at) for run in backfill_runs]
    if figures["backfill_status"] != "COMPLETED_SUCCESS":
        return figures
    ended = max(run["endTime"] for run in backfill_runs)
    while time.monotonic() < deadline:
        refreshes = [
            run for run in runs(url, "dagster/sensor_name", SENSOR) if run["creationTime"] >= ended
        ]
        if refreshes and all(run["status"] in FINISHED for run in refreshes):
            figures["analytics_runs"] = [_run_figures(run, launched_at) for run in refreshes]
            figures["analytics_done_s"] = max(run["endTime"] for run in refreshes) - launched_at
            return figures
        time.sleep(1)
    raise SystemExit(f"the analytics refresh did not finish within {timeout:.0f} s")


def _run_figures(run: dict, launched_at: float) -> dict:
    """A run's status and its creation, start and end in seconds after the launch."""
    return {
        "status": run["status"],
        "created_s": run["creationTime"] - launched_at,
        "started_s": (run["startTime"] or launched_at) - launched_at,
        "ended_s": (run["endTime"] or launched_at) - launched_at,
        "steps_s": {s["stepKey"]: s["endTime"] - s["startTime"] for s in run["stepStats"]},
    }


def launch_day(url: str, location: str, day: str, keys: list, checks: list) -> dict:
    """*Materialize all…* → one partition → *Launch 1 run*, then poll the run to its end."""
    launched_at = time.time()
    partition = graphql(
        url,
        PARTITION_TAGS,
        {
            "repositoryName": REPOSITORY,
            "repositoryLocationName": location,
            "jobName": JOB,
            "partitionName": day,
            "assetKeys": keys,
        },
    )["pipelineOrError"]["partition"]
    tags = [{"key": t["key"], "value": t["value"]} for t in partition["tagsOrError"]["results"]]
    params = {
        "mode": "default",
        "executionMetadata": {"tags": [*(t for t in tags if t["key"] != FROM_UI["key"]), FROM_UI]},
        "runConfigData": partition["runConfigOrError"]["yaml"] or "{}",
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": REPOSITORY,
            "pipelineName": JOB,
            "assetSelection": keys,
            "assetCheckSelection": checks,
        },
    }
    launched = graphql(url, LAUNCH_RUN, {"executionParams": params})["launchPipelineExecution"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise SystemExit(f"{location}: launch failed: {launched}")
    run_id = launched["run"]["runId"]
    while True:
        run = graphql(url, RUN, {"runId": run_id})["runOrError"]
        if run["status"] in FINISHED:
            break
        time.sleep(0.2)
    if run["status"] != "SUCCESS":
        raise SystemExit(f"{location}: run {run_id} of {day} ended {run['status']}")
    marks = {"launched": launched_at}
    for event in run["eventConnection"]["events"]:
        mark = MARKS.get(event["__typename"])
        if mark and mark not in marks:
            marks[mark] = int(event["timestamp"]) / 1000
    return {
        "launch_to_start_s": run["startTime"] - launched_at,
        "start_to_success_s": run["endTime"] - run["startTime"],
        "stretches_s": {
            f"{a}→{b}": marks[b] - marks[a] for a, b in zip(marks, list(marks)[1:], strict=False)
        },
        # By the real step's name (the empty location's steps are named empty_<name>).
        "steps_s": {
            s["stepKey"].removeprefix("empty_"): s["endTime"] - s["startTime"]
            for s in run["stepStats"]
        },
    }


def latency(url: str, rounds: int) -> dict:
    """Alternate one day of the real and the empty `order_to_cash_job`; medians of N rounds."""
    state = sensor(url)
    if state["sensorState"]["status"] == "RUNNING":
        stopped = graphql(url, STOP_SENSOR, {"id": state["id"]})["stopSensor"]
        if stopped["__typename"] != "StopSensorMutationResult":
            raise SystemExit(f"could not stop {SENSOR}: {stopped}")
    locations = {"real": "orderflow", "empty": "empty"}
    selections = {kind: job_assets(url, location) for kind, location in locations.items()}
    measured: dict[str, list[dict]] = {kind: [] for kind in locations}
    for number in range(rounds + 1):
        day = (LATENCY_FIRST_DAY + timedelta(days=number)).isoformat()
        # Each round swaps who goes first, so that neither always follows the other.
        order = list(locations) if number % 2 else list(reversed(locations))
        for kind in order:
            figures = launch_day(url, locations[kind], day, *selections[kind])
            if number:  # round 0 warms the caches and the code servers up
                measured[kind].append(figures)
            print(f"round {number} {kind:<5} {day}: {_one_line(figures)}", file=sys.stderr)
    return {kind: _medians(runs) for kind, runs in measured.items()}


def _one_line(figures: dict) -> str:
    return (
        f"launch→start {figures['launch_to_start_s']:.2f} s, "
        f"start→success {figures['start_to_success_s']:.2f} s"
    )


def _medians(measured: list[dict]) -> dict:
    stretches = measured[0]["stretches_s"]
    return {
        "n": len(measured),
        "launch_to_start_s": statistics.median(m["launch_to_start_s"] for m in measured),
        "start_to_success_s": statistics.median(m["start_to_success_s"] for m in measured),
        "launch_to_success_s": statistics.median(
            m["launch_to_start_s"] + m["start_to_success_s"] for m in measured
        ),
        "stretches_s": {
            name: statistics.median(m["stretches_s"].get(name, 0.0) for m in measured)
            for name in stretches
        },
        "steps_s": {
            name: statistics.median(m["steps_s"].get(name, 0.0) for m in measured)
            for name in measured[0]["steps_s"]
        },
    }


def report_latency(results: dict[str, dict]) -> None:
    for variant, kinds in results.items():
        real, empty = kinds["real"], kinds["empty"]
        print(f"{variant}: medians of {real['n']} runs each (seconds)")
        print(f"  {'':<22} {'real':>8} {'empty':>8} {'ratio':>7}")
        for name in ("launch_to_start_s", "start_to_success_s", "launch_to_success_s"):
            label = name.removesuffix("_s").replace("_to_", "→")
            print(
                f"  {label:<22} {real[name]:>8.2f} {empty[name]:>8.2f} {real[name] / empty[name]:>7.2f}"
            )
        for part in ("stretches_s", "steps_s"):
            print(f"  {'stretches' if part == 'stretches_s' else 'steps (start to end)'}:")
            for name, seconds in real[part].items():
                print(f"    {name:<36} {seconds:>8.2f} {empty[part].get(name, 0):>8.2f}")


def report_backfill(figures: dict) -> None:
    print(
        f"order_to_cash_job over {figures['partitions']:,} partitions "
        f"({figures['first']} .. {figures['last']}), launched as the UI does"
    )
    for run in figures["runs"]:
        print(
            f"  backfill run: created {run['created_s']:.1f} s, started {run['started_s']:.1f} s, "
            f"ended {run['ended_s']:.1f} s after the launch ({run['status']})"
        )
        for step, seconds in run["steps_s"].items():
            print(f"    {step:<40} {seconds:>8.1f} s")
    print(
        f"  backfill {figures['backfill_status']} at {figures['backfill_completed_s']:.1f} s "
        f"(seen at {figures['backfill_seen_completed_s']:.1f} s)"
    )
    for run in figures.get("analytics_runs", []):
        print(
            f"  analytics run ({SENSOR}): created {run['created_s']:.1f} s, "
            f"ended {run['ended_s']:.1f} s ({run['status']})"
        )
    for role, peak in figures.get("peak_mb", {}).items():
        print(f"  backfill's {role}: peak RSS {peak['rss']:,.0f} MB, PSS {peak['pss']:,.0f} MB")
    if "analytics_done_s" in figures:
        print(f"  whole graph up to date at {figures['analytics_done_s']:.1f} s")


def parse_variant(text: str) -> dict[str, object]:
    """`a.b=1,c=true` → {"a.b": 1, "c": True}."""
    pairs = (item.split("=", 1) for item in text.split(","))
    return {key.strip(): yaml.safe_load(value) for key, value in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["backfill", "latency"])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "out" / "ui")
    parser.add_argument("--store", type=Path, help="link this store's landing zone, as it is")
    parser.add_argument("--instance", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--days", type=int, help="backfill: only the first N partitions")
    parser.add_argument("--timeout", type=float, default=3600, help="backfill: give up after")
    parser.add_argument("-n", "--rounds", type=int, default=5, help="latency: runs of each job")
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        help="latency: also measure with these dagster.yaml settings (dotted.key=value,...)",
    )
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=args.work_dir, prefix=f"{args.mode}-"))
    root.chmod(0o755)
    store = args.store or new_store(root)
    load = os.getloadavg()
    if args.mode == "backfill":
        data = new_data_dir(root, store)
        with dagster_dev(root, data, ROOT / "workspace.yaml", args.instance, {}) as url:
            figures = newcomer_backfill(url, args.days, args.timeout)
        report_backfill(figures)
    else:
        figures = {}
        for settings in [{}, *args.variant]:
            name = ", ".join(f"{k}={v}" for k, v in settings.items()) or "dagster.yaml as it is"
            data = new_data_dir(root, store)
            workspace = ROOT / "bench" / "workspace.yaml"
            with dagster_dev(root, data, workspace, args.instance, settings) as url:
                figures[name] = latency(url, args.rounds)
        report_latency(figures)
    figures = {
        "mode": args.mode,
        "instance": args.instance,
        "load_before": load,
        "load_after": os.getloadavg(),
        "results": figures,
    }
    print(f"load average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}; outputs in {root}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
