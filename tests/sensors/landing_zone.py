"""Helpers for the landing-zone sensor's tests: land batches as the order system does, tick.

Their fixtures (`instance`, `landing`, `first_tick_requests_everything`) are in conftest.py.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import dagster as dg

from resources.order_system import LandingZoneOrderSystem
from sensors.landing import landing_zone_sensor


def drop(
    landing: Path,
    day: str,
    name: str = "batch-001.jsonl.gz",
    body: bytes = b'{"o_orderkey":1}\n',
) -> Path:
    """Land a batch as the order system does: a hidden temporary name, then a rename."""
    directory = landing / "orders" / day
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{name}.tmp"
    temp.write_bytes(gzip.compress(body, mtime=0))
    return temp.replace(directory / name)


def order_system(landing: Path) -> LandingZoneOrderSystem:
    return LandingZoneOrderSystem(landing_dir=str(landing))


def tick(landing: Path, instance, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor, resources={"order_system": order_system(landing)}, instance=instance
    )
    result = landing_zone_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def requested(result: dg.SensorResult) -> list[str]:
    return [request.partition_key for request in result.run_requests or []]
