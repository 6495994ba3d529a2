"""The marts against independent computations over staging, checks on bad data, and the report."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import (
    WEEKS_END,
    WEEKS_START,
    analyse,
    analyse_history,
    check_outcomes,
    make_data_dir,
    query,
)

DAY = "2021-01-06"  # inside the session's fulfilled weeks
# Revenue of a line in TPC-H's cent arithmetic, written here independently of the assets.
NET = "floor(round(l.l_extendedprice * 100) * (100 - round(l.l_discount * 100)) / 100)"


@pytest.fixture(scope="session")
def analysed(tmp_path_factory, fulfilled_weeks) -> Path:
    """The fulfilled weeks with every mart refreshed over their whole range, and the report."""
    data = make_data_dir(
        tmp_path_factory.mktemp("analysed") / "data",
        (fulfilled_weeks / "landing").resolve().parent,
    )
    shutil.copy(fulfilled_weeks / "warehouse.duckdb", data / "warehouse.duckdb")
    shutil.copytree(fulfilled_weeks / "systems", data / "systems")
    for result in (analyse(data, WEEKS_START, WEEKS_END), analyse_history(data)):
        assert result.success
        outcomes = check_outcomes(result)
        assert all(outcomes.values()), outcomes
    return data


def as_set(rows) -> set[tuple]:
    return {tuple(row) for row in rows}


# Lines actually sold: reserved, of orders the carrier did not refuse (from staging, allocations
# and the carrier's answers; not from invoices).
SOLD = """
    select l.* from staging.lineitem l
    join fulfillment.allocations a using (l_orderkey, l_linenumber)
    where a.status = 'reserved' and l.l_orderkey not in
        (select o_orderkey from fulfillment.shipments where status = 'refused')
"""


def test_daily_sales_equals_revenue_of_the_lines_sold(analysed):
    expected = query(
        analysed,
        f"""
        select o.o_orderdate, r.r_name, n.n_name, count(distinct o.o_orderkey),
            count(*), sum({NET})::BIGINT
        from ({SOLD}) l join staging.orders o on o.o_orderkey = l.l_orderkey
        join staging.customer c on c.c_custkey = o.o_custkey
        join staging.nation n on n.n_nationkey = c.c_nationkey
        join staging.region r on r.r_regionkey = n.n_regionkey
        group by all""",
    )
    mart = query(
        analysed,
        "select day, region, nation, orders, lines, revenue_cents "
        "from analytics.daily_sales where orders > 0",
    )
    assert as_set(mart) == as_set(expected)
    assert query(
        analysed,
        "select count(*) from analytics.daily_sales "
        "where average_order_cents <> revenue_cents // orders and orders > 0",
    ) == [(0,)]


def test_fulfillment_kpis_equal_counts_per_day_and_mode(analysed):
    expected = query(
        analysed,
        """
        select l.l_orderdate, l.l_shipmode, count(*),
            sum(case when a.status = 'backordered' then 1 else 0 end),
            sum(case when s.status = 'shipped' then 1 else 0 end),
            sum(case when s.status = 'shipped' and s.delivery_date <= l.l_commitdate then 1 else 0 end)
        from staging.lineitem l
        join fulfillment.allocations a using (l_orderkey, l_linenumber)
        left join fulfillment.shipments s
          on s.o_orderkey = l.l_orderkey and s.l_linenumber = l.l_linenumber
        group by all""",
    )
    mart = query(
        analysed,
        """
        select day, ship_mode, lines, lines_backordered, lines_shipped,
            round(coalesce(on_time_rate, 0) * lines_shipped)::BIGINT
        from analytics.fulfillment_kpis""",
    )
    assert as_set(mart) == as_set(expected)
    rates = query(
        analysed,
        "select min(backorder_rate), max(backorder_rate), "
        "min(on_time_rate), max(on_time_rate) from analytics.fulfillment_kpis",
    )[0]
    assert all(0 <= r <= 1 for r in rates)


def test_order_timeline_has_every_order_and_its_steps(analysed):
    assert query(
        analysed, "select count(*), count(distinct o_orderkey) from analytics.order_timeline"
    ) == query(analysed, "select count(*), count(distinct o_orderkey) from staging.orders")
    outcomes = dict(
        query(analysed, "select outcome, count(*) from analytics.order_timeline group by 1")
    )
    shipped = query(analysed, "select count(*) from fulfillment.shipment_notifications")[0][0]
    assert outcomes["shipped"] == shipped
    assert "in progress" not in outcomes
    # Every shipped order has all five step times, in order.
    assert query(
        analysed,
        """select count(*) from analytics.order_timeline where outcome = 'shipped'
        and not (reserved_at <= invoiced_at and invoiced_at <= shipped_at and shipped_at <= notified_at
                 and invoiced_at <= posted_at)""",
    ) == [(0,)]


def test_step_latency_percentiles_equal_pandas(analysed):
    frame = query(
        analysed,
        "select reserve_s, post_s from analytics.order_timeline where o_orderdate = ?",
        [DAY],
    )
    import statistics

    reserve = sorted(r[0] for r in frame if r[0] is not None)
    mart = dict(
        query(analysed, "select step, p50_s from analytics.step_latency where day = ?", [DAY])
    )
    assert mart["reserve"] == pytest.approx(statistics.median(reserve))
    counts = dict(
        query(analysed, "select step, orders from analytics.step_latency where day = ?", [DAY])
    )
    assert counts["post"] == sum(1 for r in frame if r[1] is not None)


def test_inventory_health_matches_the_inventory_system(analysed):
    with sqlite3.connect(analysed / "systems" / "inventory.sqlite") as con:
        stock = con.execute("select partkey, suppkey, base_level, available from stock").fetchall()
    mart = query(
        analysed, "select partkey, suppkey, base_level, available from analytics.inventory_health"
    )
    assert as_set(mart) == as_set(stock)
    # The top-value pairs are the most valuable ones and make up at least half of the value.
    total, top, worst_top, best_rest = query(
        analysed,
        """
        select sum(stock_value_cents), sum(stock_value_cents) filter (where top_value),
            min(stock_value_cents) filter (where top_value),
            max(stock_value_cents) filter (where not top_value)
        from analytics.inventory_health""",
    )[0]
    assert top >= total / 2 and worst_top >= best_rest
    # Reorder = out of stock or under 14 days of cover, and brings the pair back to base level.
    assert query(
        analysed,
        """select count(*) from analytics.inventory_health
        where reorder <> (available <= 0 or coalesce(days_of_cover, 1e9) < 14)
           or (reorder and reorder_quantity <> greatest(base_level - available, 0))""",
    ) == [(0,)]


def test_customer_value_equals_an_independent_lifetime_sum(analysed):
    expected = query(
        analysed,
        f"""
        select o.o_custkey, count(distinct o.o_orderkey), sum({NET})::BIGINT
        from ({SOLD}) l join staging.orders o on o.o_orderkey = l.l_orderkey group by 1""",
    )
    mart = query(
        analysed,
        "select c_custkey, orders_invoiced, lifetime_revenue_cents "
        "from analytics.customer_value where orders_invoiced > 0",
    )
    assert as_set(mart) == as_set(expected)
    # TPC-H Q18's rule: orders of more than 300 units.
    big = query(
        analysed,
        """select o.o_custkey, count(*) from staging.orders o join
        (select l_orderkey from staging.lineitem group by 1 having sum(l_quantity) > 300) b
        on b.l_orderkey = o.o_orderkey group by 1""",
    )
    assert as_set(
        query(
            analysed,
            "select c_custkey, large_volume_orders from analytics.customer_value "
            "where large_volume_orders > 0",
        )
    ) == as_set(big)
    assert query(analysed, "select count(*) from analytics.customer_value") == query(
        analysed, "select count(*) from staging.customer"
    )


def test_profit_by_nation_year_follows_tpch_q9(analysed):
    expected = query(
        analysed,
        f"""
        select n.n_name, extract(year from l.l_orderdate),
            sum({NET} - round(ps.ps_supplycost * 100) * l.l_quantity)::BIGINT
        from ({SOLD}) l
        join staging.partsupp ps on ps.ps_partkey = l.l_partkey and ps.ps_suppkey = l.l_suppkey
        join staging.supplier s on s.s_suppkey = l.l_suppkey
        join staging.nation n on n.n_nationkey = s.s_nationkey
        group by all""",
    )
    mart = query(
        analysed, "select nation, o_year, profit_cents from analytics.profit_by_nation_year"
    )
    assert as_set(mart) == as_set(expected)
    assert len(mart) == 25 * 2  # 25 nations, 2020 and 2021


def test_the_report_is_written_with_its_charts(analysed):
    report = analysed / "reports" / f"{WEEKS_END}.md"
    text = report.read_text()
    assert text.startswith(f"# Orderflow daily report — {WEEKS_END}")
    for name in ("revenue", "backorders", "latency"):
        image = analysed / "reports" / f"{WEEKS_END}-{name}.png"
        assert f"]({image.name})" in text
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Sales by region" in text and "| region | orders | revenue |" in text


def test_a_report_for_a_chosen_day_shows_inline_charts(analysed):
    result = analyse_history(
        analysed,
        run_config={"ops": {"analytics__daily_report": {"config": {"day": DAY}}}},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("analytics__daily_report")[0].metadata
    assert metadata["day"].value == DAY
    assert metadata["report"].value.count("data:image/png;base64,") == 3
    assert (analysed / "reports" / f"{DAY}.md").is_file()


def test_checks_fail_on_injected_bad_data_and_name_the_rows(copy_of_fulfilled):
    data = copy_of_fulfilled
    order, line = query(
        data,
        "select l_orderkey, l_linenumber from fulfillment.allocations "
        "where l_orderdate = ? order by 1, 2 limit 1",
        [DAY],
    )[0]
    # A staged line the allocations lost, and a refund for an order that was never invoiced.
    query(
        data,
        "delete from fulfillment.allocations where l_orderkey = ? and l_linenumber = ?",
        [order, line],
    )
    query(
        data,
        "insert into fulfillment.compensations (o_orderkey, o_orderdate, net_cents) values (-1, ?, 999)",
        [DAY],
    )
    result = analyse(data, DAY, raise_on_error=False)
    evaluations = {
        f"{e.asset_key.path[-1]}.{e.check_name}": e for e in result.get_asset_check_evaluations()
    }
    kpis = evaluations["fulfillment_kpis.lines_agree_with_staging"]
    sales = evaluations["daily_sales.revenue_agrees_with_fulfillment"]
    assert not kpis.passed and not sales.passed
    assert kpis.metadata["offending_keys"].value == [DAY]
    assert sales.metadata["offending_keys"].value == [DAY]
    # Blocking checks stop what depends on them: the run fails.
    assert not result.success
