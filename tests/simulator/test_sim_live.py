import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sim_helpers import iter_records, parse, read_lines, total_cents

from foundation.layout import day_dir
from simulator.cli import main
from simulator.days import first_orderkey, simulate_day
from simulator.errors import SimulatorError
from simulator.live import LandedKeys, land_live_batch, run_live
from simulator.store import load_store
from tests.helpers import load_catalog, query, stage

LIVE_TIMEOUT_S = 120


def orderflow_sim() -> list[str]:
    """The installed console script, as a user runs it (else the module)."""
    script = Path(sys.executable).with_name("orderflow-sim")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "simulator.cli"]


def with_recent_days(data: Path) -> Path:
    """Land yesterday and today as `orderflow-sim day --batches 2` does: batch-001 and -002."""
    today = datetime.now(UTC).date()
    simulate_day(data, today - timedelta(days=1), batches=2)
    simulate_day(data, today, batches=2)
    return data


@pytest.fixture
def live_store(sim_store, tmp_path) -> Path:
    """A private copy of the whole generated store, with yesterday and today simulated."""
    data = tmp_path / "data"
    shutil.copytree(sim_store, data, symlinks=True)
    return with_recent_days(data)


@pytest.fixture
def recent_store(day_store) -> Path:
    """Only the store description and catalog, with yesterday and today simulated."""
    return with_recent_days(day_store)


def test_live_lands_new_batches_for_today_that_stage_cleanly(live_store):
    today = datetime.now(UTC).date()
    directory = day_dir(live_store, today)
    before = sorted(p.name for p in directory.iterdir())
    assert before == ["batch-001.jsonl.gz", "batch-002.jsonl.gz"]

    command = ["live", "--interval", "0", "--until-count", "2", "--data-dir", str(live_store)]
    done = subprocess.run(
        [*orderflow_sim(), *command],
        capture_output=True,
        text=True,
        timeout=LIVE_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert len(printed) == 2
    assert printed[0].startswith(f"{today}: batch-003.jsonl.gz with ")
    assert printed[1].startswith(f"{today}: batch-004.jsonl.gz with ")
    # Atomic writes: the final names only, no temporary file left behind.
    assert sorted(p.name for p in directory.iterdir()) == [
        *before,
        "batch-003.jsonl.gz",
        "batch-004.jsonl.gz",
    ]

    new = [
        parse(r)
        for name in ("003", "004")
        for r in read_lines(directory / f"batch-{name}.jsonl.gz")
    ]
    assert new
    info = load_store(live_store)
    for order in new:
        assert order["o_orderdate"] == today.isoformat()
        assert 0 < order["o_custkey"] <= info.customer_count and order["o_custkey"] % 3
        assert all(0 < line["l_partkey"] <= info.part_count for line in order["lines"])
        assert total_cents(order) == int(order["o_totalprice"] * 100)
    new_keys = {order["o_orderkey"] for order in new}
    keys = Counter(parse(raw)["o_orderkey"] for _day, _file, _line, raw in iter_records(live_store))
    assert all(keys[key] == 1 for key in new_keys)  # unique in the whole store
    assert sum(keys.values()) == len(keys)

    data = live_store
    assert load_catalog(data).success
    # Today's partition exists once the day is over: stage it as the first run after midnight will.
    with dg.partition_loading_context(
        effective_dt=datetime.combine(today + timedelta(days=1), time(0, 5), tzinfo=UTC)
    ):
        assert stage(data, today.isoformat()).success
    day = [today.isoformat()]
    assert query(data, "select count(*) from staging.order_rejects where batch_day = ?", day) == [
        (0,)
    ]
    landed = sum(len(read_lines(p)) for p in sorted(directory.iterdir()))
    assert query(data, "select count(*) from staging.orders where o_orderdate = ?", day) == [
        (landed,)
    ]


def test_live_continues_the_days_keys_and_numbers(recent_store):
    info = load_store(recent_store)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    earlier = [
        parse(r) for p in sorted(day_dir(recent_store, yesterday).iterdir()) for r in read_lines(p)
    ]
    keys = LandedKeys()
    first = land_live_batch(recent_store, info, yesterday, keys=keys)
    second = land_live_batch(recent_store, info, yesterday, keys=keys)
    assert first.path.name == "batch-003.jsonl.gz" and second.path.name == "batch-004.jsonl.gz"
    assert first.first_key == max(o["o_orderkey"] for o in earlier) + 1
    assert second.first_key == first.last_key + 1
    # A fresh process reads the landed batches and carries on from them.
    third = land_live_batch(recent_store, info, yesterday)
    assert third.first_key == second.last_key + 1


def test_live_stops_cleanly_on_sigterm(recent_store):
    process = subprocess.Popen(
        [*orderflow_sim(), "live", "--interval", "60", "--data-dir", str(recent_store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        assert " batch-003.jsonl.gz with " in first_line, first_line or process.stderr.read()
        process.send_signal(signal.SIGTERM)
        # It finishes the batch it is writing first, fsync included: on a disk busy with
        # writeback that alone has taken more than 10 s here.
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    directory = day_dir(recent_store, datetime.now(UTC).date())
    assert sorted(p.name for p in directory.iterdir())[-1] == "batch-003.jsonl.gz"
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]


def test_live_stops_when_the_days_keys_are_used_up(recent_store):
    info = replace(load_store(recent_store), day_key_capacity=5)
    day = datetime.now(UTC).date() + timedelta(days=10)
    written = []
    with pytest.raises(SimulatorError, match="order keys reserved for"):
        run_live(recent_store, interval=0, day=day, report=written.append, info=info)
    landed = [parse(r)["o_orderkey"] for b in written for r in read_lines(b.path)]
    start = first_orderkey(info, day)
    assert landed == list(range(start, start + 5))


def test_live_refuses_a_day_inside_the_history(recent_store, capsys):
    code = main(
        ["live", "--day", "2026-08-01", "--until-count", "1", "--data-dir", str(recent_store)]
    )
    assert code == 2
    assert "inside the generated history" in capsys.readouterr().err
    assert not day_dir(recent_store, date(2026, 8, 1)).exists()
