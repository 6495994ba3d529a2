"""Business rules in the chain: a changed rule decides the days after it, and re-deciding a day is an
explicit backfill whose effects on the outside systems happen once, compensating what changed.

2021-12-22 holds two orders that want the same (part, supplier): order 5287 (5-LOW, key first, its
only line: 32 units) and order 8515 (1-URGENT, line 3: 18 units), with 47 units in stock. First
come, first served reserves 5287's line and back-orders 8515's; by priority it is the other way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from foundation.jobs import REDECIDE_TAG
from foundation.rules import load_rules
from foundation.settings import PROJECT_ROOT
from tests.assets.test_fulfillment import checks, messages, side_effects
from tests.helpers import (
    analyse,
    dagster_home,
    fulfill,
    load_catalog,
    make_data_dir,
    query,
    stage,
    write_rules,
)

EARLIER, DAY = "2021-12-21", "2021-12-22"
LOW, URGENT = (5287, 1), (8515, 3)  # (order, line) on part 383, supplier 40
TODAYS = load_rules(PROJECT_ROOT / "rules.yaml").version


@pytest.fixture(scope="module")
def staged_december(tmp_path_factory, store_dir) -> Path:
    data = make_data_dir(tmp_path_factory.mktemp("december") / "data", store_dir)
    assert load_catalog(data).success
    assert stage(data, EARLIER, DAY).success
    return data


def private_copy(shared: Path, root: Path) -> Path:
    data = make_data_dir(root, (shared / "landing").resolve().parent)
    shutil.copy(shared / "warehouse.duckdb", data / "warehouse.duckdb")
    if (shared / "systems").is_dir():
        shutil.copytree(shared / "systems", data / "systems")
    return data


@pytest.fixture
def december(tmp_path, staged_december) -> Path:
    return private_copy(staged_december, tmp_path / "data")


@pytest.fixture
def by_priority(tmp_path, monkeypatch) -> str:
    """rules.yaml with allocation by order priority, in force (the pipeline's and the systems')."""
    rules = write_rules(tmp_path / "priority.yaml", allocation={"order": "priority"})
    monkeypatch.setenv("ORDERFLOW_RULES", str(rules))
    return load_rules(rules).version


def allocations(data: Path, day: str) -> dict[tuple[int, int], tuple]:
    """(status, rules version, revision) per (order, line) of a day."""
    found = query(
        data,
        "select l_orderkey, l_linenumber, status, rules_version, revision "
        "from fulfillment.allocations where l_orderdate = ?",
        [day],
    )
    return {(order, line): tuple(rest) for order, line, *rest in found}


def materialization(result, asset: str) -> dict:
    """The metadata of an asset's materialisation in a run, as plain values."""
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_changed_rule_decides_the_next_day_by_it_and_leaves_earlier_days(
    december, tmp_path, monkeypatch
):
    assert fulfill(december, EARLIER).success
    earlier = allocations(december, EARLIER)
    assert {version for _, version, _ in earlier.values()} == {TODAYS}
    # The same store with today's rules decides the next day first come, first served.
    control = private_copy(december, tmp_path / "control")
    assert fulfill(control, DAY).success
    by_arrival = allocations(control, DAY)
    assert by_arrival[LOW][0] == "reserved" and by_arrival[URGENT][0] == "backordered"

    rules = write_rules(tmp_path / "priority.yaml", allocation={"order": "priority"})
    monkeypatch.setenv("ORDERFLOW_RULES", str(rules))
    priority = load_rules(rules).version
    result = fulfill(december, DAY)
    assert result.success
    assert all(checks(result).values()), checks(result)
    by_priority = allocations(december, DAY)
    # Exactly the two competing lines change places; every line records the rules it used.
    assert {k for k in by_priority if by_priority[k][0] != by_arrival[k][0]} == {LOW, URGENT}
    assert by_priority[URGENT][0] == "reserved" and by_priority[LOW][0] == "backordered"
    assert {version for _, version, _ in by_priority.values()} == {priority}
    # Shown in the UI: the run's materialisation says which rules it decided by.
    assert materialization(result, "allocations")["rules_version"] == priority
    # The earlier day keeps its decisions and their version, re-run or not.
    assert allocations(december, EARLIER) == earlier
    assert fulfill(december, EARLIER, DAY).success
    assert allocations(december, EARLIER) == earlier
    assert allocations(december, DAY) == by_priority


def test_re_deciding_a_day_compensates_what_changed_once(december, by_priority):
    # Decided first come, first served, then re-decided by priority with an explicit backfill.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORDERFLOW_RULES", str(PROJECT_ROOT / "rules.yaml"))
        assert fulfill(december, DAY).success
    before, sent = side_effects(december), set(message_keys(december))
    assert allocations(december, DAY)[LOW][0] == "reserved"
    # A normal run under the new rules changes nothing: decided days keep their decisions.
    assert fulfill(december, DAY).success
    assert side_effects(december) == before

    result = fulfill(december, DAY, tags={REDECIDE_TAG: "true"})
    assert result.success
    assert all(checks(result).values()), checks(result)
    after = allocations(december, DAY)
    assert after[LOW] == ("backordered", by_priority, 1)
    assert after[URGENT] == ("reserved", by_priority, 1)
    # Only the two orders changed; every other line was decided again, the same way.
    assert {k for k, (_, _, revision) in after.items() if revision} == {
        k for k in after if k[0] in (LOW[0], URGENT[0])
    }
    assert {version for _, version, _ in after.values()} == {by_priority}
    effects = side_effects(december)
    # The inventory changed its decisions in place; the carrier amended 8515 (line 3 added) and
    # cancelled 5287 (nothing of it is reserved now).
    assert effects["reservations"] == before["reservations"]
    assert effects["shipments"] == before["shipments"]
    assert effects["shipment_lines"] == before["shipment_lines"] + 1
    assert effects["units_available"] == before["units_available"] + 32 - 18
    # One correction per changed order and document: a back-order notice each, an updated
    # shipment notice for 8515, 5287's invoice reversed, 8515's reversed and issued anew.
    assert set(message_keys(december)) - sent == {
        "backorder:5287:r1",
        "backorder:8515:r1",
        "shipped:8515:r1",
    }
    assert effects["messages"] == before["messages"] + 3
    assert effects["journal_entries"] == before["journal_entries"] + 3
    assert query(
        december,
        "select entry_key from fulfillment.ledger_postings where o_orderkey in (5287, 8515) "
        "group by 1 order by 1",
    ) == [
        ("credit_note:5287:r1",),
        ("credit_note:8515:r1",),
        ("invoice:5287",),
        ("invoice:8515",),
        ("invoice:8515:r1",),
    ]
    assert query(december, "select status from fulfillment.shipments where o_orderkey = 5287") == [
        ("cancelled",)
    ]
    # The backfill again, and a normal run: nothing moves, nothing is sent twice.
    for tags in ({REDECIDE_TAG: "true"}, {}):
        assert fulfill(december, DAY, tags=tags).success
        assert side_effects(december) == effects
        assert allocations(december, DAY) == after
    assert materialization(result, "allocations")["orders_revised"] == 2
    # The marts see the re-decided day as it is now: 5287 back-ordered, 8515 shipped whole.
    marts = analyse(december, DAY)
    assert marts.success and all(checks(marts).values()), checks(marts)
    assert query(
        december,
        "select o_orderkey, outcome from analytics.order_timeline"
        " where o_orderkey in (5287, 8515) order by 1",
    ) == [(5287, "backordered"), (8515, "shipped")]


def message_keys(data: Path) -> list[str]:
    """The idempotency key of every message sent (X-Orderflow-Key)."""
    return [
        line.split(":", 1)[1].strip()
        for text in messages(data)
        for line in text.splitlines()
        if line.startswith("X-Orderflow-Key:")
    ]


def test_the_alert_thresholds_are_the_rules(december, tmp_path, monkeypatch):
    # Today's rules alert on no rate: the checks pass, no admin is told.
    result = fulfill(december, DAY)
    outcomes = checks(result)
    assert outcomes["reconciliation.backorder_rate_within_threshold"]
    assert outcomes["reconciliation.on_time_rate_within_threshold"]
    assert messages(december, "admin") == []
    # A day with a back-ordered line passes a threshold of 0: one alert, a warning, once.
    rules = write_rules(tmp_path / "strict.yaml", alerts={"max_backorder_rate": 0.0})
    monkeypatch.setenv("ORDERFLOW_RULES", str(rules))
    for _ in range(2):
        result = fulfill(december, DAY)
        assert result.success
        assert not checks(result)["reconciliation.backorder_rate_within_threshold"]
        (alert,) = messages(december, "admin")
        assert "1 days past the back-order rate threshold 0.0" in alert
        assert f"{DAY}: back-order rate" in alert


@pytest.mark.parametrize(
    ("ours", "theirs", "tolerance", "agree"),
    [
        (100, 100, 0.0, True),
        (100, 101, 0.0, False),
        (100, 101, 0.01, True),
        (100, 102, 0.01, False),
        (None, 5, 0.5, False),
    ],
)
def test_reconciliation_allows_the_rules_tolerance(ours, theirs, tolerance, agree):
    from assets.fulfillment.reconciliation import _agree

    assert _agree(ours, theirs, tolerance) is agree


def test_the_documented_command_re_decides_a_day(december, by_priority, tmp_path):
    """README's command: `dagster job execute` of fulfillment_job tagged to re-decide a day."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORDERFLOW_RULES", str(PROJECT_ROOT / "rules.yaml"))
        assert fulfill(december, DAY).success
    tags = {REDECIDE_TAG: "true", "dagster/partition": DAY}
    command = [
        str(Path(sys.executable).parent / "dagster"),
        *("job", "execute", "-m", "orchestration_defs.definitions", "-j", "fulfillment_job"),
        *("--tags", json.dumps(tags)),
    ]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home(tmp_path / "home")),
        "ORDERFLOW_DATA_DIR": str(december),
    }
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = allocations(december, DAY)
    assert after[LOW] == ("backordered", by_priority, 1)
    assert after[URGENT] == ("reserved", by_priority, 1)


def test_whole_order_back_orders_hold_the_order_back(december, tmp_path, monkeypatch):
    rules = write_rules(tmp_path / "whole.yaml", allocation={"backorder": "order"})
    monkeypatch.setenv("ORDERFLOW_RULES", str(rules))
    result = fulfill(december, DAY)
    assert result.success
    assert all(checks(result).values()), checks(result)
    decided = allocations(december, DAY)
    # 8515's line 3 does not fit: none of its six lines is reserved, invoiced or shipped, and the
    # customer's notice lists all six.
    assert {status for (order, _), (status, *_) in decided.items() if order == URGENT[0]} == {
        "backordered"
    }
    assert query(
        december,
        "select (select count(*) from fulfillment.invoices where o_orderkey = ?),"
        " (select count(*) from fulfillment.shipments where o_orderkey = ?),"
        " (select lines from fulfillment.backorder_notices where o_orderkey = ?)",
        [URGENT[0]] * 3,
    ) == [(0, 0, 6)]
    # Every order is either whole or held back whole.
    assert query(
        december,
        "select count(*) from (select l_orderkey from fulfillment.allocations"
        " where l_orderdate = ? group by 1 having count(distinct status) > 1)",
        [DAY],
    ) == [(0,)]
