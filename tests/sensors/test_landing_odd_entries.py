"""The landing-zone sensor over odd entries: non-canonical day names, broken links, stray files.

On the instance users run: a temporary DAGSTER_HOME holding the project's dagster.yaml.
"""

import gzip
import shutil
from pathlib import Path

import dagster as dg
import pytest

from resources.order_system import LandingZoneOrderSystem
from sensors.landing import FIRST_TICK_ENV, landing_zone_sensor

PROJECT = Path(__file__).resolve().parents[2]
# 2026-08-03 written otherwise: without separators, as an ISO week date, without zero padding.
NOT_CANONICAL = ["20260803", "2026-W32-1", "2026-8-3", "2026-02-30"]


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture(autouse=True)
def _first_tick_requests_everything(monkeypatch):
    monkeypatch.setenv(FIRST_TICK_ENV, "all")


@pytest.fixture
def landing(tmp_path) -> Path:
    (tmp_path / "landing" / "orders").mkdir(parents=True)
    return tmp_path / "landing"


def drop(landing: Path, day: str, name: str = "batch-001.jsonl.gz") -> Path:
    """Land a batch as the order system does: a hidden temporary name, then a rename."""
    directory = landing / "orders" / day
    directory.mkdir(parents=True, exist_ok=True)
    temp = directory / f".{name}.tmp"
    temp.write_bytes(gzip.compress(b'{"o_orderkey":1}\n', mtime=0))
    return temp.replace(directory / name)


def tick(landing: Path, instance, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"order_system": LandingZoneOrderSystem(landing_dir=str(landing))},
        instance=instance,
    )
    result = landing_zone_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def requested(result: dg.SensorResult) -> list[str]:
    return [request.partition_key for request in result.run_requests or []]


def test_folders_not_named_as_a_day_are_reported_and_never_requested(landing, instance, capfd):
    for name in NOT_CANONICAL:
        drop(landing, name)
    first = tick(landing, instance)
    assert first.run_requests == []
    reason = first.skip_reason.skip_message
    assert all(name in reason for name in NOT_CANONICAL), reason
    assert "YYYY-MM-DD" in reason

    drop(landing, "2026-08-03")
    second = tick(landing, instance, first.cursor)
    assert requested(second) == ["2026-08-03"]
    logs = capfd.readouterr().err
    assert all(name in logs for name in NOT_CANONICAL), logs
    third = tick(landing, instance, second.cursor)
    assert third.run_requests == []


def test_broken_links_and_a_file_named_like_a_day_do_not_crash_the_tick(
    landing, instance, tmp_path, capfd
):
    orders = landing / "orders"
    drop(landing, "2026-08-03")
    (orders / "2026-08-03" / "batch-002.jsonl.gz").symlink_to(tmp_path / "gone.jsonl.gz")
    looping_batch = orders / "2026-08-03" / "batch-003.jsonl.gz"
    looping_batch.symlink_to(looping_batch)
    (orders / "2026-08-04").symlink_to(tmp_path / "unmounted", target_is_directory=True)
    (orders / "2026-08-05").symlink_to(orders / "2026-08-05")
    (orders / "2026-08-06").write_bytes(gzip.compress(b'{"o_orderkey":1}\n'))

    first = tick(landing, instance)
    # The day's good batch is requested: its run fails naming the broken links (staging's rule).
    assert requested(first) == ["2026-08-03"]
    logs = capfd.readouterr().err
    for entry in ("2026-08-03/batch-002.jsonl.gz", "2026-08-03/batch-003.jsonl.gz"):
        assert entry in logs, logs

    second = tick(landing, instance, first.cursor)
    assert second.run_requests == []
    reason = second.skip_reason.skip_message
    assert "2026-08-04 (a symbolic link to" in reason and "which does not exist" in reason
    assert "2026-08-05 (a symbolic link to" in reason and "leads into a loop of links" in reason
    assert "2026-08-06 (a file)" in reason
