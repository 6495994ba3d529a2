"""The order-to-cash chain: every side effect exactly once, faults retried or compensated, money tied out."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from resources.faults import FaultInjection
from tests.helpers import WEEKS_END, WEEKS_START, fulfill, make_data_dir, query

# Inside the session's staged weeks (WEEKS_START..WEEKS_END in tests/helpers.py).
DAY = "2021-01-06"
WEEK = ("2021-01-04", "2021-01-10")
ROOT = Path(__file__).resolve().parents[2]


def checks(result) -> dict[str, bool]:
    return {
        f"{e.asset_key.path[-1]}.{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }


def sqlite_count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as con:
        return con.execute(sql).fetchone()[0]


def messages(data: Path, folder: str = "*") -> list[str]:
    """The text of every message in a Maildir folder (new and already read), or in the SQL outbox."""
    outbox = data / "outbox"
    if (outbox / "outbox.sqlite").exists():  # ORDERFLOW_OUTBOX=sql: a day's, or "admin" alerts
        with sqlite3.connect(outbox / "outbox.sqlite") as con:
            rows = con.execute("select day, kind, message from outbox_messages").fetchall()
        return [
            text.decode()
            for day, kind, text in rows
            if folder in ("*", "admin" if kind == "admin_alert" else day)
        ]
    paths = sorted(outbox.glob(f".{folder}/new/*")) + sorted(outbox.glob(f".{folder}/cur/*"))
    return [path.read_bytes().decode() for path in paths]


def side_effects(data: Path) -> dict[str, int]:
    """Counts of everything the chain did in the outside systems."""
    systems = data / "systems"
    return {
        "reservations": sqlite_count(
            systems / "inventory.sqlite", "select count(*) from reservations"
        ),
        "units_available": sqlite_count(
            systems / "inventory.sqlite", "select sum(available) from stock"
        ),
        "restocks": sqlite_count(
            systems / "inventory.sqlite", "select count(*) from supplier_restocks"
        ),
        "shipments": sqlite_count(systems / "carrier.sqlite", "select count(*) from shipments"),
        "shipment_lines": sqlite_count(
            systems / "carrier.sqlite", "select count(*) from shipment_lines"
        ),
        "messages": len(messages(data)),
        "journal_entries": sqlite_count(
            systems / "accounting.sqlite", "select count(*) from journal_entries"
        ),
        "journal_lines": sqlite_count(
            systems / "accounting.sqlite", "select count(*) from journal_lines"
        ),
    }


def fingerprint(data: Path) -> dict[str, list]:
    tables = [
        "allocations",
        "backorder_notices",
        "invoices",
        "shipments",
        "compensations",
        "shipment_notifications",
        "ledger_postings",
    ]
    return {
        table: query(
            data,
            f"select count(*), sum(hash(t)) from (select * exclude (processed_at) from fulfillment.{table}) t",
        )
        for table in tables
    }


def test_weeks_in_one_run_tie_out(fulfilled_weeks):
    data = fulfilled_weeks
    lines, orders = query(
        data,
        "select (select count(*) from staging.lineitem), (select count(*) from staging.orders)",
    )[0]
    statuses = dict(query(data, "select status, count(*) from fulfillment.allocations group by 1"))
    assert statuses["reserved"] + statuses["backordered"] == lines
    # The stock rule puts a few percent of lines on back-order.
    assert 0.01 < statuses["backordered"] / lines < 0.08
    # Per day: invoiced + back-ordered = ordered, to the cent.
    assert query(
        data,
        """
        select count(*) from (
            select o_orderdate, sum((o_totalprice * 100)::BIGINT) as ordered from staging.orders group by 1) o
        left join (select o_orderdate, sum(total_cents) as invoiced from fulfillment.invoices group by 1) i using (o_orderdate)
        left join (select l_orderdate as o_orderdate, sum(line_cents) as backordered
                   from fulfillment.allocations where status = 'backordered' group by 1) b using (o_orderdate)
        where ordered <> coalesce(invoiced, 0) + coalesce(backordered, 0)""",
    ) == [(0,)]
    invoiced = query(data, "select count(*) from fulfillment.invoices")[0][0]
    fully_backordered = query(
        data,
        """
        select count(*) from (select l_orderkey from fulfillment.allocations group by 1
                              having bool_and(status = 'backordered'))""",
    )[0][0]
    assert invoiced + fully_backordered == orders
    effects = side_effects(data)
    assert effects["reservations"] == lines
    assert effects["shipments"] == invoiced
    notices = query(data, "select count(*) from fulfillment.backorder_notices")[0][0]
    assert (
        notices
        == query(
            data,
            "select count(distinct l_orderkey) from fulfillment.allocations where status = 'backordered'",
        )[0][0]
    )
    assert effects["messages"] == notices + invoiced
    assert effects["journal_entries"] == invoiced
    # The ledger in the accounting system balances per day and its revenue is the invoiced net.
    with sqlite3.connect(data / "systems" / "accounting.sqlite") as con:
        assert (
            con.execute("""select count(*) from (select entry_day from journal_lines group by 1
                              having sum(debit_cents) <> sum(credit_cents))""").fetchone()[0]
            == 0
        )
        revenue = con.execute(
            "select sum(credit_cents) - sum(debit_cents) from journal_lines where account = 'revenue'"
        ).fetchone()[0]
    assert revenue == query(data, "select sum(net_cents) from fulfillment.invoices")[0][0]
    # Every shipped order has a tracking number and exactly one shipment e-mail naming it.
    tracked = dict(
        query(
            data,
            "select o_orderkey, any_value(tracking_number) from fulfillment.shipments group by 1",
        )
    )
    assert all(tracked.values())
    notified = dict(
        query(data, "select o_orderkey, tracking_number from fulfillment.shipment_notifications")
    )
    assert notified == tracked


def test_reserved_quantity_never_exceeds_stock(fulfilled_weeks):
    with sqlite3.connect(fulfilled_weeks / "systems" / "inventory.sqlite") as con:
        assert (
            con.execute(
                "select count(*) from stock where available < 0 or available > base_level"
            ).fetchone()[0]
            == 0
        )
        # Reserved units per (part, supplier) and month never exceed that month's stock.
        months = con.execute("""
            select count(*) from (
                select r.partkey, r.suppkey, substr(r.order_day, 1, 7), sum(r.quantity) as q, max(s.base_level) as b
                from reservations r join stock s using (partkey, suppkey) where r.status = 'reserved'
                group by 1, 2, 3 having q > b)""").fetchone()[0]
    assert months == 0


def test_the_same_partitions_three_times_change_nothing(copy_of_staged):
    data = copy_of_staged
    assert fulfill(data, *WEEK).success
    effects, tables = side_effects(data), fingerprint(data)
    assert effects["shipments"] > 0 and effects["messages"] > 0
    stamps_sql = "select count(distinct processed_at), max(processed_at) from fulfillment.shipments"
    stamps = query(data, stamps_sql)
    for _ in range(2):
        assert fulfill(data, *WEEK).success
        assert fulfill(data, DAY).success
        assert side_effects(data) == effects
        assert fingerprint(data) == tables
        # Each row keeps the time its step first handled it.
        assert query(data, stamps_sql) == stamps


# One range run in a process of its own: once both processes are ready it runs, then writes the
# (timestamp, event) of each of its step starts and ends to a JSON file.
OVERLAPPING_RUN = """
import json, sys, time
from pathlib import Path
import dagster as dg
from tests.helpers import fulfill
data, start, end, out = Path(sys.argv[1]), *sys.argv[2:]
Path(out + ".ready").touch()
deadline = time.monotonic() + 120
while len(list(Path(out).parent.glob("*.ready"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
with dg.DagsterInstance.ephemeral() as instance:
    result = fulfill(data, start, end, raise_on_error=False, instance=instance)
    kinds = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE")
    steps = [(e.timestamp, e.dagster_event_type.value) for e in instance.all_logs(result.run_id)
             if e.dagster_event_type is not None and e.dagster_event_type.value in kinds]
Path(out).write_text(json.dumps(steps))
sys.exit(0 if result.success else 1)
"""


def test_two_overlapping_runs_make_one_set_of_effects(copy_of_staged, tmp_path):
    data = copy_of_staged
    # Each run's log goes to a file: a pipe nobody reads fills (64 KiB) and blocks the run.
    runs, outs = [], []
    for n, (start, end) in enumerate(((WEEKS_START, "2021-01-06"), ("2020-12-28", WEEKS_END))):
        outs.append(tmp_path / f"run-{n}.json")
        with (tmp_path / f"run-{n}.log").open("w") as log:
            runs.append(
                subprocess.Popen(
                    [sys.executable, "-c", OVERLAPPING_RUN, str(data), start, end, str(outs[-1])],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    for run in runs:
        run.wait(timeout=240)
    # Each waited for the other's brief hold of the warehouse (its lock file) instead of failing.
    assert [run.returncode for run in runs] == [0, 0], [
        (tmp_path / f"run-{n}.log").read_text()[-4000:] for n in range(len(runs))
    ]
    # The runs overlapped: each one's first step started before the other's last step ended.
    spans = []
    for n, out in enumerate(outs):
        assert out.exists(), (tmp_path / f"run-{n}.log").read_text()[-4000:]
        steps = json.loads(out.read_text())
        started = [at for at, event in steps if event == "STEP_START"]
        ended = [at for at, event in steps if event != "STEP_START"]
        assert started and ended, steps
        spans.append((min(started), max(ended)))
    assert max(first for first, _ in spans) < min(last for _, last in spans), (
        f"the runs did not overlap; (first step start, last step end) of each: {spans}"
    )
    # After both, and a run of the whole range: one effect per fact.
    assert fulfill(data, WEEKS_START, WEEKS_END).success
    effects = side_effects(data)
    lines = query(
        data,
        "select count(*) from staging.lineitem where l_orderdate between ? and ?",
        [WEEKS_START, WEEKS_END],
    )[0][0]
    invoiced = query(data, "select count(*) from fulfillment.invoices")[0][0]
    notices = query(data, "select count(*) from fulfillment.backorder_notices")[0][0]
    assert effects["reservations"] == lines
    assert effects["shipments"] == invoiced
    assert effects["messages"] == invoiced + notices
    assert effects["journal_entries"] == invoiced


def test_a_transient_outage_is_retried_to_success(copy_of_staged):
    data = copy_of_staged
    result = fulfill(data, DAY, faults={"carrier": FaultInjection(outage_calls=2)})
    assert result.success
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retried] == ["fulfillment__shipments"] * 2
    assert (
        side_effects(data)["shipments"]
        == query(data, "select count(*) from fulfillment.invoices")[0][0]
    )


def test_an_outage_past_the_retries_fails_clearly_and_a_rerun_completes(copy_of_staged, tmp_path):
    data = copy_of_staged
    result = fulfill(
        data, *WEEK, faults={"inventory": FaultInjection(down=True)}, raise_on_error=False
    )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["fulfillment__inventory_stock"]
    message = failures[0].event_specific_data.error.message
    assert "inventory system is still unavailable after 4 attempts" in message
    assert "inventory is down" in message
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 3
    # Now the inventory comes back: the re-run completes and equals a run that never failed.
    assert fulfill(data, *WEEK).success
    clean = make_data_dir(tmp_path / "clean", (data / "landing").resolve().parent)
    shutil.copy(data / "warehouse.duckdb", clean / "warehouse.duckdb")
    assert fulfill(clean, *WEEK).success
    assert side_effects(data) == side_effects(clean)
    assert fingerprint(data) == fingerprint(clean)


def test_an_outage_in_the_middle_leaves_nothing_doubled(copy_of_staged):
    data = copy_of_staged
    assert fulfill(data, WEEK[0]).success
    result = fulfill(
        data, *WEEK, faults={"accounting": FaultInjection(down=True)}, raise_on_error=False
    )
    assert not result.success
    # Everything before the ledger happened once; the ledger still has only the first day.
    half = side_effects(data)
    assert (
        half["journal_entries"]
        == query(
            data, "select count(*) from fulfillment.invoices where o_orderdate = ?", [WEEK[0]]
        )[0][0]
    )
    assert fulfill(data, *WEEK).success
    done = side_effects(data)
    assert done["journal_entries"] == query(data, "select count(*) from fulfillment.invoices")[0][0]
    assert {k: v for k, v in done.items() if not k.startswith("journal")} == {
        k: v for k, v in half.items() if not k.startswith("journal")
    }


def test_a_refused_shipment_is_compensated_once(copy_of_staged):
    data = copy_of_staged
    assert fulfill(data, DAY).success
    order = query(data, "select min(o_orderkey) from fulfillment.invoices")[0][0]
    # A fresh warehouse copy so the carrier is asked for the first time with the refusal set.
    data2 = data.parent / "refused"
    make_data_dir(data2, (data / "landing").resolve().parent)
    shutil.copy(data / "warehouse.duckdb", data2 / "warehouse.duckdb")
    faults = {"carrier": FaultInjection(reject_keys=[str(order)])}
    for _ in range(3):
        result = fulfill(data2, DAY, faults=faults)
        assert result.success
        assert all(checks(result).values()), checks(result)
    (row,) = query(
        data2,
        "select o_orderkey, credit_note_number, total_cents, customer_status, lines_released from fulfillment.compensations",
    )
    invoice = query(
        data2, "select total_cents, lines from fulfillment.invoices where o_orderkey = ?", [order]
    )[0]
    assert row == (order, f"CN-{order}", invoice[0], "sent", invoice[1])
    systems = data2 / "systems"
    assert (
        sqlite_count(
            systems / "inventory.sqlite",
            f"select count(*) from reservations where order_key = {order} and status = 'released'",
        )
        == invoice[1]
    )
    assert (
        sqlite_count(
            systems / "carrier.sqlite",
            f"select count(*) from shipments where order_key = {order} and status = 'refused'",
        )
        == 1
    )
    with sqlite3.connect(systems / "accounting.sqlite") as con:
        kinds = dict(
            con.execute(
                "select kind, count(*) from journal_entries where order_key = ? group by 1", [order]
            ).fetchall()
        )
        net = con.execute(
            "select sum(debit_cents) - sum(credit_cents) from journal_lines where entry_key like ?",
            [f"%:{order}"],
        ).fetchone()[0]
    assert kinds == {"invoice": 1, "credit_note": 1}
    assert net == 0
    # The customer got a refund e-mail instead of a shipment e-mail, and an admin was alerted.
    texts = messages(data2, DAY)
    assert sum(f"X-Orderflow-Key: refund:{order}" in t for t in texts) == 1
    assert not any(f"X-Orderflow-Key: shipped:{order}\r" in t for t in texts)
    alerts = messages(data2, "admin")
    assert len(alerts) == 1 and f"Carrier refused order {order}" in alerts[0]
    # The refused order got no shipment e-mail.
    assert query(
        data2,
        "select count(*) from fulfillment.shipment_notifications where o_orderkey = ?",
        [order],
    ) == [(0,)]


def test_a_permanent_accounting_refusal_fails_without_retries(copy_of_staged):
    data = copy_of_staged
    first = query(data, "select min(o_orderkey) from staging.orders where o_orderdate = ?", [DAY])[
        0
    ][0]
    result = fulfill(
        data,
        DAY,
        faults={"accounting": FaultInjection(reject_keys=[f"invoice:{first}"])},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "fulfillment__ledger_postings"
    assert "accounting system refused" in failure.event_specific_data.error.message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
