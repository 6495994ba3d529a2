"""What the fulfillment steps share: decorator, chunked window reads and writes, call guards, e-mail."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg
import duckdb

from assets.fulfillment.tables import INVENTORY_STOCK, KEYS, SCHEMAS, TABLES, Columns
from assets.metadata import result_with_preview
from foundation import settings
from foundation.batches import chunks
from foundation.partitions import daily_partitions, month_chunks, months_for
from foundation.registry import FULFILLMENT
from resources.faults import SystemRefused, SystemUnavailable
from resources.inventory import InventoryResource
from resources.notifier import NotifierResource, deliveries_frame
from resources.warehouse import WarehouseResource, step_pool

# Type hints only: heavy libraries are imported where they are used (docs/architecture.md).
if TYPE_CHECKING:
    import pandas as pd

GROUP = FULFILLMENT


def fulfillment_asset(
    key: dg.AssetKey,
    *,
    deps: Sequence[dg.AssetKey],
    kinds: Sequence[str] = (),
    partitioned: bool = True,
    blocking_checks: Mapping[str, str] | None = None,
    checks: Mapping[str, str] | None = None,
):
    """`dg.asset` for a step of the chain writing its table (assets/fulfillment/tables.py).

    `kinds` are the outside systems it calls besides DuckDB: such a step retries with exponential
    backoff and jitter (`calling` decides what is worth a retry). A partitioned step handles a
    day's window, or a backfill's whole range in one run. `blocking_checks` (a failure stops the
    steps downstream) and `checks` map the names of its checks to their descriptions.
    """
    retry = dg.RetryPolicy(
        max_retries=settings.retry_max(),
        delay=settings.retry_delay_seconds(),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )
    return dg.asset(
        key=key,
        deps=deps,
        group_name=GROUP,
        kinds={"duckdb", *kinds},
        owners=["team:fulfillment"],
        partitions_def=daily_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        pool=step_pool(key.to_python_identifier()),
        retry_policy=retry if kinds else None,
        metadata={"dagster/column_schema": SCHEMAS[key.path[-1]]},
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, blocking=blocking, description=description)
            for blocking, named in ((True, blocking_checks or {}), (False, checks or {}))
            for name, description in named.items()
        ],
    )


def window(context: dg.AssetExecutionContext) -> tuple[date, date]:
    """The run's order days [start, end): one day, or a backfill's whole range."""
    time_window = context.partition_time_window
    return time_window.start.date(), time_window.end.date()


def read_frame(warehouse: WarehouseResource, sql: str, params: Sequence[object]) -> pd.DataFrame:
    """A query's result as a pandas frame (a short read; no connection is kept)."""
    with warehouse.connect() as con:
        return con.execute(sql, list(params)).df()


def create_table(con: duckdb.DuckDBPyConnection, table: str, columns: Columns) -> None:
    """Create fulfillment.<table> if missing; identifiers come from assets/fulfillment/tables.py."""
    body = ", ".join(f"{name} {sql_type}" for name, sql_type, _ in columns)
    con.execute(f"create table if not exists {GROUP}.{table} ({body})")
    # Warehouses created before a column was added get it (null for the rows already there).
    for name, sql_type, _ in columns:
        con.execute(f"alter table {GROUP}.{table} add column if not exists {name} {sql_type}")


def replace_window_keeping_processed_at(
    con: duckdb.DuckDBPyConnection,
    table: str,
    day_column: str,
    start: date,
    end: date,
    rows: pd.DataFrame | str,
) -> None:
    """Replace exactly the window's rows of fulfillment.<table>, in the caller's transaction.

    `rows` is a frame or the name of a relation with the table's columns except processed_at;
    a row whose key was already there keeps its first processed_at, new rows get now().
    """
    columns = TABLES[table]
    create_table(con, table, columns)
    keys = KEYS[table]
    window_sql = f"{day_column} >= ? and {day_column} < ?"
    con.execute(
        f"create or replace temp table previous_rows as select {', '.join(keys)}, processed_at "  # noqa: S608
        f"from {GROUP}.{table} where {window_sql}",
        [start, end],
    )
    con.execute(f"delete from {GROUP}.{table} where {window_sql}", [start, end])  # noqa: S608
    source = rows
    if not isinstance(rows, str):
        if not len(rows):
            return
        con.register("incoming_rows", rows)
        source = "incoming_rows"
    types = {name: sql_type for name, sql_type, _ in columns}
    select = ", ".join(
        f"cast(i.{name} as {sql_type})" for name, sql_type, _ in columns if name != "processed_at"
    )
    join = " and ".join(f"p.{k} = cast(i.{k} as {types[k]})" for k in keys)
    # By name: a column added to an existing warehouse comes after processed_at there.
    names = ", ".join(name for name, _, _ in columns)
    con.execute(
        f"insert into {GROUP}.{table} ({names}) select {select}, "  # noqa: S608
        f"coalesce(p.processed_at, now()::TIMESTAMP) from {source} i "
        f"left join previous_rows p on {join}"
    )
    if source == "incoming_rows":
        con.unregister("incoming_rows")
    con.execute("drop table previous_rows")


# The table whose rows of the window are counted to size its chunks: one row per order, by
# o_orderdate. A step counts in a table it declares as a dep (tests/test_lineage.py).
ORDERS_TABLE = "staging.orders"
INVOICES_TABLE = f"{GROUP}.invoices"  # one invoice per order with a reserved line


def chunk_windows(
    context: dg.AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    orders_from: str = ORDERS_TABLE,
) -> list[tuple[date, date]]:
    """The run's window cut into chunks of calendar months (`ORDERFLOW_CHUNK_MONTHS`), in date order.

    Sized to the store by default: from the window's orders in `orders_from` (`con`'s warehouse).
    """
    start, end = window(context)
    months = settings.chunk_months()
    if months is None:
        orders = con.execute(
            f"select count(*) from {orders_from} where o_orderdate >= ? and o_orderdate < ?",  # noqa: S608
            [start, end],
        ).fetchall()[0][0]
        months = months_for(orders, start, end)
    return month_chunks(start, end, months)


def replace_chunks(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    table: str,
    chunk_rows: Callable[[date, date], tuple[pd.DataFrame, Mapping[str, float]]],
    *,
    day_column: str = "o_orderdate",
    orders_from: str = ORDERS_TABLE,
) -> Counter:
    """Work through the run's window a chunk at a time, in date order, so memory stays bounded.

    `chunk_rows(start, end)` reads a chunk, calls the step's outside system with it and returns
    the chunk's rows of fulfillment.<table> and numbers to add up over the window; the rows replace
    the chunk's in a transaction of its own. A chunk is idempotent: a step that fails keeps the
    chunks it wrote, and its retry redoes them with the systems' first answers. First come, first
    served decisions are the same as in one pass, as the chunks go in date order. Returns the
    sums, with `rows` written and the number of `chunks`.
    """
    totals: Counter = Counter()
    with warehouse.connect() as con:
        chunked = chunk_windows(context, con, orders_from)
    totals["chunks"] = len(chunked)
    for number, (start, end) in enumerate(chunked, 1):
        frame, numbers = chunk_rows(start, end)
        with warehouse.transaction() as con:
            replace_window_keeping_processed_at(con, table, day_column, start, end, frame)
        totals.update({"rows": len(frame), **numbers})
        context.log.info(
            f"{table}: chunk {number} of {len(chunked)}, {start} .. {end} (end "
            f"exclusive): {len(frame)} rows"
        )
    return totals


def window_result(
    con: duckdb.DuckDBPyConnection,
    table: str,
    context: dg.AssetExecutionContext,
    row_count: int,
    preview_order: str,
    *,
    day_column: str = "o_orderdate",
    preview_rows: int = 5,
    chunks: int,
    **metadata: object,
) -> dg.MaterializeResult:
    """The step's result over its whole window: `row_count`, `metadata`, `chunks` and a preview."""
    return result_with_preview(
        con,
        row_count,
        f"select * from {GROUP}.{table} where {day_column} >= ? and {day_column} < ? "  # noqa: S608
        f"order by {preview_order} limit {preview_rows}",
        window(context),
        **metadata,
        chunks=chunks,
    )


def copy_stock_levels(
    con: duckdb.DuckDBPyConnection,
    inventory: InventoryResource,
    table: str,
    temporary: bool = False,
) -> tuple[int, int]:
    """Replace `table` with the inventory system's stock levels, a batch at a time.

    Columns: INVENTORY_STOCK's. Returns the pairs and the units available.
    """
    import pandas as pd

    names = [name for name, _, _ in INVENTORY_STOCK]
    body = ", ".join(f"{name} {sql_type}" for name, sql_type, _ in INVENTORY_STOCK)
    con.execute(f"create or replace {'temp ' if temporary else ''}table {table} ({body})")
    pairs = units = 0
    for batch in inventory.stock_level_batches():
        frame = pd.DataFrame.from_records(batch, columns=names)
        con.register("stock_batch", frame)
        con.execute(f"insert into {table} select {', '.join(names)} from stock_batch")  # noqa: S608
        con.unregister("stock_batch")
        pairs += len(frame)
        units += int(frame["available"].sum())
    return pairs, units


@contextmanager
def calling(context: dg.AssetExecutionContext, system: str, fix: str) -> Iterator[None]:
    """Guard calls to an outside system: refusals fail at once, outages retry, then fail clearly."""
    try:
        yield
    except SystemRefused as error:
        raise dg.Failure(
            description=f"The {system} system refused the request: {error}. {fix}",
            allow_retries=False,
        ) from error
    except SystemUnavailable as error:
        if context.retry_number < settings.retry_max():
            raise  # the asset's RetryPolicy backs off and tries again
        raise dg.Failure(
            description=(
                f"The {system} system is still unavailable after {context.retry_number + 1} "
                f"attempts: {error}. {fix} Re-execute the run from the failed step when it is back: "
                "nothing it did before is repeated."
            ),
            allow_retries=False,
        ) from error


# Messages per call: enough day folders per call for the Maildir writer threads.
SEND_BATCH = 20_000
NOTIFIER_FIX = "Check the notifier's configuration (resource `notifier`), then re-run the step."


def send_notices(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    notifier: NotifierResource,
    table: str,
    compose: Callable[[date, date], tuple[pd.DataFrame, Mapping[str, object]]],
    check: str,
    expected_sql: str,
):
    """Send each chunk's messages; record `columns`, recipient and delivery in fulfillment.<table>.

    `compose(start, end)` returns a chunk's messages (Message's fields) and the other `columns` of
    their rows. Check `check` fails for each order of `expected_sql` or of the table without
    exactly one message.
    """
    import pandas as pd

    def send(start: date, end: date) -> tuple[pd.DataFrame, dict[str, float]]:
        messages, columns = compose(start, end)
        started = time.perf_counter()
        with calling(context, "notifier", NOTIFIER_FIX):
            parts = [notifier.send_frame(batch) for batch in chunks(messages, SEND_BATCH)]
        deliveries = pd.concat(parts, ignore_index=True) if parts else deliveries_frame([])
        frame = pd.DataFrame(
            {
                **columns,
                "recipient": messages["to"],
                "message_key": deliveries["key"],
                "message_id": deliveries["message_id"],
                "status": deliveries["status"],
                "detail": deliveries["detail"],
            }
        )
        rejected = int((frame["status"] == "rejected").sum()) if len(frame) else 0
        return frame, {"rejected": rejected, "seconds": time.perf_counter() - started}

    done = replace_chunks(context, warehouse, table, send)
    context.log.info(f"Notified {done['rows']} orders ({table}) in {done['seconds']:.1f} s")
    start, end = window(context)
    with warehouse.connect() as con:
        yield window_result(
            con,
            table,
            context,
            done["rows"],
            "o_orderdate desc, o_orderkey",
            chunks=done["chunks"],
            rejected=done["rejected"],
            notifier_call_s=round(done["seconds"], 3),
        )
        wrong = rows(
            con,
            f"""
            select coalesce(e.o_orderkey, m.o_orderkey) from ({expected_sql}) e
            full join (select o_orderkey, count(*) as n from {GROUP}.{table}
                       where o_orderdate >= ? and o_orderdate < ? group by 1) m
              on m.o_orderkey = e.o_orderkey
            where e.o_orderkey is null or m.n is distinct from 1
            order by 1 limit 20
            """,  # noqa: S608 - table names and SQL come from code
            [start, end] * 2,
        )
    yield dg.AssetCheckResult(
        check_name=check, passed=not wrong, metadata={"order_keys": [row[0] for row in wrong]}
    )


CUSTOMER_DOMAIN = "customers.orderflow.example"


def customer_email(name: str) -> str:
    """The customer's e-mail address, derived from the TPC-H customer name."""
    return f"{name.lower().replace('#', '')}@{CUSTOMER_DOMAIN}"


def customer_email_sql(column: str) -> str:
    """SQL for `customer_email` of a name column (`column` comes from code, never from data)."""
    return f"lower(replace({column}, '#', '')) || '@{CUSTOMER_DOMAIN}'"


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    """All rows of a query."""
    return con.execute(sql, list(params)).fetchall()
