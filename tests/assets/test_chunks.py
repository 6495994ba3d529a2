"""Chunks: a range run worked through a month at a time equals the same run in one pass, and a
failure between two chunks loses and duplicates nothing once the run is re-executed from failure.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import dagster as dg
import pytest

from foundation import layout
from simulator.history import generate_store
from simulator.outages import Outage, outage_path, write_outage
from tests.helpers import (
    HISTORY_END,
    HISTORY_START,
    analyse,
    check_outcomes,
    fulfill,
    load_catalog,
    make_data_dir,
    outputs,
    partition_kwargs,
    query,
    stage,
)

# One worker builds the module's chunked weeks (make test's --dist loadgroup), not each of them.
pytestmark = pytest.mark.xdist_group("chunked_weeks")

# Three weeks across a month (and year) boundary: two chunks of a month, one of the whole window.
START, NEW_MONTH, END = "2020-12-21", "2021-01-01", "2021-01-10"


def whole_graph(data: Path, start: str, end: str) -> set[int]:
    """Catalog, staging, fulfillment and the daily marts over [start, end], as a backfill runs them.

    Returns the chunk counts the staging and fulfillment steps report.
    """
    chunks = set()
    for result in (
        load_catalog(data),
        stage(data, start, end),
        fulfill(data, start, end),
        analyse(data, start, end),
    ):
        assert result.success
        assert all(check_outcomes(result).values()), check_outcomes(result)
        chunks |= {
            event.materialization.metadata["chunks"].value
            for event in result.get_asset_materialization_events()
            if "chunks" in event.materialization.metadata
        }
    return chunks


@pytest.fixture(scope="module")
def chunked_weeks(tmp_path_factory, store_dir) -> Path:
    """The weeks through the whole graph a month at a time, shared read-only."""
    data = make_data_dir(tmp_path_factory.mktemp("chunked") / "data", store_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORDERFLOW_CHUNK_MONTHS", "1")
        assert whole_graph(data, START, END) == {2}
    return data


def test_a_month_at_a_time_equals_the_window_in_one_chunk(chunked_weeks, tmp_path, store_dir):
    data = make_data_dir(tmp_path / "data", store_dir)
    with pytest.MonkeyPatch.context() as patch:
        # The default sizes chunks to the store: SF 0.01's three weeks are one chunk for every step.
        patch.delenv("ORDERFLOW_CHUNK_MONTHS", raising=False)
        assert whole_graph(data, START, END) == {1}
    chunked, whole = outputs(chunked_weeks), outputs(data)
    assert sorted(chunked) == sorted(whole)
    assert [name for name in chunked if chunked[name] != whole[name]] == []
    # Nothing vacuous: both months have back-orders, January's top-ups follow December's
    # reservations, and every system and the outbox have records.
    backordered = query(
        data,
        "select count(distinct l_orderdate >= ?) from fulfillment.allocations "
        "where status = 'backordered'",
        [NEW_MONTH],
    )
    assert backordered == [(2,)]
    with closing(sqlite3.connect(data / "systems" / "inventory.sqlite")) as con:
        restocked = con.execute("select distinct month from supplier_restocks").fetchall()
    assert restocked == [(202101,)]
    for name in ("outbox", "carrier.sqlite shipments", "accounting.sqlite journal_entries"):
        assert chunked[name][0] > 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_history_at_sf_0_1_a_month_at_a_time_equals_it_in_one_chunk(tmp_path):
    store = tmp_path / "store"
    generate_store(store, 0.1)
    found = {}
    # Sized to the store (auto), SF 0.1 is worked through a calendar year at a time.
    for months, chunks in (("1", {80}), ("0", {1}), ("auto", {7})):
        data = make_data_dir(tmp_path / f"chunk-months-{months}", store)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ORDERFLOW_CHUNK_MONTHS", months)
            assert whole_graph(data, HISTORY_START, HISTORY_END) == chunks
        found[months] = outputs(data)
    chunked, whole = found["1"], found["0"]
    assert sorted(chunked) == sorted(whole) == sorted(found["auto"])
    assert [name for name in chunked if chunked[name] != whole[name]] == []
    assert [name for name in chunked if chunked[name] != found["auto"][name]] == []
    assert chunked["warehouse staging.lineitem"][0] == 600_572
    assert chunked["outbox"][0] > 150_000 * 0.9


# Per system: the step that calls it, the idempotency key it refuses (of a January order's line),
# the step's warehouse table and day column, and its records in the system with their day column.
FAILURES = {
    "inventory": ("allocations", "{order}:{line}", "l_orderdate", "reservations", "order_day"),
    "accounting": (
        "ledger_postings",
        "invoice:{order}",
        "o_orderdate",
        "journal_lines",
        "entry_day",
    ),
}


@pytest.mark.parametrize("system", sorted(FAILURES))
def test_a_failure_between_chunks_loses_and_duplicates_nothing(
    system, chunked_weeks, tmp_path, store_dir, sqlite_instance, monkeypatch
):
    step, key, day_column, records, record_day = FAILURES[system]
    data = make_data_dir(tmp_path / "data", store_dir)
    monkeypatch.setenv("ORDERFLOW_DATA_DIR", str(data))
    monkeypatch.setenv("ORDERFLOW_CHUNK_MONTHS", "1")
    ((order, line),) = query(
        chunked_weeks,
        "select l_orderkey, l_linenumber from fulfillment.allocations "
        "where l_orderdate >= ? and status = 'reserved' order by all limit 1",
        [NEW_MONTH],
    )
    # The system refuses one January key: the step fails in its second chunk, without retries.
    refusal = outage_path(layout.systems_dir(data), system)
    write_outage(refusal, Outage(reject_keys=[key.format(order=order, line=line)]))
    job = dg.build_reconstructable_job(
        "tests.helpers", "order_to_cash_for", reconstructable_kwargs={"data_dir": str(data)}
    )
    range_tags = partition_kwargs(START, END)["tags"]
    with dg.execute_job(job, sqlite_instance, tags=range_tags) as failed:
        assert not failed.success
    failures = sqlite_instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert [e.step_key for e in failures] == [f"fulfillment__{step}"]
    assert not sqlite_instance.all_logs(
        failed.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
    )

    # December's chunk is in the system and the warehouse, once; January's nowhere.
    def december(rows_in: Path, sql: str) -> list[tuple]:
        return query(rows_in, sql, [NEW_MONTH])

    warehouse_sql = (
        f"select count(*), min({day_column})::VARCHAR, max({day_column})::VARCHAR "
        f"from fulfillment.{step} where {day_column} < ?"
    )
    expected = december(chunked_weeks, warehouse_sql)
    assert expected[0][0] > 0
    assert query(data, f"select count(*) from fulfillment.{step}") == [(expected[0][0],)]
    assert december(data, warehouse_sql) == expected
    with closing(sqlite3.connect(data / "systems" / f"{system}.sqlite")) as con:
        kept = con.execute(
            f"select count(*), min({record_day}), max({record_day}) from {records}"
        ).fetchall()
    # A ledger posting row is a journal line, an allocation row a reservation.
    assert kept == expected

    # The system is fixed; re-executed from failure, the run ends as a run that never failed.
    write_outage(refusal, Outage())
    options = dg.ReexecutionOptions.from_failure(failed.run_id, sqlite_instance)
    with dg.execute_job(
        job, sqlite_instance, tags=failed.dagster_run.tags, reexecution_options=options
    ) as recovered:
        assert recovered.success
    clean, recovered_outputs = outputs(chunked_weeks), outputs(data)
    assert recovered_outputs.keys() == {
        name for name in clean if not name.startswith("warehouse analytics.")
    }
    assert [n for n in recovered_outputs if recovered_outputs[n] != clean[n]] == []
