"""Prometheus' Pushgateway: where batch work leaves its metrics for Prometheus to scrape.

Each push replaces one group (a job and a grouping key) with the metrics given, as Prometheus'
client does with `push_to_gateway` (HTTP PUT): pushing the same figures again changes nothing,
and a group never accumulates. Without a URL (`$ORDERFLOW_PUSHGATEWAY_URL`) metrics are off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from foundation import settings
from foundation.settings import PUSHGATEWAY_URL_ENV

# Type hints only: the client is imported where it is used (docs/architecture.md).
if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# Samples per push: the project's whole set is a few hundred (its labels come from the code and
# one day per asset); more means a label gone unbounded, which the Pushgateway would keep forever.
MAX_SAMPLES = 2000


class MetricsUnavailable(Exception):
    """The Pushgateway could not be reached or refused a push."""


class _Families:
    """A collector of ready-made metric families, as a push takes them."""

    def __init__(self, families: Sequence[Metric]):
        self.families = families

    def collect(self) -> Sequence[Metric]:
        return self.families


class PushgatewayResource(dg.ConfigurableResource):
    """Prometheus' Pushgateway, which the metrics sensors push to; metrics are off without a URL."""

    url: str = Field(
        default="",
        description=f"The Pushgateway's base URL, e.g. http://127.0.0.1:9091; empty: "
        f"${PUSHGATEWAY_URL_ENV}, and when both are empty metrics are off.",
    )
    timeout_seconds: float = Field(default=10.0, description="How long a push may take.")

    @property
    def address(self) -> str:
        """The configured URL, else the environment's (read when called, as the systems' are)."""
        return self.url.strip().rstrip("/") or settings.pushgateway_url()

    @property
    def enabled(self) -> bool:
        """Whether metrics are on: a Pushgateway is named."""
        return bool(self.address)

    def push(
        self, job: str, families: Sequence[Metric], grouping_key: Mapping[str, str] | None = None
    ) -> None:
        """Replace the group (`job` and `grouping_key`) with `families`, at most MAX_SAMPLES samples."""
        from prometheus_client import CollectorRegistry, push_to_gateway

        if urlsplit(self.address).username is not None:
            raise ValueError(
                "The Pushgateway's URL carries credentials, which would show in logs and errors: "
                f"set {PUSHGATEWAY_URL_ENV} without them (the Pushgateway has no authentication "
                "of its own: reach it over a private network)"
            )
        samples = sum(len(family.samples) for family in families)
        if samples > MAX_SAMPLES:
            raise ValueError(
                f"{samples} samples for job {job}: a push takes at most {MAX_SAMPLES}; "
                "a label is probably unbounded"
            )
        registry = CollectorRegistry(auto_describe=True)
        registry.register(_Families(families))
        try:
            push_to_gateway(
                self.address,
                job=job,
                registry=registry,
                grouping_key=dict(grouping_key or {}),
                timeout=self.timeout_seconds,
            )
        except OSError as error:  # urllib's URLError and HTTPError are OSErrors
            raise MetricsUnavailable(
                f"The Pushgateway at {self.address} did not take the metrics of job {job}: "
                f"{error}. Check that it runs there (`make dev METRICS=1` starts one; "
                f"${PUSHGATEWAY_URL_ENV} names it) — the next push carries the figures again."
            ) from error
