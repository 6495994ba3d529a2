"""The landing-zone sensor over odd entries: non-canonical day names, broken links, stray files.

On the instance users run: a temporary DAGSTER_HOME holding the project's dagster.yaml.
"""

import gzip

import pytest

from tests.sensors.landing_zone import drop, requested, tick

pytestmark = pytest.mark.usefixtures("first_tick_requests_everything")

# 2026-08-03 written otherwise: without separators, as an ISO week date, without zero padding.
NOT_CANONICAL = ["20260803", "2026-W32-1", "2026-8-3", "2026-02-30"]


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
