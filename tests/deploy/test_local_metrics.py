"""`make dev METRICS=1`: deploy/local_metrics.py runs Prometheus and its Pushgateway around a command.

Each test runs the module as `make dev` does (`python -m deploy.local_metrics --home H -- CMD`)
with Debian's servers on free loopback ports and a DAGSTER_HOME of its own, without PYTHONPATH
(a clean clone's `make dev` has none).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.dagster_dev import free_port
from deploy.local_metrics import LocalMetrics
from foundation.settings import PROJECT_ROOT
from tests.metrics import require_binaries

MODULE = [sys.executable, "-m", "deploy.local_metrics"]
# Pushes a gauge to the Pushgateway the module names, reads it back, and asks Prometheus whether it
# is up (the slow test in tests/sensors/test_metrics_sensor.py waits for its scrapes).
PUSH_AND_READ = textwrap.dedent(
    """
    import json, os, sys
    import requests
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    url = os.environ["ORDERFLOW_PUSHGATEWAY_URL"]
    registry = CollectorRegistry()
    Gauge("orderflow_wrapped", "A test's gauge.", registry=registry).set(42)
    push_to_gateway(url, job="wrapped", registry=registry)
    pushed = [line for line in requests.get(url + "/metrics", timeout=30).text.splitlines()
              if line.startswith("orderflow_wrapped")]
    ready = requests.get(sys.argv[1] + "/-/ready", timeout=30).status_code
    print(json.dumps({"url": url, "pushed": pushed, "prometheus": ready}))
    raise SystemExit(3)
    """
)
WAITS_FOR_CTRL_C = textwrap.dedent(
    """
    import os, time

    try:
        print(os.environ["ORDERFLOW_PUSHGATEWAY_URL"], flush=True)
        time.sleep(600)
    except KeyboardInterrupt:
        raise SystemExit(7)
    """
)


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def ports_args(pushgateway: int, prometheus: int) -> list[str]:
    return [
        *("--pushgateway-port", str(pushgateway), "--prometheus-port", str(prometheus)),
        *("--scrape-interval", "1s"),
    ]


def port_free(port: int) -> bool:
    """Nothing listens on the loopback port (connections left in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def ports(tmp_path) -> Iterator[tuple[int, int]]:
    """Two free ports for the servers of `tmp_path/home`, stopped afterwards if a test left them."""
    require_binaries()
    pushgateway, prometheus = free_port(), free_port()
    yield pushgateway, prometheus
    LocalMetrics(tmp_path / "home" / "metrics", pushgateway, prometheus).stop()


def test_the_command_runs_beside_both_servers_which_stop_with_it(tmp_path, ports):
    home = tmp_path / "home"
    pushgateway, prometheus = ports
    done = subprocess.run(
        [
            *MODULE,
            *("--home", str(home), *ports_args(pushgateway, prometheus), "--"),
            *(sys.executable, "-c", PUSH_AND_READ, f"http://127.0.0.1:{prometheus}"),
        ],
        cwd=PROJECT_ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 3, done.stderr  # the command's own exit status
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {
        "url": f"http://127.0.0.1:{pushgateway}",
        "pushed": ['orderflow_wrapped{instance="",job="wrapped"} 42'],
        "prometheus": 200,
    }
    assert port_free(pushgateway) and port_free(prometheus)
    # Their state stays under DAGSTER_HOME (not committed), for the next session.
    metrics = home / "metrics"
    assert (metrics / "prometheus.yml").is_file()
    assert (metrics / "prometheus").is_dir()
    assert (metrics / "pushgateway.state").is_file()


def session(home: Path, pushgateway: int, prometheus: int, script: str) -> subprocess.Popen:
    """`make dev METRICS=1` in a terminal: the module around a command, in a process group."""
    return subprocess.Popen(
        [
            *MODULE,
            *("--home", str(home), *ports_args(pushgateway, prometheus), "--"),
            *(sys.executable, "-c", script),
        ],
        cwd=PROJECT_ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_servers_left_by_a_killed_session_are_taken_over_and_ctrl_c_stops_them(tmp_path, ports):
    home = tmp_path / "home"
    pushgateway, prometheus = ports
    url = f"http://127.0.0.1:{pushgateway}\n"
    # A session killed with SIGKILL, command and all, could not stop its servers.
    killed = session(home, pushgateway, prometheus, WAITS_FOR_CTRL_C)
    try:
        assert killed.stdout.readline() == url
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.communicate()
    assert not port_free(pushgateway) and not port_free(prometheus)

    # The next session takes them over; Ctrl-C (SIGINT to the whole process group) ends it.
    ended = session(home, pushgateway, prometheus, WAITS_FOR_CTRL_C)
    try:
        assert ended.stdout.readline() == url
        os.killpg(ended.pid, signal.SIGINT)
        _, err = ended.communicate(timeout=300)
    finally:
        if ended.poll() is None:
            os.killpg(ended.pid, signal.SIGKILL)
    assert ended.returncode == 7, err
    assert port_free(pushgateway) and port_free(prometheus), err


def test_a_port_in_use_is_refused_naming_it_and_the_fix(tmp_path, ports):
    pushgateway, prometheus = ports
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", prometheus))
        taken.listen()
        done = subprocess.run(
            [
                *MODULE,
                *("--home", str(tmp_path / "home"), *ports_args(pushgateway, prometheus)),
                *("--", sys.executable, "-c", "print('ran')"),
            ],
            cwd=PROJECT_ROOT,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode != 0 and "ran" not in done.stdout
    assert f"127.0.0.1:{prometheus} is in use" in done.stderr
    assert "PROMETHEUS_PORT=" in done.stderr
    assert port_free(pushgateway)


def dev_command(*args: str) -> str:
    """The line `make dev` would run `dagster dev` with (make -n: nothing is run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("METRICS", "INSTANCE")}
    done = subprocess.run(
        ["make", "-n", "dev", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    commands = done.stdout.replace("\\\n", " ").splitlines()
    (line,) = [line for line in commands if " dev -w " in line]
    return line


def test_make_dev_starts_the_servers_only_when_asked():
    assert "local_metrics" not in dev_command()
    assert "local_metrics" not in dev_command("INSTANCE=sqlite")
    for instance in ("postgres", "sqlite"):
        line = dev_command("METRICS=1", f"INSTANCE={instance}")
        wrapper = (
            " -m deploy.local_metrics --home "
            f"{Path(os.environ.get('DAGSTER_HOME', PROJECT_ROOT / '.dagster_home'))}"
        )
        assert wrapper in line.replace('"', ""), line
        assert "--pushgateway-port 9091 --prometheus-port 9090 --" in line
        assert line.index("local_metrics") < line.index(" dev -w ")
    line = dev_command("METRICS=1", "PROMETHEUS_PORT=9190", "PUSHGATEWAY_PORT=9191")
    assert "--pushgateway-port 9191 --prometheus-port 9190 --" in line
    # Around the local PostgreSQL server's wrapper, which passes the environment on.
    assert line.index("local_metrics") < line.index("local_postgres")
