"""A `dagster dev` driven as the UI drives it: start on loopback, wait until loaded, GraphQL, stop.

Shared by the tests (tests/dagster_dev.py) and the benchmarks (bench/ui.py), so that both start
and talk to `dagster dev` the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
DAGSTER = Path(sys.executable).parent / "dagster"
READY_TIMEOUT_S = 300  # ready in 5-50 s alone; much more beside other work on 2 cores
WORKSPACE = """
query { workspaceOrError { __typename
  ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } }
  ... on PythonError { message } } }
"""


class DagsterDevError(RuntimeError):
    """`dagster dev` exited, did not load its code, or answered a GraphQL call with errors."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(workspace: Path, url: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`dagster dev -w workspace` on `url`'s loopback port, its output in `log`."""
    port = url.rsplit(":", 1)[1]
    with log.open("w") as output:
        return subprocess.Popen(
            [str(DAGSTER), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", port],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that it stops with its children
        )


def stop(process: subprocess.Popen, timeout: float = 60) -> None:
    """Stop a process started in a session of its own, with its children: politely, then not."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def graphql(url: str, query_text: str, variables: dict | None = None) -> dict:
    """The data of a GraphQL answer; an answer with errors raises DagsterDevError."""
    response = requests.post(
        f"{url}/graphql", json={"query": query_text, "variables": variables or {}}, timeout=120
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise DagsterDevError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def wait_until_loaded(
    url: str, process: subprocess.Popen, log: Path, timeout: float = READY_TIMEOUT_S
) -> None:
    """Wait until the webserver answers and has loaded every code location, as the UI shows it."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = log.read_text()[-8000:]
            raise DagsterDevError(f"dagster dev exited ({process.returncode}); {log}:\n{tail}")
        try:
            entries = graphql(url, WORKSPACE)["workspaceOrError"]["locationEntries"]
        except requests.ConnectionError:
            entries = []
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            failed = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            if failed:
                raise DagsterDevError(f"a code location failed to load: {failed}; log: {log}")
            return
        if time.monotonic() > deadline:
            raise DagsterDevError(f"dagster dev did not load in {timeout:.0f} s; its log: {log}")
        time.sleep(0.5)
