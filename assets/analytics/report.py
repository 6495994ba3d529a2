"""The daily business report: Markdown with tables and PNG charts, in the UI and on disk.

Unpartitioned on purpose: a report is about one day but its charts look back 30 days across
partitions; re-running for a past day rewrites that day's file. The day is the latest order day in
the warehouse (the newest `o_orderdate` in staging.orders), whichever days the run that refreshed
the marts covered, or the `day` in run config. Charts are drawn with matplotlib from small pandas
frames.
"""

import base64
import io
from datetime import date, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from assets.analytics.common import analytics_asset
from foundation.money import money
from foundation.registry import (
    DAILY_REPORT_KEY,
    DAILY_SALES_KEY,
    FULFILLMENT_KPIS_KEY,
    ORDERS_KEY,
    STEP_LATENCY_KEY,
)
from resources.reports import ReportStore
from resources.warehouse import WarehouseResource

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd

TREND_DAYS = 30


class ReportConfig(dg.Config):
    """Which day to report on."""

    day: str = ""
    """YYYY-MM-DD; empty means the latest order day in the warehouse (staging.orders)."""


def _table(frame: "pd.DataFrame") -> str:
    if frame.empty:
        return "_No data for this day._"
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
    body = "\n".join(
        "| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)
    )
    return f"{head}\n{body}"


def _png(draw) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display: render to PNG bytes
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3), dpi=90)
    try:
        draw(axes)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


@analytics_asset(
    DAILY_REPORT_KEY,
    deps=[DAILY_SALES_KEY, FULFILLMENT_KPIS_KEY, STEP_LATENCY_KEY, ORDERS_KEY],
    kinds=["pandas", "markdown"],
)
def daily_report(
    context: dg.AssetExecutionContext,
    config: ReportConfig,
    warehouse: WarehouseResource,
    reports: ReportStore,
):
    """The day's business report: sales, fulfillment KPIs and step latency, with trend charts."""
    import pandas as pd

    with warehouse.connect() as con:
        if config.day:
            day = date.fromisoformat(config.day)
        else:
            latest = con.execute("select max(o_orderdate) from staging.orders").fetchall()[0][0]
            if latest is None:
                raise dg.Failure(
                    description="staging.orders is empty: stage and fulfil a day's orders first.",
                    allow_retries=False,
                )
            day = latest
        since = day - timedelta(days=TREND_DAYS - 1)
        trend = con.execute(
            "select day, sum(revenue_cents) / 100.0 as revenue, sum(orders) as orders "
            "from analytics.daily_sales where day between ? and ? group by 1 order by 1",
            [since, day],
        ).df()
        rates = con.execute(
            "select day, sum(lines_backordered) / sum(lines) as backorder_rate "
            "from analytics.fulfillment_kpis where day between ? and ? group by 1 order by 1",
            [since, day],
        ).df()
        regions = con.execute(
            "select region, sum(orders)::BIGINT as orders, sum(revenue_cents)::BIGINT as revenue_cents "
            "from analytics.daily_sales where day = ? group by 1 order by 3 desc",
            [day],
        ).df()
        modes = con.execute(
            "select ship_mode, lines, lines_backordered, round(backorder_rate, 3) as backorder_rate,"
            " round(days_to_ship, 1) as days_to_ship, round(days_to_deliver, 1) as days_to_deliver,"
            " round(on_time_rate, 3) as on_time_rate, orders_compensated "
            "from analytics.fulfillment_kpis where day = ? order by ship_mode",
            [day],
        ).df()
        latency = con.execute(
            "select step, orders, round(p50_s, 1) as p50_s, round(p95_s, 1) as p95_s "
            "from analytics.step_latency where day = ? "
            "order by list_position(['reserve', 'invoice', 'ship', 'notify', 'post'], step)",
            [day],
        ).df()

    revenue_cents = int(regions["revenue_cents"].sum()) if len(regions) else 0
    orders = int(regions["orders"].sum()) if len(regions) else 0
    lines = int(modes["lines"].sum()) if len(modes) else 0
    backordered = int(modes["lines_backordered"].sum()) if len(modes) else 0
    regions["revenue"] = regions["revenue_cents"].map(lambda cents: money(int(cents)))
    regions = regions.drop(columns=["revenue_cents"])

    charts = {
        "revenue": _png(
            lambda ax: (
                ax.plot(pd.to_datetime(trend["day"]), trend["revenue"], marker="o"),
                ax.set_title(f"Revenue per day, last {TREND_DAYS} days ($)"),
                ax.tick_params(axis="x", labelrotation=30),
            )
        ),
        "backorders": _png(
            lambda ax: (
                ax.plot(pd.to_datetime(rates["day"]), rates["backorder_rate"], color="tab:red"),
                ax.set_ylim(0, max(0.1, float(rates["backorder_rate"].max() or 0) * 1.2)),
                ax.set_title("Back-order rate (lines)"),
                ax.tick_params(axis="x", labelrotation=30),
            )
        ),
        "latency": _png(
            lambda ax: (
                ax.bar(
                    latency["step"], latency["p95_s"].fillna(0), label="p95", color="tab:orange"
                ),
                ax.bar(latency["step"], latency["p50_s"].fillna(0), label="p50", color="tab:blue"),
                # Steps range from seconds to days (a backfill of old days): a log scale shows both.
                ax.set_yscale("log"),
                ax.set_title(f"Step latency on {day} (seconds, log scale)"),
                ax.legend(),
            )
        ),
    }
    images = {name: f"{day}-{name}.png" for name in charts}
    summary = (
        f"**{orders:,} orders**, revenue **{money(revenue_cents)}**, average order "
        f"**{money(revenue_cents // orders if orders else 0)}**; {lines:,} lines, "
        f"{backordered:,} back-ordered ({backordered / lines if lines else 0:.1%})."
    )
    if modes.empty:
        # Every staged line of a fulfilled day has a KPI row: none means the marts lag the day.
        summary = (
            f"_The marts have no figures for {day} yet: analytics_automation_sensor refreshes "
            "them once the day's order-to-cash run has succeeded._"
        )
    sections = [
        f"# Orderflow daily report — {day}",
        summary,
        "## Revenue trend\n\n![Revenue per day](@revenue@)",
        f"## Sales by region\n\n{_table(regions)}",
        f"## Fulfillment by ship mode\n\n{_table(modes)}\n\n![Back-order rate](@backorders@)",
        f"## How long each step took\n\n{_table(latency)}\n\n![Step latency](@latency@)",
    ]
    template = "\n\n".join(sections) + "\n"
    on_disk, inline = template, template
    for name, png in charts.items():
        # Placeholders, not str.format: table cells are data and may contain braces.
        on_disk = on_disk.replace(f"@{name}@", images[name])
        inline = inline.replace(
            f"@{name}@", "data:image/png;base64," + base64.b64encode(png).decode()
        )
    for name, png in charts.items():
        reports.write(images[name], png)
    path = reports.write(f"{day}.md", on_disk.encode())
    context.log.info(f"Wrote the report for {day} to {path}")
    return dg.MaterializeResult(
        metadata={
            "day": str(day),
            "path": dg.MetadataValue.path(str(path)),
            "orders": orders,
            "revenue_cents": revenue_cents,
            "report": dg.MetadataValue.md(inline),
        }
    )
