"""The carrier's HTTP server bounds what a client can send and hold; the client tells 4xx from 5xx.

Real HTTP on loopback against the server `orderflow-sim carrier` runs (`serve`, in a thread).
"""

from __future__ import annotations

import logging
import re
import select
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from foundation.sqldb.connections import sqlite_url
from resources.carrier import ShipmentLine, ShipmentRequest
from resources.carrier_http import HttpCarrier
from resources.faults import SystemRefused
from simulator.carrier import request_to_json
from simulator.carrier_server import Limits, serve


@contextmanager
def carrier_server(root: Path, **limits) -> Iterator[str]:
    """A carrier server on a free loopback port; yields its base URL."""
    server = serve(
        "127.0.0.1",
        0,
        sqlite_url(root / "systems" / "carrier.sqlite"),
        systems_dir=root / "systems",
        limits=Limits(**limits),
    )
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    with carrier_server(tmp_path_factory.mktemp("carrier")) as url:
        yield url


def shipment(order_key=1, destination="FRANCE", quantity=2, **fields) -> dict:
    body = request_to_json(
        ShipmentRequest(1, "2021-03-01", destination, (ShipmentLine(1, 1, "AIR"),))
    )
    body["order_key"] = order_key
    body["lines"][0]["quantity"] = quantity
    return {**body, **fields}


def post(base_url: str, body: object = None, **kwargs) -> requests.Response:
    if body is not None:
        kwargs["json"] = body
    return requests.post(f"{base_url}/v1/shipments", timeout=30, **kwargs)


def stored_shipments(root: Path) -> int:
    database = root / "systems" / "carrier.sqlite"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as con:
        return con.execute("select count(*) from shipments").fetchone()[0]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"order_key": 10**30}, r"order_key must be an integer 1\.\.9223372036854775807"),
        ({"order_key": -5}, "order_key must be an integer"),
        ({"order_key": "12"}, "order_key must be an integer"),
        ({"quantity": -3}, r"quantity must be an integer 1\.\.1000000, not -3"),
        ({"quantity": 0}, "quantity must be an integer"),
        ({"destination": "X" * 10_000}, r"destination must be 1\.\.64 characters, not 10000"),
        ({"destination": ""}, r"destination must be 1\.\.64 characters, not 0"),
    ],
)
def test_out_of_bounds_fields_are_400_with_the_reason(base_url, fields, reason):
    answer = post(base_url, {"shipments": [shipment(**fields)]})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("shipments[0]")
    assert re.search(reason, answer.json()["error"]), answer.json()
    # The message quotes no more of the value than a reader needs.
    assert len(answer.text) < 400


def test_deeply_nested_json_is_400(base_url):
    nested = "[" * 100_000 + "]" * 100_000
    answer = post(base_url, data=nested, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert "nested too deeply" in answer.json()["error"]


def test_a_body_that_is_not_declared_json_is_415(base_url):
    body = '{"shipments": []}'
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/xml"}):
        answer = post(base_url, data=body, headers=headers)
        assert answer.status_code == 415, headers
        assert "application/json" in answer.json()["error"]
    declared = post(
        base_url, data=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert declared.status_code == 200
    assert declared.json() == {"shipments": []}


def test_a_body_over_the_limit_is_413_and_the_client_says_what_to_change(tmp_path):
    with carrier_server(tmp_path, max_body_bytes=1000) as url:
        answer = post(url, {"shipments": [shipment(key) for key in range(1, 40)]})
        assert answer.status_code == 413
        assert "1000 bytes" in answer.json()["error"]
        carrier = HttpCarrier(base_url=url)
        batch = [
            ShipmentRequest(key, "2021-03-01", "FRANCE", (ShipmentLine(1, 1, "AIR"),))
            for key in range(1, 40)
        ]
        with pytest.raises(SystemRefused, match=r"413.*1000 bytes.*batch_size"):
            carrier.create_shipments(batch)
        # Smaller batches fit.
        assert len(HttpCarrier(base_url=url, batch_size=2).create_shipments(batch)) == 39
    assert stored_shipments(tmp_path) == 39


def test_the_client_treats_a_400_as_permanent_with_the_servers_reason(tmp_path):
    with carrier_server(tmp_path) as url:
        negative = ShipmentRequest(5, "2021-03-01", "FRANCE", (ShipmentLine(1, -1, "AIR"),))
        with pytest.raises(SystemRefused, match=r"HTTP 400.*quantity must be an integer"):
            HttpCarrier(base_url=url).create_shipments([negative])
    assert stored_shipments(tmp_path) == 0


def test_slow_and_idle_connections_are_cut_and_cannot_starve_a_request(tmp_path, caplog):
    """With every worker taken by clients that send nothing or a byte now and then, a real
    request is still answered: each connection has a deadline to deliver its request."""
    caplog.set_level(logging.DEBUG, logger="simulator.carrier_server")
    workers = 2
    with carrier_server(tmp_path, max_connections=workers, request_timeout=1.0) as url:
        port = int(url.rsplit(":", 1)[1])
        baseline = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        for sock in slow:
            sock.sendall(b"POST /v1/shipments HTTP/1.1\r\nHost: x\r\n")
        cut: set[socket.socket] = set()
        answered: list[bytes] = []
        stop = threading.Event()
        threads_most = [0]

        def trickle() -> None:
            # One header byte per 50 ms until the server closes the connection: never a whole
            # request, never quiet for long. Only a deadline on the whole request ends it.
            while not stop.wait(0.05) and len(cut) < len(idle) + len(slow):
                threads_most[0] = max(threads_most[0], threading.active_count() - baseline)
                for sock in idle + slow:
                    if sock in cut:
                        continue
                    readable, _, _ = select.select([sock], [], [], 0)
                    try:
                        if readable:
                            answered.append(sock.recv(1024))
                            if not answered[-1]:
                                cut.add(sock)
                        elif sock in slow:
                            sock.send(b"X")
                    except OSError:
                        cut.add(sock)

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            # Queued behind all eight, the request is served only once the server has cut at
            # least seven of them: without a deadline on the whole request it times out.
            request = ShipmentRequest(9, "2021-03-01", "FRANCE", (ShipmentLine(1, 1, "AIR"),))
            [answer] = HttpCarrier(base_url=url, timeout_seconds=120).create_shipments([request])
            assert answer.status == "shipped"
            trickler.join(timeout=120)
        finally:
            stop.set()
            trickler.join()
            for sock in idle + slow:
                sock.close()
        assert len(cut) == len(idle) + len(slow)
        # The server closed each connection for its deadline, without an answer.
        assert not b"".join(answered)
        timed_out = [r for r in caplog.records if "Request timed out" in r.getMessage()]
        assert len(timed_out) == len(idle) + len(slow)
        # At most `workers` connections were being served at once: besides them, only the
        # trickler and, for an instant, a worker thread ending as the next one starts.
        assert threads_most[0] <= workers + 2
