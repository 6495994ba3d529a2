"""The carrier over HTTP JSON: the client of `orderflow-sim carrier` or a real deployment of its API.

Requests go out in batches, one POST each, and the answers are concatenated in request order. The
carrier is idempotent by order key, so a batch whose answer was lost (a timeout, a 503) is safe to
send again: transient failures raise `SystemUnavailable` for the asset's RetryPolicy, refusals of
the request itself (a 4xx but 408 and 429, a redirect) raise `SystemRefused` with the server's
message, since no retry can fix them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from foundation.batches import chunks
from resources.carrier import CarrierResource
from resources.faults import SystemRefused, SystemUnavailable
from simulator.carrier import SYSTEM, Shipment, ShipmentRequest, request_to_json, shipment_from_json

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import requests

TOKEN_ENV = "ORDERFLOW_CARRIER_TOKEN"
FIX_URL = "check the carrier resource's base_url and that client and server versions match"
FIX_TOKEN = f"check {TOKEN_ENV}, the bearer token the carrier server was started with"
FIX_REQUEST = "the request itself is wrong: fix the data it names (no retry can help)"
FIXES = {
    401: FIX_TOKEN,
    403: FIX_TOKEN,
    404: FIX_URL,
    405: FIX_URL,
    413: "lower the carrier resource's batch_size",
}


class HttpCarrier(CarrierResource):
    """The carrier's HTTP JSON API, e.g. `orderflow-sim carrier --port 8041`."""

    base_url: str
    """Root of the API, e.g. http://127.0.0.1:8041 (routes live under /v1)."""
    token: str | None = None
    """Bearer token; set it with dg.EnvVar("ORDERFLOW_CARRIER_TOKEN") so it stays out of config."""
    timeout_seconds: float = 30.0
    """Per HTTP request (connect, then each read); a timeout is transient."""
    batch_size: int = 5000
    """Shipment requests per POST."""

    def create_shipments(self, requests: Sequence[ShipmentRequest]) -> list[Shipment]:
        """Ship each order (or return the first answer for one asked before), in request order."""
        if self.batch_size < 1:
            raise SystemRefused(f"{SYSTEM}: batch_size must be at least 1, not {self.batch_size}")
        shipments: list[Shipment] = []
        with self._session() as session:
            for batch in chunks(requests, self.batch_size):
                answer = self._call(
                    session,
                    "POST",
                    "/v1/shipments",
                    json={"shipments": [request_to_json(r) for r in batch]},
                )
                try:
                    got = [shipment_from_json(item) for item in answer["shipments"]]
                except (KeyError, TypeError, ValueError) as error:
                    raise self._bad_answer("/v1/shipments", error) from error
                if [s.order_key for s in got] != [r.order_key for r in batch]:
                    raise self._bad_answer(
                        "/v1/shipments",
                        f"{len(got)} answers do not match the {len(batch)} requests",
                    )
                shipments.extend(got)
        return shipments

    def shipments_by_day(self, start: str, end: str) -> dict[str, dict[str, int]]:
        """Per order day in [start, end): shipments by status, for reconciliation."""
        with self._session() as session:
            answer = self._call(
                session, "GET", "/v1/shipments/summary", params={"start": start, "end": end}
            )
        try:
            return {
                str(day): {str(status): int(count) for status, count in counts.items()}
                for day, counts in answer["days"].items()
            }
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise self._bad_answer("/v1/shipments/summary", error) from error

    def _session(self) -> requests.Session:
        import requests

        session = requests.Session()
        # Proxies, .netrc credentials and CA bundles from the environment still apply; only our
        # own token is added here, in a header, so it never appears in a URL or a log line.
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def _call(self, session: requests.Session, method: str, path: str, **kwargs) -> dict:
        import requests

        url = self._url(path)
        try:
            # No redirects: a POST silently turned into a GET elsewhere would ship nothing.
            response = session.request(
                method, url, timeout=self.timeout_seconds, allow_redirects=False, **kwargs
            )
        except requests.RequestException as error:
            # A timed-out POST may have shipped; the retry gets the same answers (idempotent).
            raise SystemUnavailable(
                f"{SYSTEM} unreachable at {url}: {type(error).__name__}"
            ) from error
        status = response.status_code
        # 408 and 429 are the server's "not now": transient like a 5xx. Any other 4xx is the
        # server's verdict on this request, which a retry would only repeat.
        if status >= 500 or status in (408, 429):
            raise SystemUnavailable(
                f"{SYSTEM} at {url} answered HTTP {status}: {_error_text(response)}"
            )
        if status >= 300:
            raise SystemRefused(
                f"{SYSTEM} at {url} answered HTTP {status} ({_error_text(response)}): "
                f"{FIXES.get(status, FIX_URL if status < 400 else FIX_REQUEST)}"
            )
        try:
            return response.json()
        except ValueError as error:
            raise self._bad_answer(path, error) from error

    def _bad_answer(self, path: str, detail: object) -> SystemRefused:
        # Not transient: a server that answers 200 with something else will do so again.
        return SystemRefused(
            f"{SYSTEM} at {self._url(path)} sent an answer that is not the carrier API's "
            f"({detail}): check the carrier resource's base_url"
        )


def _error_text(response: requests.Response) -> str:
    try:
        message = response.json().get("error")
    except (ValueError, AttributeError):
        message = None
    # Bounded: an HTML error page from a proxy would otherwise flood the run's logs.
    return str(message or response.text or response.reason)[:300]
