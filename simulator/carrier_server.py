"""The carrier's HTTP JSON API, served from a `CarrierBook` with the standard library only.

`POST /v1/shipments` ships a batch, `GET /v1/shipments/summary?start=&end=` counts shipments per
order day and status, `GET /health` answers when the server is up. A transient fault of the book
(an outage, a locked database) is a 503, so clients retry; a request that cannot be served as sent
is a 4xx, which no retry can fix. With a token, every route but /health wants
`Authorization: Bearer <token>`.

What one client can take is bounded (`Limits`): at most `max_connections` requests are served at
once, the others wait in the listen backlog; each connection has `request_timeout` seconds to send
its whole request (line, headers, body) and again to take the answer, so a client that sends
nothing, or a byte now and then, holds a worker for that long at most. A body must be declared
`application/json` (else 415) and be at most `max_body_bytes` (else 413). Field bounds (else 400):
order_key an integer 1..2^63-1, order_day a date, destination 1..64 characters, line_number
1..1000 and unique within the shipment, quantity 1..1,000,000, ship_mode 1..16 characters, and
the optional revision 0..1,000,000 (the order's; a later one amends the consignment).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from foundation.failures import SystemRefused, SystemUnavailable
from simulator.carrier import CarrierBook, ShipmentLine, ShipmentRequest, shipment_to_json
from simulator.outages import Faults

logger = logging.getLogger(__name__)

MAX_ORDER_KEY = 2**63 - 1  # the carrier's order keys are 64-bit integers
MAX_DESTINATION = 64  # its destination column; TPC-H nation names have at most 25 characters
MAX_LINE_NUMBER = 1000  # TPC-H orders have at most 7 lines
MAX_QUANTITY = 1_000_000  # TPC-H quantities are 1..50
MAX_SHIP_MODE = 16  # its ship mode column; unknown modes are refused, not rejected
SHIPMENT_FIELDS = {"order_key", "order_day", "destination", "lines"}
MAX_REVISION = 1_000_000
LINE_FIELDS = {"line_number", "quantity", "ship_mode", "ship_date", "delivery_date"}


@dataclass(frozen=True)
class Limits:
    """What one client can take of the server (see the module docstring)."""

    max_connections: int = 32
    request_timeout: float = 30.0
    # A full batch of 5000 orders is about 2 MB; far larger is a mistake, not a batch.
    max_body_bytes: int = 16 * 1024 * 1024


class BadRequest(Exception):
    """The request cannot be served as sent (answered with `status`, 400 by default)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def _shown(value: object) -> str:
    # Enough of a bad value to find it, never a megabyte of it in an answer or a log.
    if isinstance(value, str) and len(value) > 40:
        return f"a string of {len(value)} characters"
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__} {text[:30]}..."


def _integer(value: object, field: str, highest: int) -> int:
    if type(value) is not int or not 1 <= value <= highest:
        raise BadRequest(f"{field} must be an integer 1..{highest}, not {_shown(value)}")
    return value


def _text(value: object, field: str, longest: int) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string, not {_shown(value)}")
    if not 1 <= len(value) <= longest:
        raise BadRequest(f"{field} must be 1..{longest} characters, not {len(value)}")
    return value


def _iso_day(value: object, field: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError as error:
        raise BadRequest(f"{field} is not a date (YYYY-MM-DD): {_shown(value)}") from error


def _fields(item: object, field: str, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(item, dict):
        raise BadRequest(f"{field} must be a JSON object, not {_shown(item)}")
    if missing := required - item.keys():
        raise BadRequest(f"{field} lacks {', '.join(sorted(missing))}")
    if unknown := item.keys() - allowed:
        raise BadRequest(f"{field} has unknown fields {_shown(sorted(unknown))}")
    return item


def _line(item: object, field: str) -> ShipmentLine:
    line = _fields(item, field, LINE_FIELDS, {"line_number", "quantity", "ship_mode"})
    for name in ("ship_date", "delivery_date"):
        if line.get(name) is not None:
            raise BadRequest(f"{field}.{name} is the carrier's to set: send null or leave it out")
    return ShipmentLine(
        _integer(line["line_number"], f"{field}.line_number", MAX_LINE_NUMBER),
        _integer(line["quantity"], f"{field}.quantity", MAX_QUANTITY),
        _text(line["ship_mode"], f"{field}.ship_mode", MAX_SHIP_MODE),
    )


def parse_requests(body: object) -> list[ShipmentRequest]:
    """The shipment requests of a `POST /v1/shipments` body, checked field by field."""
    items = body.get("shipments") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BadRequest('body must be a JSON object {"shipments": [...]}')
    parsed = []
    for index, item in enumerate(items):
        field = f"shipments[{index}]"
        shipment = _fields(item, field, SHIPMENT_FIELDS | {"revision"}, SHIPMENT_FIELDS)
        revision = shipment.get("revision", 0)
        if revision != 0:
            revision = _integer(revision, f"{field}.revision", MAX_REVISION)
        if not isinstance(shipment["lines"], list):
            raise BadRequest(f"{field}.lines must be a list, not {_shown(shipment['lines'])}")
        lines = tuple(
            _line(line, f"{field}.lines[{number}]") for number, line in enumerate(shipment["lines"])
        )
        if len({line.line_number for line in lines}) != len(lines):
            raise BadRequest(f"{field} repeats a line number")
        parsed.append(
            ShipmentRequest(
                _integer(shipment["order_key"], f"{field}.order_key", MAX_ORDER_KEY),
                _iso_day(shipment["order_day"], f"{field}.order_day"),
                _text(shipment["destination"], f"{field}.destination", MAX_DESTINATION),
                lines,
                revision,
            )
        )
    return parsed


class _UntilDeadline(io.RawIOBase):
    """A connection's reading side that fails once the request's deadline has passed."""

    def __init__(self, sock: socket.socket, seconds: float):
        self._sock = sock
        self._deadline = time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not received in time")
        # Per read, the time left: a client sending a byte now and then still meets the deadline.
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class CarrierServer(ThreadingHTTPServer):
    """A threading HTTP server holding the carrier's book, the bearer token and the limits."""

    # Finish in-flight requests on close: a killed thread would leave its caller guessing.
    daemon_threads = False
    block_on_close = True
    # Connections beyond the workers wait here, accepted by the kernel, until a worker is free.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], book: CarrierBook, token: str | None, limits: Limits
    ):
        super().__init__(address, CarrierHandler)
        self.book = book
        self.token = token
        self.limits = limits
        self._workers = threading.BoundedSemaphore(limits.max_connections)

    def process_request(self, request, client_address) -> None:
        """Serve the connection in a thread of its own once fewer than the limit are busy."""
        # Blocks the accept loop while every worker is busy; each is free within the request
        # timeout plus the book's work, so shutdown() waits that long at most.
        self._workers.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._workers.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        """Serve one connection, then free its worker."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._workers.release()


class CarrierHandler(BaseHTTPRequestHandler):
    """Routes one request to the book and answers JSON."""

    server: CarrierServer
    server_version = "orderflow-carrier/1"

    def setup(self) -> None:
        """Give the connection its deadline: the whole request within the request timeout."""
        self.timeout = self.server.limits.request_timeout
        super().setup()
        self.rfile.close()  # the socket stays open; only this reader of it is replaced
        self.rfile = io.BufferedReader(_UntilDeadline(self.connection, self.timeout))

    def do_GET(self) -> None:
        """Answer a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Answer a POST."""
        self._dispatch("POST")

    def log_message(self, format: str, *args) -> None:
        """Log requests at debug level (the request line only, never headers)."""
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        routes = {
            "/health": {"GET": self._health},
            "/v1/shipments": {"POST": self._create_shipments},
            "/v1/shipments/summary": {"GET": self._summary},
        }
        by_method = routes.get(parts.path)
        if by_method is None:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such route: {parts.path}"})
            return
        if parts.path != "/health" and not self._authorized():
            self._send(
                HTTPStatus.UNAUTHORIZED,
                {"error": "missing or wrong bearer token"},
                {"WWW-Authenticate": 'Bearer realm="carrier"'},
            )
            return
        handler = by_method.get(method)
        if handler is None:
            self._send(
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"error": f"{method} not allowed on {parts.path}"},
                {"Allow": ", ".join(by_method)},
            )
            return
        try:
            status, answer = handler(parse_qs(parts.query))
        except BadRequest as error:
            status, answer = error.status, {"error": str(error)}
        except TimeoutError:
            self.close_connection = True
            status = HTTPStatus.REQUEST_TIMEOUT
            answer = {"error": f"request not received within {self.timeout:g} s"}
        except SystemUnavailable as error:
            status, answer = HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(error)}
        except SystemRefused as error:
            status, answer = HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(error)}
        except Exception:
            logger.exception("carrier request failed: %s %s", method, parts.path)
            status, answer = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"}
        self._send(status, answer)

    def _authorized(self) -> bool:
        if self.server.token is None:
            return True
        expected = f"Bearer {self.server.token}".encode()
        given = (self.headers.get("Authorization") or "").encode()
        # Constant time, so the token cannot be guessed byte by byte from response times.
        return hmac.compare_digest(given, expected)

    def _health(self, _query: dict) -> tuple[HTTPStatus, dict]:
        return HTTPStatus.OK, {"status": "ok"}

    def _create_shipments(self, _query: dict) -> tuple[HTTPStatus, dict]:
        requests = parse_requests(self._json_body())
        shipments = self.server.book.create_shipments(requests)
        return HTTPStatus.OK, {"shipments": [shipment_to_json(s) for s in shipments]}

    def _summary(self, query: dict) -> tuple[HTTPStatus, dict]:
        bounds = []
        for name in ("start", "end"):
            values = query.get(name)
            if not values:
                raise BadRequest(f"query parameter {name}=YYYY-MM-DD is required")
            bounds.append(_iso_day(values[0], name))
        return HTTPStatus.OK, {"days": self.server.book.shipments_by_day(*bounds)}

    def _json_body(self) -> object:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError as error:
            raise BadRequest(
                "a Content-Length header is required", HTTPStatus.LENGTH_REQUIRED
            ) from error
        limit = self.server.limits.max_body_bytes
        if length < 0:
            raise BadRequest(f"Content-Length must not be negative, not {length}")
        # Refusals are answered after the body is read (and dropped): a client still sending
        # when the connection closes would see a reset, not the reason.
        if length > limit:
            self._discard(length)
            raise BadRequest(
                f"body of {length} bytes is over the limit of {limit} bytes: send smaller batches",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        body = self.rfile.read(length)
        if self.headers.get_content_type() != "application/json":
            raise BadRequest(
                f"body must be sent as Content-Type: application/json, not "
                f"{_shown(self.headers.get('Content-Type'))}",
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            )
        try:
            return json.loads(body)
        except RecursionError as error:
            raise BadRequest("body is JSON nested too deeply") from error
        except ValueError as error:
            raise BadRequest(f"body is not JSON: {error}") from error

    def _discard(self, length: int) -> None:
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    return
                length -= len(chunk)
        except OSError:  # the deadline (TimeoutError) included: answer what is wrong anyway
            self.close_connection = True

    def _send(self, status: HTTPStatus, answer: dict, headers: dict[str, str] | None = None):
        body = json.dumps(answer).encode()
        # The answer has its own time to be taken: sendall's timeout bounds the whole write.
        self.connection.settimeout(self.timeout)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(
    host: str,
    port: int,
    url: str,
    faults: Faults | None = None,
    token: str | None = None,
    systems_dir: Path | None = None,
    limits: Limits | None = None,
) -> CarrierServer:
    """Bind the carrier's API on host:port (0 picks a free port) and serve it in a thread.

    The carrier's outage state is read from `systems_dir` (default: the pipeline's data dir).
    Stop it with `server.shutdown()` then `server.server_close()`.
    """
    server = CarrierServer(
        (host, port), CarrierBook(url, faults, systems_dir), token or None, limits or Limits()
    )
    threading.Thread(target=server.serve_forever, name="carrier-server", daemon=True).start()
    return server


def run(
    host: str,
    port: int,
    url: str,
    faults: Faults,
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    systems_dir: Path | None = None,
    limits: Limits | None = None,
) -> None:
    """Serve the carrier's API until SIGTERM or SIGINT, then finish in-flight requests and stop."""
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        server = serve(host, port, url, faults, token, systems_dir, limits)
        try:
            bound_host, bound_port = server.server_address[:2]
            if on_ready is not None:
                on_ready(f"http://{bound_host}:{bound_port}")
            # Wake up now and then: the signal handler runs in this thread between waits.
            while not stop.wait(0.5):
                pass
        finally:
            server.shutdown()
            server.server_close()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
