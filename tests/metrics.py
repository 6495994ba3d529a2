"""Prometheus and its Pushgateway for tests: Debian's servers on free loopback ports, and readers.

`running_servers` starts them as `make dev METRICS=1` does (deploy/local_metrics.py), in a
temporary directory of the test's (configuration, Prometheus' storage, logs), scraping every
second; without the binaries the test skips, or fails where ORDERFLOW_REQUIRE_METRICS is set.
`pushed` reads what the Pushgateway holds, `scraped` polls Prometheus' HTTP API for a query.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from deploy.dagster_dev import free_port
from deploy.local_metrics import LocalMetrics, MetricsServersMissing, binaries

# CI installs the servers and sets this, so there a missing one fails rather than skips.
REQUIRE_ENV = "ORDERFLOW_REQUIRE_METRICS"
SCRAPED_TIMEOUT_S = 120  # a scrape a second; the first waits for Prometheus' start and offset

Samples = dict[tuple[str, frozenset], float]


def servers_missing(reason: str) -> NoReturn:
    """Skip the test for want of the servers, or fail it where REQUIRE_ENV demands them."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}. {REQUIRE_ENV} is set, so they are required here.", pytrace=False)
    pytest.skip(reason)


def require_binaries() -> None:
    try:
        binaries()
    except MetricsServersMissing as missing:
        servers_missing(str(missing))


@contextmanager
def running_servers(root: Path, prometheus: bool = True) -> Iterator[LocalMetrics]:
    """The Pushgateway (and Prometheus, scraping it every second) under `root`, then stopped."""
    require_binaries()
    servers = LocalMetrics(
        root,
        pushgateway_port=free_port(),
        prometheus_port=free_port(),
        scrape_interval="1s",
    )
    try:
        servers.start(prometheus=prometheus)
        yield servers
    finally:
        servers.stop()


def pushed(pushgateway_url: str) -> Samples:
    """The Pushgateway's orderflow_* samples: value by (name, labels)."""
    response = requests.get(f"{pushgateway_url}/metrics", timeout=30)
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.startswith("orderflow_")
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = [
        v for (n, have), v in samples.items() if n == name and set(labels.items()) <= set(have)
    ]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples in {sorted(samples)}"
    return found[0]


def labels_of(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets of every sample of `name`."""
    return [dict(have) for (n, have) in samples if n == name]


def query(prometheus_url: str, promql: str) -> list[dict]:
    """The result vector of an instant query through Prometheus' HTTP API."""
    response = requests.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=30)
    body = response.json()
    assert body["status"] == "success", (promql, body)
    return body["data"]["result"]


def scraped(
    prometheus_url: str,
    promql: str,
    until: Callable[[list[dict]], bool] = bool,
    timeout: float = SCRAPED_TIMEOUT_S,
) -> list[dict]:
    """The query's result once `until` holds for it (by default: once it is not empty)."""
    deadline = time.monotonic() + timeout
    while not until(result := query(prometheus_url, promql)):
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus answered {promql} with {result} after {timeout:.0f} s")
        time.sleep(0.5)
    return result
