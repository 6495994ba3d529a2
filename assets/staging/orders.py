"""Orders from the landing zone, validated into staging.orders, staging.lineitem and staging.order_rejects.

One step stages a whole time window (a day, or a backfill's whole range in one run), a chunk of
calendar months at a time (`ORDERFLOW_CHUNK_MONTHS`; by default as many months as the batch files'
sizes say hold about 30,000 orders): it deletes the chunk from the three tables
and inserts the chunk's records again, one transaction per chunk. Reading every batch of each day
again makes a re-run, a retry or a late batch exactly-once by construction: each landed record
ends up either staged once (the first copy of an order) or rejected with a reason.
"""

import time

import dagster as dg

from assets.metadata import markdown_list, markdown_preview
from assets.staging.common import staging_assets
from assets.staging.tables import (
    LINEITEM,
    ORDER_REJECTS,
    ORDERS,
    create_table_sql,
    lineitem_schema,
    order_rejects_schema,
    orders_schema,
)
from assets.staging.validation import stage_chunk
from foundation import settings
from foundation.money import line_cents_sql
from foundation.partitions import month_chunks, months_for
from foundation.registry import (
    CUSTOMER_KEY,
    LINEITEM_KEY,
    ORDER_REJECTS_KEY,
    ORDERS_KEY,
    PARTSUPP_KEY,
)
from resources.order_system import OrderFileError, OrderSystemResource, estimated_orders
from resources.warehouse import WarehouseResource

# The window column of each table: every partitioned write replaces exactly this range.
WINDOW_COLUMNS = {"orders": "o_orderdate", "lineitem": "l_orderdate", "order_rejects": "batch_day"}


def _spec(key: dg.AssetKey, description: str, schema: dg.TableSchema) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=key,
        description=description,
        deps=[CUSTOMER_KEY, PARTSUPP_KEY],
        metadata={"dagster/column_schema": schema},
    )


@staging_assets(
    "staging_orders",
    [
        _spec(
            ORDERS_KEY, "The store's orders, one row per order, validated and typed.", orders_schema
        ),
        _spec(
            LINEITEM_KEY,
            "The order lines (order-side TPC-H lineitem columns) of every staged order.",
            lineitem_schema,
        ),
        _spec(
            ORDER_REJECTS_KEY,
            "Every landed order record that was not staged, with its file, line, reason and raw text.",
            order_rejects_schema,
        ),
    ],
    kinds=["pandas"],
    partitioned=True,
    check_specs=[
        dg.AssetCheckSpec(
            "totals_tie_out",
            asset=ORDERS_KEY,
            blocking=True,
            description="Every staged order's total equals the sum of its lines in TPC-H's cent arithmetic.",
        ),
        dg.AssetCheckSpec(
            "order_keys_unique",
            asset=ORDERS_KEY,
            blocking=True,
            description="No order key is staged twice, across all days.",
        ),
        dg.AssetCheckSpec(
            "lines_belong_to_orders",
            asset=LINEITEM_KEY,
            blocking=True,
            description="Every staged line has its order and every staged order has lines.",
        ),
        dg.AssetCheckSpec(
            "records_accounted_for",
            asset=ORDER_REJECTS_KEY,
            blocking=True,
            description="Records read from the landing zone = orders staged + records rejected.",
        ),
    ],
)
def staging_orders(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    order_system: OrderSystemResource,
):
    """Stage the window's landed order records: each one staged once or rejected with a reason."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    try:
        listing = order_system.list_batches(start, end)
    except OrderFileError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error
    batches = listing.batches
    context.log.info(f"Staging {len(batches)} batch files for order days {start} .. {end}")
    if listing.ignored:
        context.log.warning(
            f"{len(listing.ignored)} landing entries are neither a day nor a batch and are never "
            f"staged: {'; '.join(listing.ignored[:5])}"
        )
    if listing.empty_days:
        context.log.warning(f"Day folders with no batch file: {', '.join(listing.empty_days[:5])}")

    started = time.perf_counter()
    read = staged = rejected = 0
    with warehouse.connect() as con:
        _require_catalog(con)
        for table, columns in (
            ("orders", ORDERS),
            ("lineitem", LINEITEM),
            ("order_rejects", ORDER_REJECTS),
        ):
            con.execute(create_table_sql("staging", table, columns))
    months = settings.chunk_months()
    if months is None:
        months = months_for(estimated_orders(batches), start, end)
    chunked = month_chunks(start, end, months)
    for number, (first, after) in enumerate(chunked, 1):
        # A chunk of days per transaction, in date order: DuckDB holds one chunk's changes.
        with warehouse.transaction() as con:
            for table, column in WINDOW_COLUMNS.items():
                con.execute(
                    f"delete from staging.{table} where {column} >= ? and {column} < ?",  # noqa: S608
                    [first, after],
                )
            try:
                for raw_chunk in order_system.read_records(
                    [batch for batch in batches if first <= batch.day < after]
                ):
                    con.register("raw_chunk", raw_chunk)
                    chunk_staged, chunk_rejected = stage_chunk(con, len(raw_chunk))
                    con.unregister("raw_chunk")
                    read += len(raw_chunk)
                    staged, rejected = staged + chunk_staged, rejected + chunk_rejected
            except OrderFileError as error:
                raise dg.Failure(description=str(error), allow_retries=False) from error
        context.log.info(
            f"Staged chunk {number} of {len(chunked)}, {first} .. {after} (end exclusive): "
            f"{staged} orders staged and {rejected} records rejected so far"
        )
    elapsed = time.perf_counter() - started
    with warehouse.connect() as con:
        yield from _results(con, start, end, listing, read, staged, rejected, elapsed, len(chunked))


def _require_catalog(con) -> None:
    present = {
        row[0]
        for row in con.execute(
            "select table_name from information_schema.tables where table_schema = 'staging'"
        ).fetchall()
    }
    missing = {"customer", "partsupp"} - present
    if missing:
        raise dg.Failure(
            description=(
                f"staging.{', staging.'.join(sorted(missing))} not loaded: materialise the catalog "
                "assets (group staging, e.g. staging/customer and staging/partsupp) first."
            ),
            allow_retries=False,
        )


def _scalar(con, sql: str, params: list) -> int:
    return con.execute(sql, params).fetchall()[0][0]


def _results(con, start, end, listing, read, staged, rejected, elapsed, chunks):
    window = [start, end]
    lines = _scalar(
        con,
        "select count(*) from staging.lineitem where l_orderdate >= ? and l_orderdate < ?",
        window,
    )
    common = {
        "window": f"{start} .. {end} (end exclusive)",
        "chunks": chunks,
        "duration_s": round(elapsed, 3),
    }
    yield dg.MaterializeResult(
        asset_key=ORDERS_KEY,
        metadata={
            **common,
            "dagster/row_count": staged,
            "files_read": len(listing.batches),
            "records_read": read,
            "records_staged": staged,
            "records_rejected": rejected,
            "orders_per_second": round(read / elapsed, 1) if elapsed else 0.0,
            "empty_day_folders": markdown_list(
                [
                    f"orders/{day}/ holds no batch file: nothing to stage"
                    for day in listing.empty_days
                ]
            ),
            "ignored_entries": markdown_list(listing.ignored),
            "preview": markdown_preview(
                con,
                "select * from staging.orders where o_orderdate >= ? and o_orderdate < ? "
                "order by o_orderdate desc, o_orderkey limit 5",
                window,
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=LINEITEM_KEY,
        metadata={
            **common,
            "dagster/row_count": lines,
            "preview": markdown_preview(
                con,
                "select * from staging.lineitem where l_orderdate >= ? and l_orderdate < ? "
                "order by l_orderdate desc, l_orderkey, l_linenumber limit 5",
                window,
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=ORDER_REJECTS_KEY,
        metadata={
            **common,
            "dagster/row_count": rejected,
            "rejects_by_reason": markdown_preview(
                con,
                "select regexp_replace(split_part(reason, ';', 1), '[0-9][0-9.:/-]*', 'N', 'g')"
                " as reason, count(*) as records from staging.order_rejects"
                " where batch_day >= ? and batch_day < ? group by 1 order by 2 desc limit 20",
                window,
            ),
            "preview": markdown_preview(
                con,
                "select source_file, line_number, reason, raw_text from staging.order_rejects "
                "where batch_day >= ? and batch_day < ? order by batch_day desc, source_file, "
                "line_number limit 5",
                window,
            ),
        },
    )
    yield from _check_results(con, window, read)


def _check_results(con, window, read):
    mismatched = con.execute(
        f"""
        select o.o_orderkey from staging.orders o
        left join (
            select l_orderkey, sum({line_cents_sql("l_extendedprice", "l_discount", "l_tax")}) as cents
            from staging.lineitem where l_orderdate >= ? and l_orderdate < ? group by l_orderkey
        ) l on l.l_orderkey = o.o_orderkey
        where o.o_orderdate >= ? and o.o_orderdate < ?
          and (o.o_totalprice * 100)::BIGINT is distinct from l.cents
        order by 1 limit 20
        """,  # noqa: S608 - the formula is SQL from code; values are bound
        window + window,
    ).fetchall()
    yield dg.AssetCheckResult(
        asset_key=ORDERS_KEY,
        check_name="totals_tie_out",
        passed=not mismatched,
        metadata={"mismatched_order_keys": [row[0] for row in mismatched]},
    )
    duplicated = con.execute(
        "select o_orderkey from staging.orders group by o_orderkey having count(*) > 1 "
        "order by 1 limit 20"
    ).fetchall()
    yield dg.AssetCheckResult(
        asset_key=ORDERS_KEY,
        check_name="order_keys_unique",
        passed=not duplicated,
        metadata={"duplicated_order_keys": [row[0] for row in duplicated]},
    )
    orphans = con.execute(
        """
        select coalesce(l.l_orderkey, o.o_orderkey) from
            (select distinct l_orderkey from staging.lineitem
             where l_orderdate >= ? and l_orderdate < ?) l
        full join
            (select o_orderkey from staging.orders where o_orderdate >= ? and o_orderdate < ?) o
        on l.l_orderkey = o.o_orderkey
        where l.l_orderkey is null or o.o_orderkey is null order by 1 limit 20
        """,
        window + window,
    ).fetchall()
    yield dg.AssetCheckResult(
        asset_key=LINEITEM_KEY,
        check_name="lines_belong_to_orders",
        passed=not orphans,
        metadata={"order_keys": [row[0] for row in orphans]},
    )
    in_tables = _scalar(
        con,
        "select (select count(*) from staging.orders where o_orderdate >= ? and o_orderdate < ?)"
        " + (select count(*) from staging.order_rejects where batch_day >= ? and batch_day < ?)",
        window + window,
    )
    yield dg.AssetCheckResult(
        asset_key=ORDER_REJECTS_KEY,
        check_name="records_accounted_for",
        passed=in_tables == read,
        metadata={"records_read": read, "staged_plus_rejected": in_tables},
    )
