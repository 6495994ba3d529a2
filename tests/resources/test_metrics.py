"""The Pushgateway resource against Debian's Pushgateway on loopback: a push replaces its group."""

from __future__ import annotations

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from deploy.dagster_dev import free_port
from foundation.settings import PUSHGATEWAY_URL_ENV
from resources.metrics import MAX_SAMPLES, MetricsUnavailable, PushgatewayResource
from tests.metrics import pushed, value


def gauge(name: str, samples: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, f"{name} for a test.", labels=["day"])
    for day, number in samples.items():
        family.add_metric([day], number)
    return family


def test_a_push_replaces_its_group_and_leaves_the_others(pushgateway):
    metrics = PushgatewayResource(url=pushgateway)
    runs = CounterMetricFamily("orderflow_test_runs", "Runs.", labels=["status"])
    runs.add_metric(["failure"], 2)
    metrics.push("order_to_cash_job", [gauge("orderflow_test_a", {"2021-01-05": 1}), runs])
    metrics.push("orderflow", [gauge("orderflow_test_a", {"2021-01-05": 7})], {"asset": "x/y"})
    first = pushed(pushgateway)
    assert value(first, "orderflow_test_runs_total", job="order_to_cash_job", status="failure") == 2
    assert value(first, "orderflow_test_a", job="orderflow", asset="x/y") == 7

    # The same push again changes nothing; a new one replaces the whole group, day label included.
    metrics.push("order_to_cash_job", [gauge("orderflow_test_a", {"2021-01-05": 1}), runs])
    assert pushed(pushgateway) == first
    metrics.push("order_to_cash_job", [gauge("orderflow_test_a", {"2021-01-06": 3})])
    after = pushed(pushgateway)
    job = {k: v for k, v in after.items() if ("job", "order_to_cash_job") in k[1]}
    assert job == {
        (
            "orderflow_test_a",
            frozenset({("job", "order_to_cash_job"), ("day", "2021-01-06"), ("instance", "")}),
        ): 3
    }
    assert value(after, "orderflow_test_a", job="orderflow", asset="x/y") == 7


def test_without_a_url_metrics_are_off(monkeypatch):
    monkeypatch.delenv(PUSHGATEWAY_URL_ENV, raising=False)
    assert not PushgatewayResource().enabled
    monkeypatch.setenv(PUSHGATEWAY_URL_ENV, "http://127.0.0.1:9091/")
    assert PushgatewayResource().enabled
    assert PushgatewayResource().address == "http://127.0.0.1:9091"
    # Configuration wins over the environment.
    assert PushgatewayResource(url="http://metrics.lan:9091").address == "http://metrics.lan:9091"


def test_an_unreachable_pushgateway_fails_naming_it_and_the_fix():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        MetricsUnavailable, match=rf"Pushgateway at {url}.*(refused|Errno).*METRICS=1"
    ):
        PushgatewayResource(url=url).push(
            "order_to_cash_job", [gauge("orderflow_test_a", {"d": 1})]
        )


def test_a_push_is_bounded(pushgateway):
    days = {f"day{n}": n for n in range(MAX_SAMPLES + 1)}
    with pytest.raises(ValueError, match=rf"{MAX_SAMPLES + 1} samples.*at most {MAX_SAMPLES}"):
        PushgatewayResource(url=pushgateway).push("orderflow", [gauge("orderflow_test_a", days)])
    assert pushed(pushgateway) == {}


def test_a_url_carrying_credentials_is_refused_without_showing_them():
    metrics = PushgatewayResource(url="http://ops:s3cret-pw@127.0.0.1:9091")
    with pytest.raises(ValueError, match=r"credentials") as refused:
        metrics.push("orderflow", [gauge("orderflow_test_a", {"d": 1})])
    assert "s3cret-pw" not in str(refused.value)
