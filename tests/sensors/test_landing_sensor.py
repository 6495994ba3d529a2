"""The landing-zone sensor over real landing dirs: one request per day and file version, bounded ticks."""

import gzip
import os
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import dagster as dg
import pytest

from foundation.jobs import order_to_cash_job
from orchestration_defs.definitions import defs
from sensors.landing import (
    FIRST_TICK_ENV,
    MAX_DAYS_PER_TICK,
    RECENT_DAYS,
    LandingCursor,
    TickPlan,
    landing_zone_sensor,
    plan_tick,
)
from tests.helpers import resources_for
from tests.sensors.landing_zone import drop, order_system, requested, tick

pytestmark = pytest.mark.usefixtures("first_tick_requests_everything")

OLD_DAYS = ["2026-08-03", "2026-08-04", "2026-08-05"]
DAY_AGO_NS = 86_400 * 10**9


def age(landing: Path, *days: str) -> None:
    """Make day directories look like old history: last modified a day ago, a second apart."""
    past = time.time_ns() - DAY_AGO_NS
    for offset, day in enumerate(days):
        moment = past + offset * 10**9
        os.utime(landing / "orders" / day, ns=(moment, moment))


def seen(result: dg.SensorResult) -> LandingCursor:
    return LandingCursor.from_json(result.cursor)


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def test_sensor_definition():
    assert landing_zone_sensor.name == "landing_zone_sensor"
    assert landing_zone_sensor.job_name == order_to_cash_job.name
    assert landing_zone_sensor.minimum_interval_seconds == 30
    assert landing_zone_sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert landing_zone_sensor.required_resource_keys == {"order_system"}
    assert landing_zone_sensor.description


def test_first_tick_requests_every_day_once_then_nothing(landing, instance):
    for day in OLD_DAYS:
        drop(landing, day, "batch-001.jsonl.gz")
        drop(landing, day, "batch-002.jsonl")
    first = tick(landing, instance)
    assert requested(first) == OLD_DAYS
    keys = [r.run_key for r in first.run_requests]
    assert len(set(keys)) == 3
    assert all(key.startswith(f"{day}:") for key, day in zip(keys, OLD_DAYS, strict=True))
    assert all(r.tags["orderflow/landing_files"] == "2" for r in first.run_requests)
    assert first.skip_reason is None
    assert all(seen(first).knows(day) for day in OLD_DAYS)

    second = tick(landing, instance, first.cursor)
    assert second.run_requests == []
    assert second.skip_reason is not None
    assert "No new or replaced batch files" in second.skip_reason.skip_message

    third = tick(landing, instance, second.cursor)
    assert third.run_requests == [] and third.skip_reason is not None


def test_new_file_in_an_old_day_requests_that_day_again(landing, instance):
    for day in OLD_DAYS:
        drop(landing, day, "batch-001.jsonl.gz")
    age(landing, *OLD_DAYS)
    first = tick(landing, instance)
    settled = tick(landing, instance, first.cursor)
    # Settled directories are not rescanned: their mtimes are in the cursor.
    assert settled.run_requests == []
    assert seen(settled).detail == seen(first).detail
    assert seen(settled).spans == seen(first).spans

    drop(landing, OLD_DAYS[0], "batch-002.jsonl.gz")
    late = tick(landing, instance, settled.cursor)
    assert requested(late) == [OLD_DAYS[0]]
    assert late.run_requests[0].run_key != first.run_requests[0].run_key
    assert late.run_requests[0].tags["orderflow/landing_files"] == "2"
    assert tick(landing, instance, late.cursor).run_requests == []


def test_old_days_fold_into_a_small_cursor(landing, instance):
    """Old days are folded under the watermark; touched, one gets its old run_key (not re-run)."""
    days = [(date(2026, 8, 3) + timedelta(days=i)).isoformat() for i in range(30)]
    for day in days:
        drop(landing, day, "batch-001.jsonl.gz")
    age(landing, *days)
    first = tick(landing, instance)
    assert requested(first) == days
    drop(landing, yesterday().isoformat(), "batch-001.jsonl.gz")  # a newer change: days settle
    second = tick(landing, instance, first.cursor)
    assert requested(second) == [yesterday().isoformat()]
    cursor = seen(second)
    assert set(cursor.detail) == {yesterday().isoformat()}
    assert all(cursor.knows(day) for day in days)
    assert len(second.cursor) < 200

    os.utime(landing / "orders" / days[5])  # touched, no new file version
    touched = tick(landing, instance, second.cursor)
    assert [r.run_key for r in touched.run_requests] == [first.run_requests[5].run_key]
    assert tick(landing, instance, touched.cursor).run_requests == []


def test_days_landed_together_fold_at_the_next_tick(landing):
    """Days written within the mtime settle window of each other fold once a later tick comes."""
    days = [(date(2026, 8, 3) + timedelta(days=i)).isoformat() for i in range(50)]
    for day in days:
        drop(landing, day, "batch-001.jsonl.gz")
    now = datetime.now(UTC) + timedelta(seconds=5)
    first = plan_tick(landing / "orders", None, now)
    assert [r.day for r in first.requests] == days
    assert set(LandingCursor.from_json(first.cursor).detail) == set(days)
    later = plan_tick(landing / "orders", first.cursor, now + timedelta(seconds=30))
    assert later.requests == [] and later.scanned == 0
    assert LandingCursor.from_json(later.cursor).detail == {}
    assert len(later.cursor) < 200


def test_replaced_file_requests_its_day_again(landing, instance):
    path = drop(landing, OLD_DAYS[1], "batch-001.jsonl.gz")
    first = tick(landing, instance)
    before = path.stat()
    drop(landing, OLD_DAYS[1], "batch-001.jsonl.gz", b'{"o_orderkey":1}\n{"o_orderkey":2}\n')
    assert path.stat().st_size != before.st_size
    resent = tick(landing, instance, first.cursor)
    assert requested(resent) == [OLD_DAYS[1]]
    assert resent.run_requests[0].run_key != first.run_requests[0].run_key
    assert tick(landing, instance, resent.cursor).run_requests == []


def test_rewrite_in_place_is_caught_in_the_recent_days(landing, instance):
    recent = yesterday().isoformat()
    path = drop(landing, recent, "batch-001.jsonl.gz")
    age(landing, recent)
    first = tick(landing, instance)
    assert requested(first) == [recent]
    dir_mtime = (landing / "orders" / recent).stat().st_mtime_ns
    path.write_bytes(gzip.compress(b'{"o_orderkey":7}\n{"o_orderkey":8}\n', mtime=0))
    assert (landing / "orders" / recent).stat().st_mtime_ns == dir_mtime
    rewritten = tick(landing, instance, first.cursor)
    assert requested(rewritten) == [recent]


def test_temporary_and_foreign_files_are_ignored(landing, instance):
    drop(landing, OLD_DAYS[0], "batch-001.jsonl.gz")
    first = tick(landing, instance)
    directory = landing / "orders" / OLD_DAYS[0]
    (directory / ".batch-002.jsonl.gz.4242.tmp").write_bytes(b"half a file")
    (directory / "batch-002.jsonl.gz.part").write_bytes(b"half a file")
    (directory / "README.txt").write_text("not a batch")
    (directory / "batch-009.jsonl.gz").mkdir()
    ignored = tick(landing, instance, first.cursor)
    assert ignored.run_requests == [] and ignored.skip_reason is not None

    (directory / ".batch-002.jsonl.gz.4242.tmp").replace(directory / "batch-002.jsonl.gz")
    landed = tick(landing, instance, ignored.cursor)
    assert requested(landed) == [OLD_DAYS[0]]
    assert landed.run_requests[0].tags["orderflow/landing_files"] == "2"


def test_directories_outside_the_partitions_are_skipped(landing, instance):
    today = datetime.now(UTC).date()
    for name in ["not-a-day", "20260803", "2026-8-3", "2019-12-31", ".2026-08-03.tmp"]:
        drop(landing, name, "batch-001.jsonl.gz")
    drop(landing, (today + timedelta(days=2)).isoformat(), "batch-001.jsonl.gz")
    (landing / "orders" / "stray-file.jsonl.gz").write_bytes(b"")
    drop(landing, OLD_DAYS[0], "batch-001.jsonl.gz")
    result = tick(landing, instance)
    assert requested(result) == [OLD_DAYS[0]]
    cursor = seen(result)
    assert cursor.knows(OLD_DAYS[0]) and len(cursor.spans) == 1
    assert cursor.spans[0][0] == cursor.spans[0][1]


def test_todays_files_run_as_they_land_and_tomorrow_waits(landing):
    """Today's partition is open (end_offset=1): its batches run as they land, once each."""
    today = date(2026, 11, 25)
    noon = datetime.combine(today, clock(12), tzinfo=UTC)
    after_midnight = datetime.combine(today + timedelta(days=1), clock(0, 1), tzinfo=UTC)
    drop(landing, today.isoformat(), "batch-001.jsonl.gz")
    drop(landing, "2026-11-24", "batch-001.jsonl.gz")
    drop(landing, "2026-11-26", "batch-001.jsonl.gz")  # clock skew upstream: not a day yet
    during = plan_tick(landing / "orders", None, noon)
    assert [r.day for r in during.requests] == ["2026-11-24", today.isoformat()]
    assert during.skipped == ["2026-11-26"]
    drop(landing, today.isoformat(), "batch-002.jsonl.gz")
    later = plan_tick(landing / "orders", during.cursor, noon + timedelta(hours=6))
    assert [(r.day, r.files) for r in later.requests] == [(today.isoformat(), 2)]
    assert plan_tick(landing / "orders", later.cursor, noon + timedelta(hours=7)).requests == []
    # After midnight the new day's files run; yesterday's unchanged files do not run again.
    closed = plan_tick(landing / "orders", later.cursor, after_midnight)
    assert [r.day for r in closed.requests] == ["2026-11-26"]


def test_backlog_is_spread_over_ticks_oldest_first(landing):
    days = [(date(2026, 8, 3) + timedelta(days=i)).isoformat() for i in range(25)]
    for day in days:
        drop(landing, day, "batch-001.jsonl.gz")
    age(landing, *days)
    now = datetime.now(UTC)
    cursor, days_requested, pendings = None, [], []
    for _ in range(5):
        plan = plan_tick(landing / "orders", cursor, now, max_days=10)
        days_requested += [r.day for r in plan.requests]
        pendings.append(plan.pending)
        cursor = plan.cursor
    assert days_requested == days  # oldest first, each day once
    assert pendings == [15, 5, 0, 0, 0]


def test_unreadable_cursor_starts_over(landing, instance):
    drop(landing, OLD_DAYS[0], "batch-001.jsonl.gz")
    first = tick(landing, instance)
    valid = '{"v":1,"w":0,"m":0,"t":0,"k":[],"d":{}}'
    assert tick(landing, instance, valid).run_requests  # a valid empty cursor knows nothing
    for cursor in [
        "not json",
        "[1,2]",
        valid.replace('"v":1', '"v":99'),
        valid.replace('"w":0', '"w":"x"'),
        valid.replace('"m":0,', ""),
        valid.replace('"k":[]', '"k":["2026-13-01"]'),
        valid.replace('"k":[]', '"k":["2026-08-05/2026-08-03"]'),
        valid.replace('"d":{}', '"d":{"2026-08-03":5}'),
    ]:
        again = tick(landing, instance, cursor)
        # The same files give the same run_key, which Dagster does not launch twice.
        assert [r.run_key for r in again.run_requests] == [first.run_requests[0].run_key]


def test_missing_landing_zone_is_a_skip(tmp_path, instance):
    result = tick(tmp_path / "nowhere", instance)
    assert result.run_requests == [] and result.skip_reason is not None


def test_evaluated_with_the_real_definitions_like_the_daemon(tmp_path, landing, instance):
    """With the project's assets, job and resources: partition keys are validated on the way."""
    today = datetime.now(UTC).date()
    tomorrow = (today + timedelta(days=1)).isoformat()
    drop(landing, OLD_DAYS[0], "batch-001.jsonl.gz")
    drop(landing, today.isoformat(), "batch-001.jsonl.gz")
    drop(landing, tomorrow, "batch-001.jsonl.gz")  # no partition yet: requesting it fails a tick
    resources = {**resources_for(tmp_path / "data"), "order_system": order_system(landing)}
    wired = dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        sensors=[
            *[s for s in defs.sensors or [] if s.name != landing_zone_sensor.name],
            landing_zone_sensor,
        ],
        resources=resources,
        executor=defs.executor,
    )
    sensor = wired.get_repository_def().get_sensor_def("landing_zone_sensor")
    context = dg.build_sensor_context(instance=instance, definitions=wired, resources=resources)
    data = sensor.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == [OLD_DAYS[0], today.isoformat()]
    assert data.run_requests[0].tags["dagster/partition"] == OLD_DAYS[0]
    assert data.cursor is not None


def test_twenty_thousand_files(landing, instance, monkeypatch):
    """2,000 days x 10 files: bounded ticks drain the backlog, then a tick rescans only what moved."""
    days = [(date(2020, 1, 1) + timedelta(days=i)).isoformat() for i in range(2000)]
    started = time.perf_counter()
    body = gzip.compress(b'{"o_orderkey":1}\n', mtime=0)
    for day in days:
        directory = landing / "orders" / day
        directory.mkdir()
        for n in range(1, 11):
            (directory / f"batch-{n:03d}.jsonl.gz").write_bytes(body)
    age(landing, *days)
    created = time.perf_counter() - started
    # Every day is long closed and older than the latest RECENT_DAYS: no tick rescans a day
    # because it is recent, so the work per tick is the days that are new or moved.
    assert days[-1] < (yesterday() - timedelta(days=RECENT_DAYS)).isoformat()
    plans: list[TickPlan] = []

    def recorded(*args, **kwargs) -> TickPlan:
        plans.append(plan_tick(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr("sensors.landing.plan_tick", recorded)

    timings, sizes, counts, cursor = [], [], Counter(), None
    while True:
        started = time.perf_counter()
        result = tick(landing, instance, cursor)
        timings.append(time.perf_counter() - started)
        counts.update(requested(result))
        assert len(result.run_requests) <= MAX_DAYS_PER_TICK
        cursor = result.cursor
        sizes.append(len(cursor))
        if not result.run_requests:
            break
    assert len(plans) == 2000 // MAX_DAYS_PER_TICK + 1
    assert counts == Counter(days)  # every day exactly once
    # Each tick lists the days once and reads at most MAX_DAYS_PER_TICK of them, each day once in
    # all; the tick that finds nothing new reads none.
    assert all(plan.listed == len(days) for plan in plans)
    assert [plan.scanned for plan in plans] == [MAX_DAYS_PER_TICK] * 10 + [0]
    assert max(sizes) < 200 * len(days)
    assert len(cursor) < 2_000

    started = time.perf_counter()
    drop(landing, days[100], "batch-011.jsonl.gz")
    late = tick(landing, instance, cursor)
    incremental = time.perf_counter() - started
    assert requested(late) == [days[100]]
    assert plans[-1].scanned == 1  # the one day whose directory moved

    started = time.perf_counter()
    whole = plan_tick(landing / "orders", None, datetime.now(UTC), max_days=10**6)
    full_scan = time.perf_counter() - started
    assert len(whole.requests) == 2000 and whole.scanned == 2000

    print(
        f"\n20,000 files: created in {created:.2f} s; first tick (200 days) {timings[0]:.3f} s; "
        f"ticks to drain {len(timings)} ({sum(timings):.2f} s in all, slowest {max(timings):.3f} s); "
        f"no-change tick {timings[-1]:.3f} s; late file tick {incremental:.3f} s; "
        f"unbounded full scan {full_scan:.3f} s; cursor at most {max(sizes)} bytes, "
        f"{len(cursor)} once drained; recent days rescanned {RECENT_DAYS}"
    )


def test_by_default_the_first_tick_takes_stock_and_requests_only_recent_days(
    landing, instance, monkeypatch
):
    monkeypatch.delenv(FIRST_TICK_ENV)
    recent = yesterday().isoformat()
    for day in (*OLD_DAYS, recent):
        drop(landing, day, "batch-001.jsonl.gz")
    first = tick(landing, instance)
    assert requested(first) == [recent]
    assert all(seen(first).knows(day) for day in OLD_DAYS)
    # A late file for an old day afterwards is requested as usual.
    drop(landing, OLD_DAYS[0], "batch-002.jsonl.gz")
    assert requested(tick(landing, instance, first.cursor)) == [OLD_DAYS[0]]
