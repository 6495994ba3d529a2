"""The carrier's HTTP JSON API, served from a `CarrierBook` with the standard library only.

`POST /v1/shipments` ships a batch, `GET /v1/shipments/summary?start=&end=` counts shipments per
order day and status, `GET /health` answers when the server is up. A transient fault of the book
(an injected outage, a locked database) is a 503, so clients retry; a malformed request is a 400,
which no retry can fix. With a token, every route but /health wants `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import json
import logging
import signal
import threading
from collections.abc import Callable
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from resources.carrier import (
    CarrierBook,
    ShipmentRequest,
    request_from_json,
    shipment_to_json,
)
from resources.faults import FaultInjection, SystemUnavailable

logger = logging.getLogger(__name__)

# A full batch of 5000 orders is a few MB; anything far larger is a mistake, not a batch.
MAX_BODY_BYTES = 64 * 1024 * 1024


class BadRequest(Exception):
    """The request cannot be served as sent (answered 400 with this message)."""


def _iso_day(value: object, field: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError as error:
        raise BadRequest(f"{field} is not a date (YYYY-MM-DD): {value!r}") from error


def parse_requests(body: dict) -> list[ShipmentRequest]:
    """The shipment requests of a `POST /v1/shipments` body, checked field by field."""
    items = body.get("shipments") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BadRequest('body must be a JSON object {"shipments": [...]}')
    parsed = []
    for index, item in enumerate(items):
        try:
            request = request_from_json(item)
        except (KeyError, TypeError, ValueError) as error:
            raise BadRequest(f"shipments[{index}] is malformed: {error!r}") from error
        # request_from_json does not check the lines' types; the book's SQL and date maths would.
        for line in request.lines:
            if not (
                type(line.line_number) is int
                and type(line.quantity) is int
                and isinstance(line.ship_mode, str)
                and isinstance(line.ship_date, str | None)
                and isinstance(line.delivery_date, str | None)
            ):
                raise BadRequest(
                    f"shipments[{index}] has a malformed line (want integer line_number and "
                    f"quantity and a ship_mode string): {line}"
                )
        if len({line.line_number for line in request.lines}) != len(request.lines):
            raise BadRequest(f"shipments[{index}] repeats a line number")
        _iso_day(request.order_day, f"shipments[{index}].order_day")
        parsed.append(request)
    return parsed


class CarrierServer(ThreadingHTTPServer):
    """A threading HTTP server holding the carrier's book and the optional bearer token."""

    # Finish in-flight requests on close: a killed thread would leave its caller guessing.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], book: CarrierBook, token: str | None):
        super().__init__(address, CarrierHandler)
        self.book = book
        self.token = token


class CarrierHandler(BaseHTTPRequestHandler):
    """Routes one request to the book and answers JSON."""

    server: CarrierServer
    server_version = "orderflow-carrier/1"
    # A client that stops sending mid-request must not hold a thread (and shutdown) forever.
    timeout = 60

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
            status, answer = HTTPStatus.BAD_REQUEST, {"error": str(error)}
        except SystemUnavailable as error:
            status, answer = HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(error)}
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

    def _json_body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError as error:
            raise BadRequest("a Content-Length header is required") from error
        if not 0 <= length <= MAX_BODY_BYTES:
            raise BadRequest(f"body must be 0..{MAX_BODY_BYTES} bytes, not {length}")
        try:
            return json.loads(self.rfile.read(length))
        except ValueError as error:
            raise BadRequest(f"body is not JSON: {error}") from error

    def _send(self, status: HTTPStatus, answer: dict, headers: dict[str, str] | None = None):
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(
    host: str, port: int, url: str, faults: FaultInjection, token: str | None = None
) -> CarrierServer:
    """Bind the carrier's API on host:port (0 picks a free port) and serve it in a thread.

    Stop it with `server.shutdown()` then `server.server_close()`.
    """
    server = CarrierServer((host, port), CarrierBook(url, faults), token or None)
    threading.Thread(target=server.serve_forever, name="carrier-server", daemon=True).start()
    return server


def run(
    host: str,
    port: int,
    url: str,
    faults: FaultInjection,
    token: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the carrier's API until SIGTERM or SIGINT, then finish in-flight requests and stop."""
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        server = serve(host, port, url, faults, token)
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
