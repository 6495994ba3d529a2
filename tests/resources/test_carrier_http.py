"""The HTTP carrier against the real `orderflow-sim carrier` server: same answers, clear failures."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests

from deploy.dagster_dev import free_port
from foundation.sqldb.connections import sqlite_url
from resources.carrier import LocalCarrier, ShipmentLine, ShipmentRequest
from resources.carrier_http import HttpCarrier
from resources.faults import SystemRefused, SystemUnavailable
from simulator.carrier import request_to_json
from simulator.cli import main

SIM = Path(sys.executable).with_name("orderflow-sim")
TOKEN = "s3cret-carrier-token"


class Carrier:
    """A running `orderflow-sim carrier` process over its own data dir."""

    def __init__(
        self, root: Path, *options: str, token: str | None = None, default_data_dir: bool = False
    ):
        # default_data_dir: no --data-dir, so the server finds the pipeline's ($ORDERFLOW_DATA_DIR).
        self.data_dir = (
            Path(os.environ["ORDERFLOW_DATA_DIR"]) if default_data_dir else root / "data"
        )
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stderr = root / "carrier.stderr"
        env = {k: v for k, v in os.environ.items() if k != "ORDERFLOW_CARRIER_TOKEN"}
        if token is not None:
            env["ORDERFLOW_CARRIER_TOKEN"] = token
        root.mkdir(parents=True, exist_ok=True)
        with self.stderr.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    SIM,
                    "carrier",
                    "--port",
                    str(self.port),
                    *([] if default_data_dir else ["--data-dir", str(self.data_dir)]),
                    *options,
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                text=True,
            )
        self._wait_until_healthy()
        assert self.process.stdout.readline() == f"carrier listening on {self.base_url}\n"

    def _wait_until_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"carrier exited {self.process.returncode}: {self.stderr.read_text()}")
            try:
                if requests.get(f"{self.base_url}/health", timeout=1).json() == {"status": "ok"}:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        pytest.fail(f"carrier not healthy within {timeout} s: {self.stderr.read_text()}")

    @property
    def database(self) -> Path:
        return self.data_dir / "systems" / "carrier.sqlite"

    def row_counts(self) -> tuple[int, int]:
        with sqlite3.connect(self.database) as conn:
            return (
                conn.execute("select count(*) from shipments").fetchone()[0],
                conn.execute("select count(*) from shipment_lines").fetchone()[0],
            )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        return self.process.returncode


@pytest.fixture
def start_carrier(tmp_path):
    """Start carrier servers for one test; all are stopped at its end."""
    started: list[Carrier] = []

    def start(*options: str, **kwargs) -> Carrier:
        carrier = Carrier(tmp_path / f"carrier-{len(started)}", *options, **kwargs)
        started.append(carrier)
        return carrier

    yield start
    for carrier in started:
        carrier.stop()


@pytest.fixture(scope="module")
def shared_carrier(tmp_path_factory):
    """A carrier without faults, shared by the tests that use their own order keys."""
    carrier = Carrier(tmp_path_factory.mktemp("shared-carrier"))
    yield carrier
    carrier.stop()


def requests_for(*order_keys: int) -> list[ShipmentRequest]:
    modes = ["AIR", "REG AIR", "TRUCK", "MAIL", "FOB", "RAIL", "SHIP"]
    return [
        ShipmentRequest(
            order_key=key,
            order_day=f"2021-03-{1 + key % 3:02d}",
            destination="FRANCE",
            lines=tuple(
                ShipmentLine(line, quantity=line * 2, ship_mode=modes[(key + line) % len(modes)])
                for line in range(1, 2 + key % 3)
            ),
        )
        for key in order_keys
    ]


def test_answers_match_the_local_carrier(shared_carrier, tmp_path):
    batch = requests_for(101, 102, 103, 104)
    http = HttpCarrier(base_url=shared_carrier.base_url)
    local = LocalCarrier(url=sqlite_url(tmp_path / "local" / "carrier.sqlite"))
    answers = http.create_shipments(batch)
    assert answers == local.create_shipments(batch)
    assert all(a.status == "shipped" and a.tracking_number for a in answers)
    assert all(line.ship_date and line.delivery_date for a in answers for line in a.lines)
    window = ("2021-03-01", "2021-03-04")
    assert http.shipments_by_day(*window) == local.shipments_by_day(*window) != {}


def test_bulk_frames_over_http_match_the_local_carriers_arrays(shared_carrier, tmp_path):
    """The default bulk form (batches of requests over HTTP) equals the local one on arrays."""
    batch = [
        *requests_for(1301, 1302, 1303),
        ShipmentRequest(
            1304, "2021-03-02", "CHINA", (ShipmentLine(1, 5, "AIR"), ShipmentLine(2, 1, "CANOE"))
        ),
    ]
    lines = pd.DataFrame.from_records(
        [
            (r.order_key, r.order_day, r.destination, x.line_number, x.quantity, x.ship_mode)
            for r in batch
            for x in r.lines
        ],
        columns=["order_key", "order_day", "destination", "line_number", "quantity", "ship_mode"],
    )
    local = LocalCarrier(url=sqlite_url(tmp_path / "local" / "carrier.sqlite"))
    over_http = HttpCarrier(base_url=shared_carrier.base_url).create_shipments_frame(lines)
    on_arrays = local.create_shipments_frame(lines)
    pd.testing.assert_frame_equal(over_http, on_arrays, check_dtype=False)
    assert over_http["order_key"].tolist() == lines["order_key"].tolist()
    refused = over_http[over_http["order_key"] == 1304]
    assert set(refused["status"]) == {"refused"}
    assert "CANOE" in refused["reason"].iloc[0]
    # asked again, the arrays come back the same and the carrier stores nothing new
    stored = local.shipments_by_day("2021-01-01", "2022-01-01")
    assert sum(stored["2021-03-02"].values()) >= 1
    pd.testing.assert_frame_equal(local.create_shipments_frame(lines), on_arrays, check_dtype=False)
    assert local.shipments_by_day("2021-01-01", "2022-01-01") == stored


def test_repeated_requests_get_the_first_answers_and_add_no_rows(shared_carrier):
    http = HttpCarrier(base_url=shared_carrier.base_url)
    batch = requests_for(201, 202, 203)
    first = http.create_shipments(batch)
    summary, rows = http.shipments_by_day("2021-01-01", "2022-01-01"), shared_carrier.row_counts()
    again = http.create_shipments([batch[2], batch[0], batch[1]])
    assert again == [first[2], first[0], first[1]]
    assert http.shipments_by_day("2021-01-01", "2022-01-01") == summary
    assert shared_carrier.row_counts() == rows


def test_an_order_asked_twice_in_one_batch_gets_the_same_answer_twice(shared_carrier):
    http = HttpCarrier(base_url=shared_carrier.base_url)
    [first] = http.create_shipments(requests_for(211))
    assert http.create_shipments(requests_for(211, 211)) == [first, first]


def test_batches_keep_request_order(shared_carrier, tmp_path):
    batch = requests_for(305, 301, 304, 302, 303)
    answers = HttpCarrier(base_url=shared_carrier.base_url, batch_size=2).create_shipments(batch)
    assert [a.order_key for a in answers] == [305, 301, 304, 302, 303]
    local = LocalCarrier(url=sqlite_url(tmp_path / "local" / "carrier.sqlite"))
    assert answers == local.create_shipments(batch)
    assert HttpCarrier(base_url=shared_carrier.base_url).create_shipments([]) == []


def test_malformed_requests_are_400_and_unknown_routes_404(shared_carrier):
    url = f"{shared_carrier.base_url}/v1/shipments"
    bad_json = requests.post(
        url, data="{not json", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert bad_json.status_code == 400
    assert "not JSON" in bad_json.json()["error"]
    missing = requests.post(url, json={"shipments": [{"order_key": 1}]}, timeout=5)
    assert missing.status_code == 400
    assert "shipments[0]" in missing.json()["error"]
    [request] = requests_for(402)
    twice = {
        **request_to_json(request),
        "lines": [{"line_number": 1, "quantity": 1, "ship_mode": "AIR"}] * 2,
    }
    same_line = requests.post(url, json={"shipments": [twice]}, timeout=5)
    assert same_line.status_code == 400
    assert "repeats a line number" in same_line.json()["error"]
    bad_day = requests.get(
        f"{url}/summary", params={"start": "yesterday", "end": "2021-01-01"}, timeout=5
    )
    assert bad_day.status_code == 400
    assert requests.get(f"{shared_carrier.base_url}/v2/nothing", timeout=5).status_code == 404
    # A wrong base_url is a configuration error: no retry can fix it.
    wrong = HttpCarrier(base_url=f"{shared_carrier.base_url}/api")
    with pytest.raises(SystemRefused, match=r"404.*base_url"):
        wrong.create_shipments(requests_for(401))


def test_a_rejected_order_is_refused_with_a_reason(start_carrier):
    carrier = start_carrier("--reject", "502")
    answers = HttpCarrier(base_url=carrier.base_url).create_shipments(requests_for(501, 502))
    assert [(a.order_key, a.status) for a in answers] == [(501, "shipped"), (502, "refused")]
    refused = answers[1]
    assert refused.tracking_number is None
    assert "refused" in refused.reason


def test_a_down_carrier_is_unavailable(start_carrier):
    carrier = start_carrier("--down")
    http = HttpCarrier(base_url=carrier.base_url)
    with pytest.raises(SystemUnavailable, match=r"carrier .*503.*down") as error:
        http.create_shipments(requests_for(601))
    assert carrier.base_url in str(error.value)
    with pytest.raises(SystemUnavailable):
        http.shipments_by_day("2021-01-01", "2022-01-01")


def test_an_outage_of_one_call_fails_once_then_recovers(start_carrier):
    http = HttpCarrier(base_url=start_carrier("--outage-calls", "1").base_url)
    with pytest.raises(SystemUnavailable, match="503"):
        http.create_shipments(requests_for(701))
    [answer] = http.create_shipments(requests_for(701))
    assert answer.status == "shipped"


def test_the_server_reads_the_outage_state_at_each_call(start_carrier, tmp_path, monkeypatch):
    # As under `make dev`: neither the server nor the command is told the data dir.
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(tmp_path / "pipeline-data"))
    carrier = start_carrier(default_data_dir=True)
    # Room for a loaded machine's slowest honest answer, below the injected slowness.
    http = HttpCarrier(base_url=carrier.base_url, timeout_seconds=5)

    def outage(*args: str) -> None:
        assert main(["outage", "carrier", *args]) == 0

    outage("--down")
    with pytest.raises(SystemUnavailable, match=r"503.*carrier is down.*--up"):
        http.create_shipments(requests_for(1001))
    outage("--up")
    [first] = http.create_shipments(requests_for(1001))
    assert first.status == "shipped"
    # Slower than the client waits: the timeout is transient, and the retry ships nothing twice.
    outage("--slow", "8")
    with pytest.raises(SystemUnavailable, match="Timeout"):
        http.create_shipments(requests_for(1002))
    outage("--clear")
    [second] = http.create_shipments(requests_for(1002))
    assert second.status == "shipped"
    outage("--reject", "1003")
    [refused] = http.create_shipments(requests_for(1003))
    assert refused.status == "refused"
    assert http.create_shipments(requests_for(1001, 1002)) == [first, second]
    assert carrier.row_counts()[0] == 3


def test_the_token_is_required_when_the_server_has_one(start_carrier, monkeypatch):
    carrier = start_carrier(token=TOKEN)
    batch = requests_for(801)
    for token in (None, "wrong-token"):
        with pytest.raises(SystemRefused, match=r"401.*ORDERFLOW_CARRIER_TOKEN") as error:
            HttpCarrier(base_url=carrier.base_url, token=token).create_shipments(batch)
        assert TOKEN not in str(error.value)
    [answer] = HttpCarrier(base_url=carrier.base_url, token=TOKEN).create_shipments(batch)
    assert answer.status == "shipped"
    assert TOKEN not in carrier.stderr.read_text()
    # The intended wiring: the token comes from the environment when Dagster builds the resource.
    monkeypatch.setenv("ORDERFLOW_CARRIER_TOKEN", TOKEN)
    configured = HttpCarrier(base_url=carrier.base_url, token=dg.EnvVar("ORDERFLOW_CARRIER_TOKEN"))
    with dg.build_resources({"carrier": configured}) as resources:
        assert resources.carrier.create_shipments(batch) == [answer]


def test_nothing_listening_is_unavailable():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SystemUnavailable, match=re.escape(f"carrier unreachable at {url}")):
        HttpCarrier(base_url=url, timeout_seconds=2).create_shipments(requests_for(901))


def test_the_server_stops_cleanly_on_sigterm(start_carrier):
    carrier = start_carrier()
    assert carrier.stop() == 0
    assert carrier.stderr.read_text() == ""


def test_a_revision_amends_over_http_as_it_does_locally(shared_carrier, tmp_path):
    first = requests_for(401)[0]
    later = ShipmentRequest(
        first.order_key, first.order_day, first.destination, (ShipmentLine(7, 1, "AIR"),), 1
    )
    http = HttpCarrier(base_url=shared_carrier.base_url)
    local = LocalCarrier(url=sqlite_url(tmp_path / "local" / "carrier.sqlite"))
    assert http.create_shipments([first]) == local.create_shipments([first])
    amended = http.create_shipments([later])
    assert amended == local.create_shipments([later])
    assert [line.line_number for line in amended[0].lines] == [7]
