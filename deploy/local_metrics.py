"""Prometheus and its Pushgateway beside `make dev METRICS=1`: started before a command, stopped after.

    python -m deploy.local_metrics [--home DAGSTER_HOME] [--pushgateway-port 9091]
        [--prometheus-port 9090] [--scrape-interval 15s] -- dagster dev -w workspace.yaml

Debian's `prometheus-pushgateway` (an upstream `pushgateway` will do) and `prometheus` listen on
127.0.0.1 only. Their state lives in `$DAGSTER_HOME/metrics/`: Prometheus' configuration (it
scrapes the Pushgateway and keeps the labels the metrics were pushed with) and storage, the
Pushgateway's state file (what was pushed survives a restart), both logs. The command runs with
ORDERFLOW_PUSHGATEWAY_URL naming the Pushgateway, which turns the metrics sensors on. When the
command ends, however it ends, both servers stop; servers a killed session left are stopped first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.local_postgres import run_child
from foundation.settings import PUSHGATEWAY_URL_ENV

HOST = "127.0.0.1"
SERVERS = {
    # name: the commands that may run it, first found wins; the make variable for its port.
    "pushgateway": (("prometheus-pushgateway", "pushgateway"), "PUSHGATEWAY_PORT"),
    "prometheus": (("prometheus",), "PROMETHEUS_PORT"),
}
INSTALL = "sudo apt-get install -y --no-install-recommends prometheus prometheus-pushgateway"
READY_TIMEOUT_S = 120
RETENTION = "15d"  # Prometheus' own default, said out loud: the disk it takes stays bounded
CONFIG = """\
# Written by deploy/local_metrics.py at each start.
global:
  scrape_interval: {interval}
scrape_configs:
  - job_name: pushgateway
    # The pushed job, asset, step and day labels are the metrics' own: keep them.
    honor_labels: true
    static_configs:
      - targets: ["{target}"]
"""


class MetricsServersMissing(RuntimeError):
    """Prometheus' or the Pushgateway's binary is not installed."""


def binaries() -> dict[str, str]:
    """The server binaries on PATH, by server name."""
    found = {
        name: next((path for c in commands if (path := shutil.which(c))), None)
        for name, (commands, _) in SERVERS.items()
    }
    missing = [SERVERS[name][0][0] for name, path in found.items() if path is None]
    if missing:
        raise MetricsServersMissing(
            f"{' and '.join(missing)} not found on PATH: `{INSTALL}` installs Debian's (.ci/run, "
            "run as root, installs them)"
        )
    return found  # type: ignore[return-value]


def _process(entry: list | None):
    """The process a [pid, start time] entry names, if it still runs."""
    import psutil

    try:
        process = psutil.Process(int(entry[0]))
        return process if process.create_time() == float(entry[1]) else None
    except (TypeError, ValueError, IndexError, psutil.Error):
        return None


def _entry(pid: int) -> list:
    import psutil

    return [pid, psutil.Process(pid).create_time()]


@dataclass(frozen=True)
class LocalMetrics:
    """The Pushgateway and Prometheus of a directory, on loopback ports."""

    root: Path
    pushgateway_port: int = 9091
    prometheus_port: int = 9090
    scrape_interval: str = "15s"

    @property
    def pushgateway_url(self) -> str:
        """Where the Pushgateway takes pushes (and serves what it holds, at /metrics)."""
        return f"http://{HOST}:{self.pushgateway_port}"

    @property
    def prometheus_url(self) -> str:
        """Prometheus' UI and HTTP API."""
        return f"http://{HOST}:{self.prometheus_port}"

    @property
    def _pids(self) -> Path:
        """Which session started the servers, and their processes: [pid, start time] each."""
        return self.root / "servers.json"

    def environment(self) -> dict[str, str]:
        """What the command needs to push metrics."""
        return {PUSHGATEWAY_URL_ENV: self.pushgateway_url}

    def _commands(self, prometheus: bool) -> dict[str, list[str]]:
        found = binaries()
        commands = {
            "pushgateway": [
                found["pushgateway"],
                f"--web.listen-address={HOST}:{self.pushgateway_port}",
                f"--persistence.file={self.root / 'pushgateway.state'}",
            ]
        }
        if prometheus:
            (self.root / "prometheus.yml").write_text(
                CONFIG.format(
                    interval=self.scrape_interval, target=f"{HOST}:{self.pushgateway_port}"
                )
            )
            commands["prometheus"] = [
                found["prometheus"],
                f"--config.file={self.root / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.root / 'prometheus'}",
                f"--storage.tsdb.retention.time={RETENTION}",
                f"--web.listen-address={HOST}:{self.prometheus_port}",
            ]
        return commands

    def start(self, prometheus: bool = True) -> None:
        """Start the Pushgateway (and Prometheus) and wait until they answer; stopped on failure."""
        self.root.mkdir(parents=True, exist_ok=True)
        commands = self._commands(prometheus)
        self._take_over()
        ports = {"pushgateway": self.pushgateway_port, "prometheus": self.prometheus_port}
        for name in commands:
            _require_free(ports[name], SERVERS[name][1])
        started = {"session": _entry(os.getpid())}
        try:
            for name, command in commands.items():
                with (self.root / f"{name}.log").open("ab") as log:
                    process = subprocess.Popen(
                        command,
                        cwd=self.root,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        # Not in the command's process group: Ctrl-C stops the command first,
                        # and the servers after it.
                        start_new_session=True,
                    )
                started[name] = _entry(process.pid)
                self._pids.write_text(json.dumps(started))
                self._wait_until_ready(name, process, ports[name])
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, name: str, process: subprocess.Popen, port: int) -> None:
        import requests

        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                log = self.root / f"{name}.log"
                tail = log.read_text(errors="replace")[-4000:]
                raise SystemExit(f"{name} exited ({process.returncode}); its log ({log}):\n{tail}")
            try:
                if requests.get(f"http://{HOST}:{port}/-/ready", timeout=5).ok:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not answer in {READY_TIMEOUT_S} s: see {self.root}")
            time.sleep(0.1)

    def _take_over(self) -> None:
        """Stop servers a killed session left; refuse when their session still runs."""
        try:
            recorded = json.loads(self._pids.read_text())
        except (FileNotFoundError, ValueError):
            return
        session = _process(recorded.get("session"))
        if session is not None and session.pid != os.getpid():
            raise SystemExit(
                f"Prometheus and the Pushgateway of {self.root} already run for another session "
                f"(process {session.pid}): use that one, or stop it first."
            )
        self.stop()

    def stop(self) -> None:
        """Stop the servers this directory's sessions started, if they still run."""
        import psutil

        try:
            recorded = json.loads(self._pids.read_text())
        except (FileNotFoundError, ValueError):
            return
        for name in SERVERS:
            process = _process(recorded.get(name))
            if process is None:
                continue
            process.terminate()  # both shut down cleanly: the Pushgateway saves its state
            try:
                process.wait(timeout=60)
            except psutil.TimeoutExpired:
                process.kill()
                process.wait(timeout=60)
        self._pids.unlink(missing_ok=True)


def _require_free(port: int, variable: str) -> None:
    with socket.socket() as probe:
        # As the servers bind: connections of a server just stopped (TIME_WAIT) are no obstacle.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise SystemExit(
                f"{HOST}:{port} is in use: stop what listens there, or pick another port, e.g. "
                f"`make dev METRICS=1 {variable}={port + 100}`."
            ) from None


def run(servers: LocalMetrics, command: Sequence[str]) -> int:
    """Run `command` with the servers up and their address in its environment; its exit status."""
    servers.start()
    try:
        print(
            f"Prometheus: {servers.prometheus_url}  Pushgateway: {servers.pushgateway_url}  "
            f"(state and logs: {servers.root})",
            file=sys.stderr,
            flush=True,
        )
        return run_child(command, servers.environment())
    finally:
        servers.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `[--home DIR] [ports] -- COMMAND...`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home",
        type=Path,
        default=os.environ.get("DAGSTER_HOME"),
        help="DAGSTER_HOME: the servers' state goes in its metrics/ (default: the variable)",
    )
    parser.add_argument("--pushgateway-port", type=int, default=9091)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--scrape-interval", default="15s", help="Prometheus' (default 15s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.home is None or not command:
        parser.error("give --home (or set DAGSTER_HOME) and a command after --")
    try:
        servers = LocalMetrics(
            args.home.resolve() / "metrics",
            args.pushgateway_port,
            args.prometheus_port,
            args.scrape_interval,
        )
        status = run(servers, command)
    except MetricsServersMissing as missing:
        raise SystemExit(
            f"make dev METRICS=1 needs Prometheus and its Pushgateway: {missing}"
        ) from None
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
